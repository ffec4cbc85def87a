"""Usage errors from the console entry point are one error line and a hint, like every other error."""

from __future__ import annotations

import pytest
from conftest import REPO, Slmsql

DEMO = str(REPO / "slmsql_cli" / "data" / "bookshop.sqlite")


@pytest.mark.parametrize(
    "args,message",
    [
        (["ask", "--db", DEMO, "--temperature", "inf", "q"], "Invalid value for '--temperature'"),
        (["ask", "--db", DEMO, "-n", "0", "q"], "Invalid value for '-n'"),
        (["ask", "--db", DEMO], "Missing argument 'QUESTION'"),
        (["prompt", "--db", DEMO, "--no-such-option", "q"], "No such option: --no-such-option"),
        (["no-such-command"], "No such command 'no-such-command'"),
    ],
)
def test_usage_error_is_one_line_and_a_hint(slmsql: Slmsql, args: list[str], message: str) -> None:
    proc = slmsql(*args, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert lines[1].startswith("hint: see 'slmsql")
    assert proc.stdout == ""


def test_no_arguments_prints_the_help(slmsql: Slmsql) -> None:
    proc = slmsql(timeout=120)
    assert proc.returncode == 2
    assert "Usage: slmsql" in proc.stdout and "ask" in proc.stdout
