"""The user's SQLite file as it really is: WAL mode, leftover -wal, hot journals, FTS5, views.

Every case runs the real CLI in a fresh process (`slmsql prompt` needs no model, `slmsql eval
--predictions` scores given SQL through the executor) on a database built here, and checks that
the newest committed rows are read and that the database's folder lists exactly the files it
listed before.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import Slmsql
from typer.testing import CliRunner

from slmsql_cli.cli import app
from slmsql_cli.targets.executor import execute

QUESTION = "Which customers live in Zanzibar?"


def scratch(cache: Path) -> dict[str, str]:
    """The child's temporary folder: `cache`'s sibling `tmp` (to see what it leaves there)."""
    tmp = cache.parent / "tmp"
    tmp.mkdir(exist_ok=True)
    return {"TMPDIR": str(tmp)}


def make_db(folder: Path, journal_mode: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "shop.sqlite"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.executescript(
        """
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT);
        INSERT INTO customers (name, city) VALUES ('Ada', 'Lisbon'), ('Brian', 'Oslo');
        """
    )
    conn.commit()
    conn.close()
    return db


def write_after_crash(db: Path, sql: str, *, commit: bool) -> None:
    """Run `sql` in another process that dies without closing (no checkpoint, no cleanup)."""
    code = (
        "import os, sqlite3\n"
        f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "c.execute('PRAGMA wal_autocheckpoint=0')\n"
        "c.execute('PRAGMA cache_size=1')\n"  # a big uncommitted change spills into the file
        f"c.executescript({('BEGIN;' + sql + ('COMMIT;' if commit else ''))!r})\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def eval_questions(tmp_path: Path, db: Path, items: list[tuple[str, str]]) -> tuple[Path, Path, Path]:
    """A Spider-style questions file, a --db-dir holding `db`, and a predictions file: (gold, predicted)."""
    questions = tmp_path / "questions.json"
    questions.write_text(
        json.dumps(
            [{"db_id": db.stem, "question": f"q{i}", "query": gold} for i, (gold, _) in enumerate(items)]
        )
    )
    predictions = tmp_path / "pred.sql"
    predictions.write_text("".join(f"{pred}\t{db.stem}\n" for _, pred in items))
    return questions, db.parent, predictions


def eval_ex(slmsql: Slmsql, tmp_path: Path, db: Path, items: list[tuple[str, str]], cache: Path) -> float:
    questions, db_dir, predictions = eval_questions(tmp_path, db, items)
    done = slmsql(
        "eval",
        "-q",
        questions,
        "--db-dir",
        db_dir,
        "--predictions",
        predictions,
        "--json",
        cache=cache,
        env=scratch(cache),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return float(json.loads(done.stdout.strip().splitlines()[-1])["ex"])


def zanzibar_db(tmp_path: Path, case: str) -> Path:
    """A WAL database whose newest committed row (a customer in Zanzibar) is where `case` says."""
    db = make_db(tmp_path / "data", "wal")
    if case == "no -wal file":
        conn = sqlite3.connect(db)
        conn.execute("INSERT INTO customers (name, city) VALUES ('Chloe', 'Zanzibar')")
        conn.commit()
        conn.close()  # the last connection checkpoints and deletes -wal and -shm
    else:
        write_after_crash(db, "INSERT INTO customers (name, city) VALUES ('Chloe', 'Zanzibar');", commit=True)
        assert Path(f"{db}-wal").stat().st_size > 0
        if case == "leftover -wal, no -shm":
            Path(f"{db}-shm").unlink()
    return db


@pytest.mark.parametrize(
    "case",
    [
        pytest.param("no -wal file", marks=pytest.mark.slow),  # the fast lane keeps the copy case
        "leftover -wal, no -shm",
        pytest.param("-wal and -shm", marks=pytest.mark.slow),
    ],
)
def test_wal_database_reads_newest_rows_and_leaves_no_file(slmsql: Slmsql, tmp_path: Path, case: str) -> None:
    db = zanzibar_db(tmp_path, case)
    before = listing(db.parent)
    cache = tmp_path / "cache"

    prompt = slmsql("prompt", "--db", db, QUESTION, cache=cache, env=scratch(cache), timeout=120)
    assert prompt.returncode == 0, prompt.stderr
    assert "'Zanzibar'" in prompt.stdout  # the committed value, found by the value index
    assert listing(db.parent) == before

    items = [
        ("SELECT 3", "SELECT count(*) FROM customers"),
        ("SELECT 'Chloe'", "SELECT name FROM customers WHERE city = 'Zanzibar'"),
    ]
    assert eval_ex(slmsql, tmp_path, db, items, cache) == 100.0
    assert listing(db.parent) == before
    assert list((tmp_path / "tmp").iterdir()) == []  # private copies removed


def test_a_new_commit_in_the_wal_is_seen_by_the_next_run(slmsql: Slmsql, tmp_path: Path) -> None:
    db = zanzibar_db(tmp_path, "leftover -wal, no -shm")
    cache = tmp_path / "cache"
    assert (
        "'Zanzibar'"
        in slmsql("prompt", "--db", db, QUESTION, cache=cache, env=scratch(cache), timeout=120).stdout
    )
    stamp = db.stat().st_mtime_ns
    write_after_crash(db, "INSERT INTO customers (name, city) VALUES ('Dev', 'Timbuktu');", commit=True)
    Path(f"{db}-shm").unlink()
    assert db.stat().st_mtime_ns == stamp  # only the -wal changed: the cache must notice anyway
    before = listing(db.parent)
    done = slmsql(
        "prompt",
        "--db",
        db,
        "Which customers live in Timbuktu?",
        cache=cache,
        env=scratch(cache),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "'Timbuktu'" in done.stdout
    assert listing(db.parent) == before


def test_wal_database_in_a_read_only_folder_is_read(slmsql: Slmsql, tmp_path: Path) -> None:
    db = zanzibar_db(tmp_path, "leftover -wal, no -shm")
    before = listing(db.parent)
    db.parent.chmod(0o555)
    try:
        prompt = slmsql(
            "prompt",
            "--db",
            db,
            QUESTION,
            cache=tmp_path / "cache",
            env=scratch(tmp_path / "cache"),
            timeout=120,
        )
    finally:
        db.parent.chmod(0o755)
    assert prompt.returncode == 0, prompt.stderr
    assert "'Zanzibar'" in prompt.stdout
    assert listing(db.parent) == before


def test_wal_database_that_cannot_be_read_without_writing_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = zanzibar_db(tmp_path, "leftover -wal, no -shm")
    before = listing(db.parent)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(blocked))  # no private folder can be made
    monkeypatch.setenv("SLMSQL_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["prompt", "--db", str(db), QUESTION])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    err = " ".join(result.stderr.split())
    assert "without writing" in err and "WAL mode" in err and "shop.sqlite-wal" in err
    assert "PRAGMA wal_checkpoint(TRUNCATE)" in err and "somewhere writable" in err
    assert "encrypted" not in err and "readonly database" not in err
    assert listing(db.parent) == before


def test_hot_journal_is_rolled_back_in_a_private_copy(slmsql: Slmsql, tmp_path: Path) -> None:
    db = make_db(tmp_path / "data", "delete")
    write_after_crash(
        db,
        "DELETE FROM customers;"
        "CREATE TABLE scratch (x TEXT);"
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)"
        " INSERT INTO scratch SELECT printf('%0500d', i) FROM n;",
        commit=False,
    )
    journal = Path(f"{db}-journal")
    assert journal.stat().st_size > 0
    before = listing(db.parent)
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    cache = tmp_path / "cache"

    prompt = slmsql(
        "prompt", "--db", db, "Which customers live in Oslo?", cache=cache, env=scratch(cache), timeout=120
    )
    assert prompt.returncode == 0, prompt.stderr
    assert "CREATE TABLE customers" in prompt.stdout and "scratch" not in prompt.stdout  # never committed
    assert "'Oslo'" in prompt.stdout

    assert eval_ex(slmsql, tmp_path, db, [("SELECT 2", "SELECT count(*) FROM customers")], cache) == 100.0
    assert listing(db.parent) == before
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest  # rolled back in the copy only


def test_stale_private_copies_of_dead_processes_are_removed(slmsql: Slmsql, tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / "tmp" / f"slmsql-snapshot-{int(dead.stdout)}-test"
    stale.mkdir(parents=True)
    (stale / "shop.sqlite").write_bytes(b"left by a killed run")
    db = zanzibar_db(tmp_path, "leftover -wal, no -shm")  # read through a private copy
    assert (
        slmsql(
            "prompt",
            "--db",
            db,
            QUESTION,
            cache=tmp_path / "cache",
            env=scratch(tmp_path / "cache"),
            timeout=120,
        ).returncode
        == 0
    )
    assert list((tmp_path / "tmp").iterdir()) == []


# --- what the model sees and what the executor runs ---------------------------------------------


@pytest.fixture()
def rich_db(tmp_path: Path) -> Path:
    db = tmp_path / "rich.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE orders (
            id INTEGER PRIMARY KEY,
            customer TEXT,
            cents INTEGER,
            euros REAL GENERATED ALWAYS AS (cents / 100.0) VIRTUAL,
            label TEXT GENERATED ALWAYS AS (customer || ' #' || id) STORED
        );
        INSERT INTO orders (customer, cents) VALUES ('Ada', 1250), ('Brian', 300), ('Ada', 99);
        CREATE VIEW big_spenders AS
            SELECT customer, sum(cents) AS total, upper(customer) AS shout FROM orders GROUP BY customer;
        CREATE VIRTUAL TABLE notes USING fts5(body);
        INSERT INTO notes (body) VALUES ('hello world'), ('goodbye moon'), ('hello again');
        """
    )
    conn.commit()
    conn.close()
    return db


