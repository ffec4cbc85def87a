"""The three top-level packages depend one way: `slmsql_cli` (its core, outside `cli/`) imports
neither `quantize` nor `training`; `quantize` builds on `slmsql_cli` and never imports `training`;
only the command line (`slmsql_cli/cli/`) sits on top of all three.

Checked twice: statically, every import statement in the source (the lazy ones inside functions
included), and by importing each package's modules alone in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "trl", "datasets", "peft")


def _imported(path: Path) -> set[str]:
    """Top-level package names of every module `path` imports, anywhere in the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _modules(package: str, *, skip: str | None = None) -> list[Path]:
    files = sorted((REPO / package).rglob("*.py"))
    return [f for f in files if skip is None or skip not in f.relative_to(REPO).parts]


def _dotted(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize(
    "package, skip, forbidden",
    [("slmsql_cli", "cli", {"quantize", "training"}), ("quantize", None, {"training"})],
)
def test_no_import_against_the_direction(package: str, skip: str | None, forbidden: set[str]) -> None:
    wrong = {
        str(f.relative_to(REPO)): sorted(_imported(f) & forbidden)
        for f in _modules(package, skip=skip)
        if _imported(f) & forbidden
    }
    assert not wrong, f"imports against the layering: {wrong}"


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from quantize.export import cached_export\n    import training.data\n")
    assert {"quantize", "training"} <= _imported(probe)


def _loaded_after_importing(modules: list[str]) -> set[str]:
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return set(proc.stdout.split())


def test_the_core_imported_alone_loads_neither_quantize_training_nor_torch() -> None:
    core = [_dotted(f) for f in _modules("slmsql_cli", skip="cli") if f.name != "__main__.py"]
    assert "slmsql_cli.pipeline" in core and "slmsql_cli.models" in core
    loaded = _loaded_after_importing(core)
    assert not loaded & {"quantize", "training", *HEAVY}, sorted(loaded & {"quantize", "training", *HEAVY})


def test_quantize_imported_alone_loads_no_training() -> None:
    loaded = _loaded_after_importing([_dotted(f) for f in _modules("quantize")])
    assert "quantize" in loaded and "slmsql_cli" in loaded  # it builds on the core
    assert "training" not in loaded
