"""The question's walk through the rooms: which modules one `slmsql ask` enters, in order.

Runs `ask` in this process (the scripted engine, the demo bookshop database, one candidate
that runs) under `sys.setprofile` and records every call from a function of one slmsql module
into a function of another. Figures, as docs/ARCHITECTURE.md reports them:

- moves: calls from one room (module) into another;
- rooms: the distinct modules entered;
- climbs up: moves into a room on a higher floor than the caller's (the floors block of
  docs/ARCHITECTURE.md; a callback or an import against the flow);
- re-entries: moves into a room the walk had already entered and left before.

Counted from the moment the `ask` command starts until it returns; calls inside the ground
floor (errors, caching helpers) count like any other. `--before REV` runs the same walk on an
older commit checked out in a temporary worktree (its modules, today's floors).

    python benchmarks/question_walk.py            # today's tree
    python benchmarks/question_walk.py --trace    # and the sequence of moves
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib
import json
import os
import re
import sys
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]
QUESTION = "How many books are there?"
SQL = "SELECT COUNT(*) FROM books"


def floors(doc: Path) -> list[tuple[str, list[str]]]:
    """The floors block of docs/ARCHITECTURE.md: (floor, module patterns), ground floor first."""
    block = re.search(r"```floors\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    assert block, "docs/ARCHITECTURE.md has no floors block"
    rows = []
    for line in block.group(1).splitlines():
        name, _, mods = line.partition(":")
        rows.append((name.strip(), mods.split()))
    return rows


def floor_of(module: str, table: list[tuple[str, list[str]]]) -> int | None:
    short = module.removeprefix("slmsql_cli.") if module != "slmsql_cli" else module
    best = None
    for level, (_, patterns) in enumerate(table):
        for pattern in patterns:
            if pattern == short or (pattern.endswith(".*") and short.startswith(pattern[:-1])):
                best = level if pattern == short else (best if best is not None else level)
    return best


def walk(root: Path, max_depth: int) -> list[tuple[str, str]]:
    """The (caller module, callee module) moves of one `ask`, run from the checkout at `root`."""
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])  # query workers
    from typer.testing import CliRunner

    from slmsql_cli.cli import app
    from slmsql_cli.scripted import ScriptedEngine

    def scripted(*args: object, **kwargs: object) -> ScriptedEngine:
        return ScriptedEngine([f"<answer>{SQL}</answer>"] * 4)

    if (root / "slmsql_cli" / "engines.py").exists():
        importlib.import_module("slmsql_cli.engines").register("scripted", scripted)
    else:  # before the engine registry: the tests' monkeypatch
        pipeline = importlib.import_module("slmsql_cli.pipeline")
        pipeline.load_engine = scripted  # type: ignore[attr-defined]

    package = str(root / "slmsql_cli")
    moves: list[tuple[str, str]] = []
    stack: list[str | None] = []
    depth: list[int] = []  # room changes on the stack, per frame

    def module_of(frame: FrameType) -> str | None:
        name = frame.f_globals.get("__name__", "")
        path = frame.f_code.co_filename
        return name if path.startswith(package) and name.startswith("slmsql_cli") else None

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            here = module_of(frame)
            caller = next((m for m in reversed(stack) if m is not None), None)
            crossed = here is not None and caller is not None and here != caller
            level = (depth[-1] if depth else 0) + (1 if crossed else 0)
            if tracing[0] and base[0] is None and here == "slmsql_cli.cli.ask_cmd":
                base[0] = level  # the command's own body: the walk starts here
            if crossed and base[0] is not None and level - base[0] <= max_depth:
                assert caller is not None and here is not None
                moves.append((caller, here))
            stack.append(here if here is not None else caller)
            depth.append(level)
        elif event == "return" and stack:
            stack.pop()
            depth.pop()

    tracing = [False]
    base: list[int | None] = [None]
    cli = importlib.import_module("slmsql_cli.cli.ask_cmd")
    command = cli.ask

    @functools.wraps(command)
    def traced(*args: object, **kwargs: object) -> object:
        tracing[0] = True
        try:
            return command(*args, **kwargs)
        finally:
            tracing[0] = False
            base[0] = None

    for registered in app.registered_commands:
        if registered.callback is command:
            registered.callback = traced
    demo = root / "slmsql_cli" / "data" / "bookshop.sqlite"
    env = {"SLMSQL_CACHE_DIR": os.environ.get("SLMSQL_CACHE_DIR", "/tmp/slmsql-walk-cache")}
    argv = ["ask", "--db", str(demo), "--model", "scripted", "--no-merge", "--fresh", QUESTION]
    warm = CliRunner().invoke(app, argv, env=env)  # the database's cache is built: not the question's walk
    assert warm.exit_code == 0, (warm.output, warm.exception)
    sys.setprofile(profile)
    try:
        result = CliRunner().invoke(app, argv, env=env)
    finally:
        sys.setprofile(None)
    assert result.exit_code == 0, result.output
    return moves


def figures(moves: list[tuple[str, str]], table: list[tuple[str, list[str]]]) -> dict[str, object]:
    entered: set[str] = set()
    left: set[str] = set()
    reentries = climbs = 0
    for caller, callee in moves:
        left.add(caller)
        if callee in entered and callee in left:
            reentries += 1
        entered.add(callee)
        a, b = floor_of(caller, table), floor_of(callee, table)
        if a is not None and b is not None and b > a:
            climbs += 1
    counts = collections.Counter(callee for _, callee in moves)
    return {
        "moves": len(moves),
        "rooms": len({m for move in moves for m in move}),
        "climbs_up": climbs,
        "reentries": reentries,
        "most_entered": counts.most_common(5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=REPO, help="the checkout to walk (default: this one)")
    parser.add_argument("--trace", action="store_true", help="print each move")
    parser.add_argument(
        "--depth", type=int, default=3, help="count moves up to this many rooms deep (default 3)"
    )
    args = parser.parse_args()
    table = floors(REPO / "docs" / "ARCHITECTURE.md")
    moves = walk(args.root.resolve(), args.depth)
    if args.trace:
        for caller, callee in moves:
            print(f"{caller} -> {callee}")
    print(json.dumps(figures(moves, table)))


if __name__ == "__main__":
    main()
