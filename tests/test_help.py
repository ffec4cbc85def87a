r"""Every command's --help reads well in an 80-column terminal, and every hint names a real command.

"Reads well", for every command and subcommand (the whole tree typer builds): no line wider
than 80 columns, no word broken across two lines, no value cut to '…', no Python type (`<bool>`,
`<list[str]>`, `<path>`, click's `[1<=x<=64]` ranges), a usage line without typer's `{ARG}` or
doubled brackets, `-h` the same as `--help`, examples that are whole (each line of the Examples
section a command as typed, or the continuation of a line that ends in `\`), and `ask --help` at
most 80 lines. A word or example is broken when a piece of the 80-column help is not a word or an
example line of the same help rendered 1,000 columns wide.

The hints: every `UserError(message, hint)` and `fail(message, hint)` in slmsql_cli is read from
the source; each `slmsql COMMAND` it names must be a command, and each `--option` it names an
option of that command (or, when it names no command, of some command).
"""

from __future__ import annotations

import ast
import re
from typing import Any

import pytest
import typer.main
from conftest import REPO, Slmsql

from slmsql_cli.cli import app

BORDERS = "│╭╮╰╯─┃"


def command_tree(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path under `command`, itself first: (), ("ask",), …, ("saved", "list")."""
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += command_tree(sub, (*path, name))
    return found


TREE = command_tree(typer.main.get_command(app))
COMMANDS = sorted(path[0] for path in TREE if len(path) == 1)
# typer's names for Python types, as its help would print them beside a value
PYTHON_TYPE = re.compile(
    r"<(?:str|int|float|bool|path|file|directory|text|uuid|datetime|list\[.*?\]|\w+ range)>"
)
# the Examples section: a heading such as "Examples:", "Example:" or "Examples (…):"
EXAMPLES = re.compile(r"^Examples?\b.*:$")
PROGRAMS = ("slmsql", "curl")  # what an example line may start with (serve's examples call it with curl)


def help_text(slmsql: Slmsql, *args: str, width: int, flag: str = "--help") -> str:
    env = {"COLUMNS": str(width), "NO_COLOR": "1", "TERMINAL_WIDTH": str(width)}
    proc = slmsql(*args, flag, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def words(text: str) -> list[str]:
    return text.translate({ord(c): " " for c in BORDERS}).split()


def examples(text: str) -> list[str]:
    """The lines of the help's Examples section, stripped: from its heading to the first panel."""
    lines = [line.strip() for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if EXAMPLES.match(line)), None)
    if start is None:
        return []
    section = []
    for line in lines[start + 1 :]:
        if line.startswith("╭"):
            break
        if line:
            section.append(line)
    return section


@pytest.mark.parametrize("path", TREE, ids=lambda path: " ".join(path) or "slmsql")
def test_help_reads_well_at_80_columns(slmsql: Slmsql, path: tuple[str, ...]) -> None:
    narrow = help_text(slmsql, *path, width=80, flag="-h")  # -h is --help, everywhere
    wide = help_text(slmsql, *path, width=1000)
    too_wide = [line for line in narrow.splitlines() if len(line) > 80]
    assert not too_wide, too_wide
    assert "…" not in narrow and not PYTHON_TYPE.search(narrow) and "<=x" not in narrow, narrow
    usage = next(line.strip() for line in narrow.splitlines() if line.strip().startswith("Usage:"))
    assert usage.startswith(f"Usage: {' '.join(('slmsql', *path))} "), usage
    assert not set(usage) & set("{}") and "[[" not in usage, usage
    whole = set(words(wide))
    broken = [w for w in words(narrow) if w not in whole]
    assert not broken, f"words broken across lines: {broken}\n{narrow}"
    if path == ("ask",):
        assert len(narrow.splitlines()) <= 80, narrow
    if not path:
        return
    shown = examples(narrow)
    command = " ".join(("slmsql", *path)) + " "
    assert any(line.startswith(command) for line in shown), f"no example of `{command.strip()}`:\n{narrow}"
    for before, line in zip(["", *shown], shown):
        starts = line.split()[0] in PROGRAMS
        assert starts or before.endswith("\\"), f"an example broken mid-command: {line!r}\n{narrow}"
    wide_lines = set(examples(wide))
    assert all(line in wide_lines for line in shown), f"examples wrapped at 80 columns:\n{narrow}"


def test_bare_slmsql_prints_the_help_once(slmsql: Slmsql) -> None:
    proc = slmsql(timeout=120)
    assert proc.stdout.count("Usage: slmsql") == 1, proc.stdout
    assert "music.sqlite" not in proc.stdout and "bookshop.sqlite" in proc.stdout


# ---- hints ----------------------------------------------------------------------------------------


def command_options() -> dict[str, set[str]]:
    """{command: its option names}, from the click tree typer builds."""
    group = typer.main.get_command(app)
    found: dict[str, set[str]] = {}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        found[name] = {o for p in command.params for o in [*p.opts, *p.secondary_opts] if o.startswith("-")}
    return found


def hints() -> list[tuple[str, str]]:
    """(where, the hint's text) for every hint in slmsql_cli: the literal parts of the second
    argument (or `hint=`) of each UserError(...) and fail(...) call, and of module-level *_HINT
    constants."""
    found = []
    for path in sorted((REPO / "slmsql_cli").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            expr = None
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "UserError",
                "fail",
            ):
                expr = node.args[1] if len(node.args) > 1 else None
                expr = next((k.value for k in node.keywords if k.arg == "hint"), expr)
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id.endswith("_HINT") for t in node.targets
            ):
                expr = node.value
            if expr is not None:
                text = " ".join(
                    n.value
                    for n in ast.walk(expr)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)
                )
                if text.strip():
                    found.append((f"{path.relative_to(REPO)}:{expr.lineno}", text))
    return found


OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")
# `slmsql WORD` names a command when options, a closing backtick or parenthesis, or the end
# follow it ("slmsql reads SQLite files" is a sentence about slmsql, not a command)
COMMAND = re.compile(r"\bslmsql ([a-z][\w-]*)(?=\s*$|`|\)|\s+--?\w)")
# a clause that shows another program's command line: its options are that program's
FOREIGN = re.compile(r"\b(psql|iconv|sqlite3|hf|pip|curl|git)\b")


def test_hints_were_found() -> None:
    assert len(hints()) >= 40


@pytest.mark.parametrize("where, hint", hints())
def test_every_hint_names_commands_and_options_that_exist(where: str, hint: str) -> None:
    options = command_options()
    every_option = set().union(*options.values()) | {"--help", "--version"}
    named = COMMAND.findall(hint)
    for command in named:
        assert command in options, f"{where}: the hint names `slmsql {command}`, which does not exist: {hint}"
    for clause in re.split(r"[;()]", hint):  # an option belongs to the command its clause names
        if FOREIGN.search(clause):
            continue
        here = COMMAND.findall(clause)
        allowed = set().union(*(options[c] for c in here)) if here else every_option
        for option in OPTION.findall(clause):
            assert option in allowed, f"{where}: the hint names {option}, which no such command has: {hint}"
