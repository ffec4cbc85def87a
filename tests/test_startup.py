"""`slmsql --help` and the ask path stay light: no torch, no transformers."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
    extra = "import slmsql_cli.pipeline, slmsql_cli.models, slmsql_cli.render, slmsql_cli.eval.run, slmsql_cli.eval.results, quantize.export"
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
