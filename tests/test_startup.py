"""`slmsql --help` and the ask path stay light: no torch, no transformers; and only the commands
that load llama.cpp pay for the second Python process of the crash-reporting launcher."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, Slmsql

from slmsql_cli.launcher import needs_supervisor

HEAVY = ("torch", "transformers", "trl", "datasets", "peft")

CHECK = """
import sys
sys.argv = {argv!r}
from slmsql_cli.cli import main
try:
    main()
except SystemExit:
    pass
{extra}
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})
print('HEAVY:' + ','.join(heavy))
"""


@pytest.mark.parametrize(
    "argv", [["slmsql", "--help"], ["slmsql", "ask", "--help"], ["slmsql", "chat", "--help"]]
)
def test_help_imports_no_torch(argv: list[str]) -> None:
    code = CHECK.format(argv=argv, extra="", heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Usage" in out
    assert out.strip().splitlines()[-1] == "HEAVY:"


def test_ask_pipeline_imports_no_torch() -> None:
    extra = "import slmsql_cli.pipeline, slmsql_cli.models, slmsql_cli.render, slmsql_cli.eval.run, slmsql_cli.eval.results, slmsql_cli.quantize.export"
    code = CHECK.format(argv=["slmsql", "--version"], extra=extra, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY:"


SERVE_PACKAGES = ("fastapi", "starlette", "uvicorn", "mcp", "sse_starlette")


def test_ask_path_imports_no_serve_packages() -> None:
    """`serve`'s packages are imported by `serve` alone: not by --help, not on the ask path."""
    extra = "import slmsql_cli.pipeline, slmsql_cli.render, slmsql_cli.cli.ask_cmd, slmsql_cli.cli.serve_cmd"
    code = CHECK.format(argv=["slmsql", "serve", "--help"], extra=extra, heavy=SERVE_PACKAGES)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--mcp" in out
    assert out.strip().splitlines()[-1] == "HEAVY:"


@pytest.mark.parametrize("front, package", [("--http", "fastapi"), ("--mcp", "mcp")])
def test_serve_without_its_extra_names_the_extra(front: str, package: str) -> None:
    code = f"import sys\nsys.modules[{package!r}] = None\n" + CHECK.format(
        argv=["slmsql", "serve", front, "--db", "x.sqlite"], extra="", heavy=()
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert f"needs {package}" in proc.stderr and "slmsql[serve]" in proc.stderr


# ---- the launcher's child process: llama.cpp commands only -----------------------------------------

BOOKSHOP = str(REPO / "slmsql_cli" / "data" / "bookshop.sqlite")


@pytest.mark.parametrize(
    "argv, supervised",
    [
        ([], False),
        (["--help"], False),
        (["-h"], False),
        (["--version"], False),
        (["ask", "-d", "x.sqlite", "How many?"], True),
        (["ask", "-d", "x.sqlite", "--help"], False),
        (["saved", "show", "-h"], False),
        (["ask", "-d", "x.sqlite", "--", "--help"], True),  # after `--`, a question
        (["chat", "-d", "x.sqlite"], True),
        (["serve", "--http", "-d", "x.sqlite"], True),
        (["bench", "-d", "x.sqlite"], True),
        (["doctor"], True),
        (["export", "runs/x/final"], True),
        (["train", "--stage", "sft"], True),
        (["eval", "-q", "dev.json", "--db-dir", "dbs"], True),
        (["eval", "compare", "a.jsonl", "b.jsonl"], False),
        (["prompt", "-d", "x.sqlite", "How many?"], False),
        (["prompt", "-d", "x.sqlite", "-m", "m.gguf", "How many?"], True),
        (["prompt", "-d", "x.sqlite", "-mm.gguf", "How many?"], True),
        (["prompt", "-d", "x.sqlite", "--model=m.gguf", "How many?"], True),
        (["explain", "-d", "x.sqlite", "SELECT 1"], False),
        (["saved", "list"], False),
        (["models"], False),
        (["models", "default", "slm-sql-1.5b"], False),
        (["no-such-command"], False),
    ],
)
def test_which_commands_run_in_the_child(argv: list[str], supervised: bool) -> None:
    assert needs_supervisor(argv) is supervised


@pytest.mark.parametrize(
    "argv, processes",
    [
        (["--help"], 1),
        (["-h"], 1),
        (["--version"], 1),
        (["explain", "-d", BOOKSHOP, "SELECT count(*) FROM books"], 1),
        (["saved", "list"], 1),
        (["models", "--json"], 1),
        (["ask", "--help"], 1),
        (["ask", "-d", "no/such/file.sqlite", "How many?"], 2),
    ],
)
def test_python_processes_started(slmsql: Slmsql, tmp_path: Path, argv: list[str], processes: int) -> None:
    """Counted for real: a sitecustomize on PYTHONPATH writes a line for every Python that starts."""
    site = tmp_path / "site"
    site.mkdir()
    starts = tmp_path / "starts.txt"
    (site / "sitecustomize.py").write_text(
        f"with open({str(starts)!r}, 'a') as fh:\n    fh.write('started\\n')\n", encoding="utf-8"
    )
    env = {
        "PYTHONPATH": str(site),
        "SLMSQL_NO_SUPERVISOR": None,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    proc = slmsql(*argv, env=env, cache=tmp_path / "cache", timeout=120)
    assert proc.returncode == (2 if argv[0] == "ask" and "--help" not in argv else 0), proc.stderr
    assert starts.read_text().count("started") == processes
