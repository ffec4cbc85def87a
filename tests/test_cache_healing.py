"""Caches that heal: damaged files are rebuilt with one warning, an unwritable cache is skipped.

Each run is a fresh `slmsql prompt` process (as a user's next run would be), so nothing is
remembered in memory between the run that fills the cache and the run that finds it damaged.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, Slmsql

from slmsql_cli.targets.sqlite_catalog import schema_from_sqlite
from slmsql_cli.targets.sqlite_target import SQLiteTarget
from slmsql_cli.values import MAX_INDEXED_PER_COLUMN

DEMO_DB = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"
QUESTION = "Which books did Flann O'Brien write?"


Prompt = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def prompt(slmsql: Slmsql) -> Prompt:
    """`prompt(cache, db=DEMO_DB, tmp=None)`: a fresh `slmsql prompt` process with that cache
    folder (and that temporary folder)."""

    def run(
        cache: Path | str, db: Path = DEMO_DB, tmp: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {"TMPDIR": str(tmp)} if tmp is not None else None
        return slmsql("prompt", "--db", db, QUESTION, cache=cache, env=env, timeout=120)

    return run


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


@pytest.fixture(scope="module")
def expected(prompt: Prompt, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The prompt from an empty cache: what every healed run must print."""
    first = prompt(tmp_path_factory.mktemp("cache"))
    assert first.returncode == 0 and not first.stderr, first.stderr
    assert "'Flann O'Brien'" in first.stdout or "Flann O" in first.stdout
    return first.stdout


def filled_cache(prompt: Prompt, tmp_path: Path, expected: str) -> Path:
    cache = tmp_path / "cache"
    done = prompt(cache)
    assert done.returncode == 0 and done.stdout == expected and not done.stderr
    return cache


def only(cache: Path, pattern: str) -> Path:
    (path,) = cache.rglob(pattern)
    return path


