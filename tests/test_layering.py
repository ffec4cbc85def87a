"""The three parts of the one package depend one way: the core (`slmsql_cli` outside `cli/`,
`training/` and `quantize/`) imports neither `slmsql_cli.quantize` nor `slmsql_cli.training`;
`quantize` builds on the core and never imports `training`; only the command line
(`slmsql_cli/cli/`) sits on top of all three. The wheel installs that one package and nothing
else at the top of site-packages.

Checked twice: statically, every import statement in the source (the lazy ones inside functions
included), and by importing each package's modules alone in a fresh interpreter.

Module by module, too (issue 28): no import cycle between any two modules, and no import from a
floor to a higher one, by the floors written in docs/ARCHITECTURE.md (read from the doc here, so
the doc and the check cannot disagree).
"""

from __future__ import annotations

import ast
import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "trl", "datasets", "peft")


PARTS = ("quantize", "training")  # slmsql_cli.quantize, slmsql_cli.training


def _part(name: str) -> str:
    """`quantize`/`training` for a module of those parts, else the top-level package's name."""
    bits = name.split(".")
    return bits[1] if bits[0] == "slmsql_cli" and len(bits) > 1 and bits[1] in PARTS else bits[0]


def _imported(path: Path) -> set[str]:
    """The parts (`quantize`, `training`) and other top-level packages of every module `path`
    imports, anywhere in the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(_part(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(_part(node.module))
    return names


def _modules(package: str, *, skip: tuple[str, ...] = ()) -> list[Path]:
    files = sorted((REPO / package.replace(".", "/")).rglob("*.py"))
    return [f for f in files if not set(skip) & set(f.relative_to(REPO / "slmsql_cli").parts[:-1])]


def _dotted(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize(
    "package, skip, forbidden",
    [
        ("slmsql_cli", ("cli", "quantize", "training"), {"quantize", "training"}),
        ("slmsql_cli.quantize", (), {"training"}),
    ],
)
def test_no_import_against_the_direction(package: str, skip: tuple[str, ...], forbidden: set[str]) -> None:
    wrong = {
        str(f.relative_to(REPO)): sorted(_imported(f) & forbidden)
        for f in _modules(package, skip=skip)
        if _imported(f) & forbidden
    }
    assert not wrong, f"imports against the layering: {wrong}"


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    from slmsql_cli.quantize.export import cached_export\n    import slmsql_cli.training.data\n"
    )
    assert {"quantize", "training"} <= _imported(probe)


def _loaded_after_importing(modules: list[str]) -> set[str]:
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "def part(m):\n"
        "    b = m.split('.')\n"
        f"    return b[1] if b[0] == 'slmsql_cli' and len(b) > 1 and b[1] in {PARTS!r} else b[0]\n"
        "print(' '.join(sorted({part(m) for m in sys.modules})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return set(proc.stdout.split())


def test_the_core_imported_alone_loads_neither_quantize_training_nor_torch() -> None:
    core = [
        _dotted(f)
        for f in _modules("slmsql_cli", skip=("cli", "quantize", "training"))
        if f.name != "__main__.py"
    ]
    assert "slmsql_cli.pipeline" in core and "slmsql_cli.models" in core
    loaded = _loaded_after_importing(core)
    assert not loaded & {"quantize", "training", *HEAVY}, sorted(loaded & {"quantize", "training", *HEAVY})


def test_quantize_imported_alone_loads_no_training() -> None:
    loaded = _loaded_after_importing([_dotted(f) for f in _modules("slmsql_cli.quantize")])
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
    "slmsql_cli/explain.py": "an empty in-memory copy of the schema, to compile (never run) SQL a person wrote",
    "slmsql_cli/files/writer.py": "the SQLite file that data files are imported into",
}
DRIVERS = {"sqlite3", "duckdb", "psycopg", "psycopg2", "apsw"}


def test_sql_on_a_users_database_runs_only_in_targets() -> None:
    files = _modules("slmsql_cli")
    wrong = {
        rel: sorted(_imported(f) & DRIVERS)
        for f in files
        if (rel := str(f.relative_to(REPO))) not in OWN_FILES
        and not rel.startswith("slmsql_cli/targets/")
        and _imported(f) & DRIVERS
    }
    assert not wrong, f"a database driver outside targets/ (run SQL through Database.run): {wrong}"
    assert all((REPO / rel).is_file() for rel in OWN_FILES), "OWN_FILES names a file that moved"


# --- module by module: no cycles, no import up a floor (issue 28) ---------------------------------

PACKAGES = ("slmsql_cli",)


def _module_files(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `packages` under `root` (a package is its
    `__init__.py`)."""
    found: dict[str, Path] = {}
    for package in packages:
        for f in sorted((root / package).rglob("*.py")):
            parts = f.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return found


