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


def test_the_core_hands_checkpoints_to_the_exporter_it_is_given(tmp_path: Path) -> None:
    from slmsql_cli.errors import UserError
    from slmsql_cli.models import resolve

    checkpoint = tmp_path / "my-model"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    with pytest.raises(UserError, match="is a model folder, not a GGUF file") as info:
        resolve(str(checkpoint))  # no exporter: the core cannot export by itself
    assert "slmsql export" in (info.value.hint or "")

    exported = tmp_path / "my-model.gguf"
    calls: list[tuple[str, str]] = []

    def exporter(spec: str, quant: str) -> Path:
        calls.append((spec, quant))
        return exported

    assert resolve(str(checkpoint), quant="q8_0", export=exporter) == exported
    assert calls == [(str(checkpoint), "q8_0")]


@pytest.mark.parametrize("command", ["ask", "bench"])
def test_the_commands_pass_the_quantize_exporter(command: str, tmp_path: Path, isolated_cache: Path) -> None:
    from typer.testing import CliRunner

    from slmsql_cli.cli import app

    checkpoint = tmp_path / "my-model"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text('{"architectures": ["NoSuchForCausalLM"]}')
    demo = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"
    args = ["--db", str(demo), "--model", str(checkpoint)]
    result = CliRunner().invoke(app, [command, *args, *(["How many books?"] if command == "ask" else [])])
    assert result.exit_code == 2, result.output
    # quantize's exporter looked at the checkpoint (and refused its architecture): it was passed
    assert "not a GGUF file" not in result.stderr and "NoSuchForCausalLM" in result.stderr


# Outside slmsql_cli/targets/, only these modules talk to a database driver, each to a file
# slmsql writes itself; every query on a user's database goes through a target (issue 18).
OWN_FILES = {
    "slmsql_cli/values.py": "the value index, an FTS5 file in the cache",
    "slmsql_cli/saved.py": "the saved-answers store",
    "slmsql_cli/files/writer.py": "the SQLite file that data files are imported into",
}
DRIVERS = {"sqlite3", "duckdb", "psycopg", "psycopg2", "apsw"}


def test_sql_on_a_users_database_runs_only_in_targets() -> None:
    files = [f for package in ("slmsql_cli", "training", "quantize") for f in _modules(package)]
    wrong = {
        rel: sorted(_imported(f) & DRIVERS)
        for f in files
        if (rel := str(f.relative_to(REPO))) not in OWN_FILES
        and not rel.startswith("slmsql_cli/targets/")
        and _imported(f) & DRIVERS
    }
    assert not wrong, f"a database driver outside targets/ (run SQL through Database.run): {wrong}"
    assert all((REPO / rel).is_file() for rel in OWN_FILES), "OWN_FILES names a file that moved"