# the first case of each matrix stays in the fast lane; the rest run in the default suite
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "damage", ["truncated", pytest.param("zeroed", marks=SLOW), pytest.param("garbage page", marks=SLOW)]
)
def test_damaged_value_index_is_rebuilt_with_one_warning(
    prompt: Prompt, tmp_path: Path, expected: str, damage: str
) -> None:
    cache = filled_cache(prompt, tmp_path, expected)
    index = only(cache, "values-*.fts.sqlite")
    data = index.read_bytes()
    if damage == "truncated":
        index.write_bytes(data[: len(data) // 2])
    elif damage == "zeroed":
        index.write_bytes(bytes(len(data)))
    else:  # the header is intact; every page after the first two is noise
        page = int.from_bytes(data[16:18], "big")
        index.write_bytes(data[: 2 * page] + os.urandom(len(data) - 2 * page))

    healed = prompt(cache)
    assert healed.returncode == 0, healed.stderr
    assert healed.stdout == expected
    (warning,) = warnings(healed.stderr)
    assert "value index" in warning and "rebuilt" in warning
    assert healed.stderr.strip() == warning  # one line, no traceback

    again = prompt(cache)
    assert again.stdout == expected and again.stderr == ""


@pytest.mark.parametrize(
    "content",
    [
        '{"version": 2, "schema": {"db_id": "x", "tables": "not a list"}, "samples": []}',
        *(
            pytest.param(content, marks=SLOW)
            for content in (
                '{"version": 2, "schema": {"db_id": "x", "tables": [{"name": "t"}]}, "samples": []}',
                '{"version": 2, "schema": {"db_id": "x", "tables": []}, "samples": [[1]]}',
                '{"version": 2, "schema": {"db_id": "x", "tables": []}, "samples": []}',
                '{"version": 2, "sche',
                "[1, 2, 3]",
            )
        ),
    ],
)
def test_damaged_schema_cache_is_rebuilt_with_one_warning(
    prompt: Prompt, tmp_path: Path, expected: str, content: str
) -> None:
    cache = filled_cache(prompt, tmp_path, expected)
    schema_file = only(cache, "schema-*.json")
    assert json.loads(schema_file.read_text())["version"] == 2
    schema_file.write_text(content)

    healed = prompt(cache)
    assert healed.returncode == 0, healed.stderr
    assert healed.stdout == expected
    (warning,) = warnings(healed.stderr)
    assert "schema cache" in warning and "rebuilt" in warning
    assert healed.stderr.strip() == warning
    assert prompt(cache).stderr == ""


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_unwritable_cache_folder_means_no_cache_and_one_warning(
    prompt: Prompt, tmp_path: Path, expected: str, where: str
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    cache = blocker if where == "a file" else blocker / "cache"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    orphan = tmp / "slmsql-values-999999999-x"  # a private index a killed run left (no such pid)
    orphan.mkdir()
    done = prompt(cache, tmp=tmp)
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected
    (warning,) = warnings(done.stderr)
    assert "running without a cache" in warning and "SLMSQL_CACHE_DIR" in warning
    assert done.stderr.strip() == warning
    assert blocker.read_text() == "not a folder"
    assert list(tmp.iterdir()) == []  # the private index went with its process, the orphan too


def test_read_only_cache_folder_means_no_cache(slmsql: Slmsql, tmp_path: Path, expected: str) -> None:
    """Root is run without the capabilities that let it write into a read-only folder, so the
    check holds for every user (issue 27: a test that skipped as root hid a traceback)."""
    through: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv is not None, "setpriv (util-linux) runs root without its override capabilities"
        through = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        done = slmsql("prompt", "--db", DEMO_DB, QUESTION, cache=cache, through=through, timeout=120)
    finally:
        cache.chmod(0o755)
    assert done.returncode == 0 and done.stdout == expected, done.stderr
    assert len(warnings(done.stderr)) == 1, done.stderr


def test_temporary_files_of_killed_runs_are_removed(prompt: Prompt, tmp_path: Path, expected: str) -> None:
    cache = filled_cache(prompt, tmp_path, expected)
    folder = only(cache, "schema-*.json").parent
    dead = int(
        subprocess.run([sys.executable, "-c", "print(__import__('os').getpid())"], capture_output=True).stdout
    )
    orphan = folder / f".values-v2-0123.fts.sqlite.{dead}.k3j_x9a2.tmp"
    orphan.write_bytes(b"half an index")
    live = folder / f".schema-0123.json.{os.getpid()}.abcd1234.tmp"  # a live process is still writing it
    live.write_text("{")
    unrelated = folder / "notes.txt"
    unrelated.write_text("mine")

    done = prompt(cache)
    assert done.returncode == 0 and done.stdout == expected and done.stderr == ""
    assert not orphan.exists()
    assert live.exists() and unrelated.exists()


def test_value_index_is_bounded_per_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLMSQL_CACHE_DIR", str(tmp_path / "cache"))
    db = tmp_path / "many.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE people (name TEXT, city TEXT)")
    extra = 50
    conn.executemany(
        "INSERT INTO people VALUES (?, ?)",
        ((f"person {i:06d}", f"city {i % 7}") for i in range(MAX_INDEXED_PER_COLUMN + extra)),
    )
    conn.commit()
    conn.close()

    index = SQLiteTarget(db).value_index(schema_from_sqlite(db), None)
    try:
        counts = dict(
            sqlite3.connect(index.path).execute(
                "SELECT tbl || '.' || col, count(*) FROM vals JOIN columns ON columns.id = vals.col_id GROUP BY 1"
            )
        )
    finally:
        index.close()
    assert counts == {"people.name": MAX_INDEXED_PER_COLUMN, "people.city": 7}


# ---- cached imports: used only while they are what was written (issue 31) -------------------------------


def mid_csv(folder: Path) -> Path:
    """A CSV whose import spans several pages (so that half of it is a truncated file)."""
    data = folder / "mid.csv"
    data.write_text("title,shelf\n" + "".join(f"Middlemarch volume {i},M{i % 9}\n" for i in range(2000)))
    return data


@pytest.mark.parametrize("change", ["truncated", "swapped", "linked", "garbage"])
def test_a_damaged_or_replaced_import_is_rebuilt_with_one_warning(
    prompt: Prompt, tmp_path: Path, change: str
) -> None:
    data = mid_csv(tmp_path)
    cache = tmp_path / "cache"
    first = prompt(cache, db=data)
    assert first.returncode == 0 and not first.stderr, first.stderr
    assert "CREATE TABLE mid" in first.stdout
    imported = only(cache, "mid.sqlite")
    demo = DEMO_DB.read_bytes()
    if change == "truncated":
        imported.write_bytes(imported.read_bytes()[: imported.stat().st_size // 2])
    elif change == "swapped":  # another database in its place (it showed bookshop's tables)
        shutil.copyfile(DEMO_DB, imported)
    elif change == "linked":
        imported.unlink()
        imported.symlink_to(DEMO_DB)
    else:  # same size, the first page noise
        raw = bytearray(imported.read_bytes())
        raw[:4096] = os.urandom(4096)
        imported.write_bytes(raw)

    healed = prompt(cache, db=data)
    assert healed.returncode == 0, healed.stderr
    assert healed.stdout == first.stdout  # mid's tables, never bookshop's
    (warning,) = warnings(healed.stderr)
    assert "cached import of mid.csv" in warning and "importing it again" in warning
    assert healed.stderr.strip() == warning  # one line, no traceback
    assert imported.is_file() and not imported.is_symlink()
    assert DEMO_DB.read_bytes() == demo  # a link is removed, never what it points to

    again = prompt(cache, db=data)
    assert again.stdout == first.stdout and again.stderr == ""


def test_an_edit_that_keeps_size_and_time_is_imported_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files' record holds a digest of each file's first and last MB, not only size and time."""
    from slmsql_cli import files

    monkeypatch.setenv("SLMSQL_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "stock.csv"
    data.write_text("item\npen\n")
    before = data.stat()
    imported = files.as_sqlite(data)
    data.write_text("item\nink\n")
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert data.stat().st_size == before.st_size and data.stat().st_mtime_ns == before.st_mtime_ns
    assert files.as_sqlite(data) == imported
    with sqlite3.connect(imported) as conn:
        assert conn.execute("SELECT item FROM stock").fetchall() == [("ink",)]


def test_every_store_is_private_whatever_the_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Imports, value indexes and the prompt cache, written under umask 0: folders 0700, files 0600
    (the saved answers: tests/test_unwritable_cache.py)."""
    from slmsql_cli import cache as cache_module
    from slmsql_cli import files
    from slmsql_cli.kv_cache import PromptStore

    cache = tmp_path / "cache"
    monkeypatch.setenv("SLMSQL_CACHE_DIR", str(cache))
    data = mid_csv(tmp_path)
    old = os.umask(0)
    try:
        imported = files.as_sqlite(data)
        SQLiteTarget(imported).value_index(
            schema_from_sqlite(imported), cache_module.db_cache_dir(imported)
        ).close()
        PromptStore(cache_module.cache_dir() / "kv", {"model": "m"}, 1 << 20).save([1, 2, 3], b"state")
    finally:
        os.umask(old)
    found = {p.relative_to(cache).as_posix(): p.lstat().st_mode & 0o777 for p in cache.rglob("*")}
    assert any(p.endswith("mid.sqlite") for p in found) and any(p.endswith(".kv") for p in found), found
    assert any("values-" in p for p in found), found
    for path, mode in found.items():
        assert mode == (0o700 if (cache / path).is_dir() else 0o600), (path, oct(mode))