def import_edges(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports: every import statement, at the top, inside
    a function or under TYPE_CHECKING. `from pkg import name` is an edge to the submodule
    `pkg.name` when there is one, else to `pkg` (a name its `__init__` defines); `import a.b.c`
    is an edge to the deepest of those that is a module of ours."""
    modules = _module_files(root, packages)

    def ours(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        here[: len(here) - node.level + 1] + ([node.module] if node.module else [])
                    )
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            edges[module].update(t for n in names if (t := ours(n)) is not None and t != module)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, todo = work[-1]
            nxt = next(todo, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def floors(doc: str) -> list[tuple[str, list[str]]]:
    """The floors of the ```floors block in `doc`, ground floor first: (name, module patterns).
    A pattern is a dotted module name or an fnmatch glob (`targets.*`), under `slmsql_cli` unless
    it starts with another top-level package."""
    block = re.search(r"^```floors\n(.*?)^```", doc, re.MULTILINE | re.DOTALL)
    assert block, "docs/ARCHITECTURE.md has no ```floors block"
    found = []
    for line in block.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, patterns = line.partition(":")
        full = [p if p.split(".")[0] in PACKAGES else f"slmsql_cli.{p}" for p in patterns.split()]
        found.append((name.strip(), full))
    return found


def floor_of(modules: list[str], plan: list[tuple[str, list[str]]]) -> dict[str, int]:
    """Each module's floor: the floor that names it exactly, else the one whose matching glob is
    the longest (`serve.*` places serve's modules; `serve.registry` elsewhere would win)."""
    placed: dict[str, int] = {}
    for module in modules:
        best: tuple[int, int] | None = None  # (specificity, floor)
        for number, (_name, patterns) in enumerate(plan):
            for pattern in patterns:
                if pattern == module:
                    score = 1_000
                elif fnmatch.fnmatchcase(module, pattern):
                    score = len(pattern)
                else:
                    continue
                if best is None or score > best[0]:
                    best = (score, number)
        if best is not None:
            placed[module] = best[1]
    return placed


def upward(edges: dict[str, set[str]], plan: list[tuple[str, list[str]]]) -> list[str]:
    """Every import from a floor to a higher one, in words."""
    placed = floor_of(sorted(edges), plan)
    return [
        f"{a} ({plan[placed[a]][0]}) imports {b} ({plan[placed[b]][0]})"
        for a in sorted(edges)
        for b in sorted(edges[a])
        if a in placed and b in placed and placed[b] > placed[a]  # unplaced: the test above says so
    ]


def test_no_import_cycle_between_modules() -> None:
    found = cycles(import_edges(REPO))
    assert not found, "import cycles (each a set of modules that import each other): " + "; ".join(
        " <-> ".join(c) for c in found
    )


def _architecture() -> list[tuple[str, list[str]]]:
    return floors((REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8"))


def test_every_module_has_a_floor_and_every_pattern_a_module() -> None:
    plan = _architecture()
    modules = sorted(_module_files(REPO))
    placed = floor_of(modules, plan)
    unplaced = [m for m in modules if m not in placed]
    assert not unplaced, f"modules on no floor of docs/ARCHITECTURE.md: {unplaced}"
    unused = [
        p for _, patterns in plan for p in patterns if not any(fnmatch.fnmatchcase(m, p) for m in modules)
    ]
    assert not unused, f"the floors name modules that do not exist: {unused}"
    exact = [p for _, patterns in plan for p in patterns if not any(c in p for c in "*?[")]
    assert len(exact) == len(set(exact)), "a module is named on two floors"


def test_no_import_from_a_lower_floor_to_a_higher_one() -> None:
    wrong = upward(import_edges(REPO), _architecture())
    assert not wrong, "imports up a floor (docs/ARCHITECTURE.md, Layers):\n" + "\n".join(wrong)


def test_the_checkers_see_a_planted_cycle_and_an_import_up(tmp_path: Path) -> None:
    pkg = tmp_path / "slmsql_cli"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from slmsql_cli.sub import high  # lazy: still an edge\n")
    (pkg / "sub" / "__init__.py").write_text("from slmsql_cli.sub.high import NAME\n")
    (pkg / "sub" / "high.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import low\n"
    )
    (pkg / "sub" / "leaf.py").write_text("from slmsql_cli.sub import NAME  # a name of the package\n")
    edges = import_edges(tmp_path, ("slmsql_cli",))
    assert edges["slmsql_cli.low"] == {"slmsql_cli.sub.high"}  # `from pkg import submodule`
    assert edges["slmsql_cli.sub.leaf"] == {"slmsql_cli.sub"}  # `from pkg import name`
    assert cycles(edges) == [["slmsql_cli.low", "slmsql_cli.sub.high"]]

    plan = floors("```floors\nground: low  # a comment\nup: slmsql_cli sub sub.*\n```\n")
    assert plan == [
        ("ground", ["slmsql_cli.low"]),
        ("up", ["slmsql_cli", "slmsql_cli.sub", "slmsql_cli.sub.*"]),
    ]
    assert upward(edges, plan) == ["slmsql_cli.low (ground) imports slmsql_cli.sub.high (up)"]
    (pkg / "low.py").write_text("")
    assert cycles(import_edges(tmp_path, ("slmsql_cli",))) == []
    assert upward(import_edges(tmp_path, ("slmsql_cli",)), plan) == []


# --- the wheel: one name at the top of site-packages (issue 28) -----------------------------------


def test_the_wheel_installs_only_the_slmsql_cli_package(tmp_path: Path) -> None:
    """A wheel built from the source puts `slmsql_cli` (with `training` and `quantize` inside it)
    and its dist-info at the top of site-packages, nothing else: no `training` or `quantize` to
    collide with another distribution's."""
    import shutil
    import zipfile

    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "slmsql_cli", source / "slmsql_cli", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            out,
            source,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = out.glob("slmsql-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"slmsql_cli"}, sorted(top)
    assert "slmsql_cli/training/configs/tiny-cpu.yaml" in names  # package data came along
    assert "slmsql_cli/quantize/export.py" in names and "slmsql_cli/serve/static/app.js" in names