def test_prompt_shows_views_and_generated_columns_but_no_fts_shadow_tables(
    slmsql: Slmsql, rich_db: Path, tmp_path: Path
) -> None:
    done = slmsql(
        "prompt",
        "--db",
        rich_db,
        "Who spent the most?",
        cache=tmp_path / "cache",
        env=scratch(tmp_path / "cache"),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "    euros real, -- example: [12.5, 3.0]" in out
    assert "    label text, -- example: ['Ada #1', 'Brian #2']" in out
    assert "CREATE TABLE big_spenders (\n    customer text, -- example: ['Ada', 'Brian']" in out
    assert "    total integer, -- example: [1349, 300]" in out  # no declared type: its values'
    assert "    shout text, -- example: ['ADA', 'BRIAN']" in out
    assert "CREATE TABLE notes (\n    body text, -- example: ['hello world', 'goodbye moon']\n);" in out
    assert (
        out.index("CREATE TABLE orders")
        < out.index("CREATE TABLE notes")
        < out.index("CREATE TABLE big_spenders")
    )
    assert "notes_data" not in out and "notes_idx" not in out and "notes_config" not in out


def test_fts5_match_reads_work_and_writes_stay_refused(slmsql: Slmsql, rich_db: Path, tmp_path: Path) -> None:
    items = [
        ("SELECT 2", "SELECT count(*) FROM notes WHERE notes MATCH 'hello'"),
        ("SELECT 'goodbye moon'", "SELECT body FROM notes('moon')"),
        ("SELECT 'Ada', 1349", "SELECT customer, total FROM big_spenders ORDER BY total DESC LIMIT 1"),
        ("SELECT 12.5, 'Ada #1'", "SELECT euros, label FROM orders WHERE id = 1"),
    ]
    assert eval_ex(slmsql, tmp_path, rich_db, items, tmp_path / "cache") == 100.0

    digest = hashlib.sha256(rich_db.read_bytes()).hexdigest()
    for sql in (
        "INSERT INTO notes (body) VALUES ('evil')",
        "DELETE FROM notes",
        "INSERT INTO notes (notes) VALUES ('optimize')",
        "UPDATE sqlite_master SET sql = '' WHERE name = 'orders'",
    ):
        result = execute(rich_db, sql)
        assert result.error and not result.rows, sql
    assert hashlib.sha256(rich_db.read_bytes()).hexdigest() == digest


@pytest.mark.parametrize(
    ("sql", "name"),
    [
        ("SAVEPOINT x", "SAVEPOINT"),
        ("RELEASE x", "RELEASE"),
        ("REINDEX", "REINDEX"),
        ("REINDEX orders", "REINDEX"),
        ("  -- why not\n/* c */ ANALYZE", "ANALYZE"),
        ("BEGIN", "BEGIN"),
        ("CREATE TEMP TABLE t (a)", "CREATE TEMP TABLE"),
        ("DROP VIEW big_spenders", "DROP VIEW"),
        ("WITH x AS (SELECT 1) DELETE FROM orders", "DELETE"),
        ("PRAGMA table_info(orders)", "PRAGMA"),
    ],
)
def test_refusals_name_the_statement(rich_db: Path, sql: str, name: str) -> None:
    result = execute(rich_db, sql)
    assert result.error is not None
    assert result.error.endswith(f"(got {name})"), result.error
    assert "ALIAS" not in result.error and "COLUMN" not in result.error


def test_authorizer_refusal_names_the_action(rich_db: Path) -> None:
    result = execute(rich_db, "SELECT load_extension('/tmp/evil.so')")  # allowed by sqlglot, not by SQLite
    assert result.error is not None and result.error.endswith("(got load_extension())"), result.error


def test_one_private_copy_per_version_of_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slmsql_cli.targets.sqlite_open import open_readonly

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    db = zanzibar_db(tmp_path, "leftover -wal, no -shm")

    def count() -> int:
        conn = open_readonly(db)
        try:
            return int(conn.execute("SELECT count(*) FROM customers").fetchone()[0])
        finally:
            conn.close()

    assert count() == 3 and count() == 3
    (first,) = tmp_path.glob("slmsql-snapshot-*")  # made once, reused
    write_after_crash(db, "INSERT INTO customers (name, city) VALUES ('Dev', 'Timbuktu');", commit=True)
    Path(f"{db}-shm").unlink()
    assert count() == 4
    (second,) = tmp_path.glob("slmsql-snapshot-*")  # the old version's copy is gone
    assert second != first
