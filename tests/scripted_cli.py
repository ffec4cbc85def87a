"""The real CLI in a child process with `--model scripted` answering one fixed SQL query.

For tests that need a real process (a pipe, a pseudo-terminal, another HOME) and an answer without
a model: `python -c DRIVER SQL ARGS…` registers the scripted engine kind (`engines.register`,
as the `scripted_engine` fixture does in-process), whose every completion writes SQL, then runs
`slmsql ARGS…` through `slmsql_cli.cli.main`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DRIVER = """
import sys
from slmsql_cli import engines
from slmsql_cli.scripted import ScriptedEngine

said = "<think>\\nThe query.\\n</think>\\n<answer>\\n" + sys.argv[1] + "\\n</answer>"
engines.register("scripted", lambda spec, config, export=None: ScriptedEngine([said] * 64, name=spec))
sys.argv = ["slmsql", *sys.argv[2:]]
from slmsql_cli.cli import main
main()
"""


def argv(sql: str, *args: str | Path) -> list[str]:
    return [sys.executable, "-c", DRIVER, sql, *map(str, args)]


def environ(env: Mapping[str, str | None]) -> dict[str, str]:
    """os.environ with this checkout on PYTHONPATH and `env` on top (None removes a variable)."""
    merged: dict[str, str | None] = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return {k: v for k, v in merged.items() if v is not None}


def run(
    sql: str, *args: str | Path, env: Mapping[str, str | None], timeout: float = 300, **popen: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv(sql, *args),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=environ(env),
        timeout=timeout,
        **popen,  # type: ignore[call-overload]
    )
