"""Usage errors from the console entry point are one error line and a hint, like every other error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "slmsql_cli" / "data" / "bookshop.sqlite")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slmsql_cli", *args], capture_output=True, text=True, timeout=120
    )


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
def test_usage_error_is_one_line_and_a_hint(args: list[str], message: str) -> None:
    proc = run(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert lines[1].startswith("hint: see 'slmsql")
    assert proc.stdout == ""


def test_no_arguments_prints_the_help() -> None:
    proc = run()
    assert proc.returncode == 2
    assert "Usage: slmsql" in proc.stdout and "ask" in proc.stdout
