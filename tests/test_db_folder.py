"""`--db FOLDER` says what it took and what it skipped (issue 27: `ask -d slmsql_cli/data` made a
table of `bookshop_questions.json` and said nothing of `bookshop.sqlite` beside it), and odd
entries are skipped with a reason (issue 31: a link to a /proc file was `KeyError: ''`).

Each case runs `slmsql prompt` (no model) in a child process.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"


def prompt(folder: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slmsql_cli", "prompt", "--db", str(folder), "How many?"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "SLMSQL_CACHE_DIR": str(cache), "COLUMNS": "300"},
        timeout=300,
    )


def test_a_folder_lists_its_tables_and_the_database_it_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    shutil.copy(DEMO, folder / "shop.sqlite")
    (folder / "orders.json").write_text('[{"id": 1, "total": 9.5}, {"id": 2, "total": 3}]')
    (folder / "notes.json").write_text('[{"text": "call Ann"}]')
    (folder / ".hidden.json").write_text('[{"x": 1}]')
    cache = tmp_path / "cache"

    first = prompt(folder, cache)
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines() == [
        f"imported {folder}{os.sep} (2 table(s), reused until a file changes):",
        "  notes.json → table notes (1 row)",
        "  orders.json → table orders (2 rows)",
        "  skipped shop.sqlite: a database; pass it on its own with --db",
    ]
    assert 'CREATE TABLE "orders"' in first.stdout or "CREATE TABLE orders" in first.stdout
    assert "books" not in first.stdout  # the SQLite file's tables are not in the prompt

    again = prompt(folder, cache)  # the import is reused: nothing new to say
    assert again.returncode == 0 and again.stderr == "" and again.stdout == first.stdout


def test_links_out_of_the_folder_and_odd_files_are_skipped_with_a_reason(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "pets.csv").write_text("name,age\nRex,3\n")
    (folder / "status.csv").symlink_to("/proc/self/status")  # was KeyError: ''
    outside = tmp_path / "elsewhere.json"
    outside.write_text('[{"secret": 1}]')
    (folder / "elsewhere.json").symlink_to(outside)
    (folder / "same.csv").symlink_to(folder / "pets.csv")  # inside the folder: the same file, once
    (folder / "gone.csv").symlink_to(folder / "missing.csv")
    os.mkfifo(folder / "pipe.csv")
    (folder / "inner").mkdir()
    (folder / "readme.md").write_text("notes")

    proc = prompt(folder, tmp_path / "cache")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    said = proc.stderr.splitlines()
    assert said[1:-1] == [
        "  pets.csv → table pets (1 row)",
        f"  skipped elsewhere.json: a link out of the folder (to {outside}); pass the file itself with --db",
        "  skipped gone.csv: a broken link",
        "  skipped inner: a folder (only the files directly inside are read)",
        "  skipped pipe.csv: not a regular file",
        "  skipped readme.md: not a data file (CSV, TSV, JSON, JSON Lines, Parquet or Excel (.xlsx))",
    ], said
    assert said[-1].startswith("  skipped status.csv: a link out of the folder (to /proc/")  # /proc/<pid>/
    imported = next((tmp_path / "cache").glob("files/*/*/data.sqlite"))
    con = sqlite3.connect(imported)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["pets"]
    con.close()


def test_a_folder_of_databases_only_names_them(tmp_path: Path) -> None:
    folder = tmp_path / "dbs"
    folder.mkdir()
    shutil.copy(DEMO, folder / "shop.sqlite")
    proc = prompt(folder, tmp_path / "cache")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: {folder} holds no data files (CSV, TSV, JSON, JSON Lines, Parquet or Excel (.xlsx))",
        "hint: pass the database inside it with --db",
    ]
