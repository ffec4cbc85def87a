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
    extra = "import slmsql_cli.pipeline, slmsql_cli.models, slmsql_cli.render, slmsql_cli.evaluation, quantize.export"
    code = CHECK.format(argv=["slmsql", "--version"], extra=extra, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY:"
