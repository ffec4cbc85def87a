"""The README and the printed messages say what the command line really does.

* The README's command table and `slmsql --help` list the same commands, and every option the
  table mentions is in that command's `--help`.
* Brackets in messages are text: rich markup must not eat `slmsql[train]` from a hint, or a
  `[bold]` from a file name the user typed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO, Slmsql

README = REPO / "README.md"
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}  # help panels on one line each


def readme_commands() -> dict[str, set[str]]:
    """{command: options named in its row} from the README's "## Commands" table."""
    section = README.read_text(encoding="utf-8").split("## Commands", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if not cells or not cells[0].startswith("`slmsql "):
            continue
        command = cells[0].strip("`").split()[1]
        quoted = " ".join(re.findall(r"`([^`]*)`", line))
        table[command] = set(OPTION.findall(quoted))
    return table


def help_commands(slmsql: Slmsql) -> set[str]:
    """The commands in the Commands panel of `slmsql --help`."""
    proc = slmsql("--help", env=WIDE, timeout=300)
    assert proc.returncode == 0, proc.stderr
    panel = proc.stdout.split("Commands", 1)[1]
    return set(re.findall(r"^│ (\w+) {2,}", panel, flags=re.MULTILINE))


def test_readme_table_lists_exactly_the_cli_commands(slmsql: Slmsql) -> None:
    documented = readme_commands()
    assert len(documented) >= 8, "the README's command table was not found or not parsed"
    assert set(documented) == help_commands(slmsql)


@pytest.mark.parametrize("command", sorted(readme_commands()))
def test_readme_options_exist_in_the_command_help(slmsql: Slmsql, command: str) -> None:
    options = readme_commands()[command]
    proc = slmsql(command, "--help", env=WIDE, timeout=300)
    assert proc.returncode == 0, proc.stderr
    missing = {o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", proc.stdout)}
    assert not missing, f"README mentions {sorted(missing)} for `slmsql {command}`, which its --help lacks"


def test_hint_keeps_the_pip_extra_in_brackets(slmsql: Slmsql) -> None:
    """Without torch, `train` says how to install it, `[train]` included."""
    proc = slmsql(
        "train", "--stage", "sft", code="import sys\nsys.modules['torch'] = None", env=WIDE, timeout=300
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "needs packages that are not installed: torch" in proc.stderr
    assert "pip install 'slmsql[train]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_user_text_in_an_error_is_not_markup(slmsql: Slmsql, tmp_path: Path) -> None:
    missing = tmp_path / "[bold]sales[/bold].sqlite"
    proc = slmsql("prompt", "--db", str(missing), "How many?", env=WIDE, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "[bold]sales[/bold].sqlite" in proc.stderr
