"""executor.execute never writes and never raises for bad SQL; real queries return the right rows.

The hostile-SQL tests run against a writable copy of a Spider database (a file that is read-only
on disk would hide a missing guard) and compare its sha256 before and after.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slmsql_cli.errors import UserError
from slmsql_cli.targets import executor
from slmsql_cli.targets.executor import execute, execute_many
from slmsql_cli.targets.result import ExecResult
from slmsql_cli.targets.sqlcheck import check_sql

WRITES = [
    "INSERT INTO singer (Singer_ID, Name) VALUES (99, 'x')",
    "INSERT OR REPLACE INTO singer (Singer_ID, Name) VALUES (1, 'x')",
    "REPLACE INTO singer (Singer_ID, Name) VALUES (1, 'x')",
    "UPDATE singer SET Name = 'x'",
    "DELETE FROM singer",
    "DROP TABLE singer",
    "DROP VIEW IF EXISTS v",
    "CREATE TABLE evil (a)",
    "CREATE TEMP TABLE evil (a)",
    "CREATE VIEW v AS SELECT 1",
    "CREATE INDEX i ON singer (Name)",
    "CREATE TRIGGER t AFTER INSERT ON singer BEGIN DELETE FROM singer; END",
    "ALTER TABLE singer RENAME TO s2",
    "ALTER TABLE singer ADD COLUMN evil TEXT",
    "VACUUM",
    "VACUUM INTO '{tmp}/copy.db'",
    "REINDEX",
    "ANALYZE",
    "BEGIN IMMEDIATE",
    "COMMIT",
    "WITH x AS (SELECT 1) INSERT INTO singer (Singer_ID) SELECT * FROM x",
    "WITH x AS (SELECT 1) DELETE FROM singer",
    "ATTACH DATABASE '{tmp}/attached.db' AS x",
    "ATTACH '{tmp}/attached.db' AS x",
    "DETACH x",
    "PRAGMA query_only=OFF",
    "PRAGMA query_only = 0",
    "PRAGMA writable_schema=ON",
    "PRAGMA journal_mode=DELETE",
    "PRAGMA user_version=7",
    "PRAGMA table_info(singer)",
    "SELECT load_extension('/tmp/evil.so')",
    "SELECT writefile('{tmp}/out.txt', 'x')",
    "SELECT readfile('/etc/passwd')",
    "SELECT fts3_tokenizer('simple')",
    "EXPLAIN SELECT 1",  # harmless, but not a query: only the sqlglot allow-list refuses it
]
SQLITE_REFUSES = [w for w in WRITES if not w.startswith("EXPLAIN")]
INJECTIONS = [
    "'; DROP TABLE singer; --",
    "1; DROP TABLE singer",
    "x' OR '1'='1",
    '"; DELETE FROM singer; --',
    "*/ DROP TABLE singer; /*",
    "\x00",
    "'",
    "\\",
    "SELECT",
    ";",
    "--",
    "/*",
]


@pytest.fixture()
def db(data_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of concert_singer, alone in its own folder."""
    folder = tmp_path / "db"
    folder.mkdir()
    path = folder / "concert_singer.sqlite"
    shutil.copyfile(data_dir / "spider_dev/database/concert_singer/concert_singer.sqlite", path)
    path.chmod(0o644)
    return path


def _fingerprint(path: Path) -> tuple[str, list[str]]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), sorted(p.name for p in path.parent.iterdir())


def _hostile(db: Path, sql: str) -> ExecResult:
    sql = sql.replace("{tmp}", str(db.parent))
    before = _fingerprint(db)
    result = execute(db, sql, timeout=2.0)
    assert _fingerprint(db) == before, sql
    assert isinstance(result, ExecResult)
    return result


@pytest.mark.parametrize("sql", WRITES)
def test_writes_are_refused(db: Path, sql: str) -> None:
    result = _hostile(db, sql)
    assert not result.ok and result.error, sql
    assert not (db.parent / "attached.db").exists()


@pytest.mark.parametrize("sql", SQLITE_REFUSES)
def test_sqlite_guards_hold_without_the_sqlglot_layer(
    db: Path, sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defense in depth: with the sqlglot pre-check switched off, SQLite alone still refuses."""
    monkeypatch.setattr(executor, "check_sql", lambda _sql: None)
    result = _hostile(db, sql)
    assert not result.ok, sql
    assert not (db.parent / "attached.db").exists()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1; DROP TABLE singer",
        "SELECT 1;DROP TABLE singer;",
        "SELECT 1 /* x */; DELETE FROM singer",
        "SELECT 1 --\n; DROP TABLE singer",
        "SELECT * FROM singer; ATTACH '{tmp}/attached.db' AS x",
        "SELECT 1; PRAGMA query_only=OFF; DELETE FROM singer",
        "SELECT 1;\nSELECT 2",
    ],
)
def test_multi_statement_strings_are_refused(db: Path, sql: str) -> None:
    result = _hostile(db, sql)
    assert not result.ok
    assert not (db.parent / "attached.db").exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    write=st.sampled_from(WRITES),
    noise=st.text(max_size=30),
    glue=st.sampled_from(["; ", ";\n", " ", "\n", ";/* */", "; -- x\n", " UNION ", ""]),
    order=st.booleans(),
)
def test_fuzz_write_with_random_text(db: Path, write: str, noise: str, glue: str, order: bool) -> None:
    """A write glued to random text: never raises, never changes a byte."""
    sql = f"{write}{glue}{noise}" if order else f"{noise}{glue}{write}"
    _hostile(db, sql)
    assert not (db.parent / "attached.db").exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    injection=st.sampled_from(INJECTIONS),
    noise=st.text(max_size=20),
    template=st.sampled_from(
        [
            "SELECT * FROM singer WHERE Name = '{i}'",
            "SELECT * FROM singer WHERE Singer_ID = {i}",
            "{i}",
            "SELECT {i} FROM singer",
            "SELECT * FROM singer -- {i}",
            "{i} {n}",
            "SELECT '{n}'; {i}",
        ]
    ),
)
def test_fuzz_injection_strings(db: Path, injection: str, noise: str, template: str) -> None:
    sql = template.replace("{i}", injection).replace("{n}", noise)
    result = _hostile(db, sql)
    if result.ok:  # whatever ran was a plain read
        assert check_sql(sql) is None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_fuzz_random_text_never_raises(db: Path, text: str) -> None:
    _hostile(db, text)


def test_spider_gold_queries_return_the_right_rows(data_dir: Path) -> None:
    """execute gives exactly what a plain read-only sqlite3 connection gives, in the same order."""
    questions = json.loads((data_dir / "spider_dev/dev.json").read_text())
    for q in questions[::15]:
        path = data_dir / "spider_dev/database" / q["db_id"] / f"{q['db_id']}.sqlite"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.text_factory = lambda b: b.decode("utf-8", errors="replace")
        expected = conn.execute(q["query"]).fetchall()
        conn.close()
        result = execute(path, q["query"])
        assert result.ok, (q["query"], result.error)
        assert result.rows == expected, q["query"]


def test_known_answers(data_dir: Path) -> None:
    car = data_dir / "spider_dev/database/car_1/car_1.sqlite"
    result = execute(car, "SELECT count(*) AS n FROM cars_data")
    assert result.columns == ["n"] and result.rows == [(406,)] and result.ok and not result.truncated
    result = execute(car, "SELECT Continent FROM continents ORDER BY ContId")
    assert result.rows == [("america",), ("europe",), ("asia",), ("africa",), ("australia",)]
    assert result.key() == frozenset({("america",), ("europe",), ("asia",), ("africa",), ("australia",)})
    with_cte = execute(car, "WITH c AS (SELECT ContId FROM continents) SELECT count(*) FROM c")
    assert with_cte.rows == [(5,)]
    assert execute(car, "VALUES (1, 'a'), (2, 'b')").rows == [(1, "a"), (2, "b")]


def test_row_cap(data_dir: Path) -> None:
    car = data_dir / "spider_dev/database/car_1/car_1.sqlite"
    capped = execute(car, "SELECT Id FROM cars_data ORDER BY Id", max_rows=5)
    assert capped.rows == [(1,), (2,), (3,), (4,), (5,)] and capped.truncated and capped.ok
    full = execute(car, "SELECT Id FROM cars_data", max_rows=406)
    assert len(full.rows) == 406 and not full.truncated


def test_runaway_recursive_cte_times_out(data_dir: Path) -> None:
    car = data_dir / "spider_dev/database/car_1/car_1.sqlite"
    t = time.perf_counter()
    result = execute(
        car,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        timeout=0.5,
    )
    elapsed = time.perf_counter() - t
    assert result.timed_out and not result.ok and result.error is None
    assert 0.45 <= elapsed < 2.0


def test_huge_cross_join_times_out(data_dir: Path) -> None:
    car = data_dir / "spider_dev/database/car_1/car_1.sqlite"
    result = execute(
        car, "SELECT count(*) FROM cars_data a, cars_data b, cars_data c, cars_data d", timeout=0.3
    )
    assert result.timed_out and result.seconds < 1.5


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "bad.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (s TEXT)")
    conn.execute("INSERT INTO t VALUES (CAST(x'61ff62' AS TEXT))")
    conn.commit()
    conn.close()
    assert execute(path, "SELECT s FROM t").rows == [("a\ufffdb",)]


def test_errors_are_results_not_exceptions(data_dir: Path) -> None:
    car = data_dir / "spider_dev/database/car_1/car_1.sqlite"
    for sql in [
        "SELEC 1",
        "SELECT nope FROM cars_data",
        "SELECT * FROM missing",
        "",
        "   ",
        "SELECT zeroblob(1000000000)",
    ]:
        result = execute(car, sql)
        assert not result.ok and result.error


def test_missing_database_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        execute(tmp_path / "nope.sqlite", "SELECT 1")
    assert not (tmp_path / "nope.sqlite").exists()


def test_execute_many_runs_identical_sql_once(db: Path) -> None:
    executor.clear_cache()
    results = execute_many(
        db, ["SELECT count(*) FROM singer", None, "SELECT count(*) FROM singer", "SELECT 1"]
    )
    assert results[1] is None
    assert results[0] is results[2] and results[0].rows == [(6,)]
    # a changed file is a different database: the cache misses
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM singer WHERE Singer_ID = 1")
    conn.commit()
    conn.close()
    again = execute_many(db, ["SELECT count(*) FROM singer"])[0]
    assert again is not results[0] and again.rows == [(5,)]


def test_ctrl_c_during_a_query_is_not_swallowed(data_dir: Path) -> None:
    """sqlite3 clears exceptions raised in a progress handler; Ctrl-C must still stop the program."""
    import os
    import signal
    import threading

    car = data_dir / "spider_dev/database/car_1/car_1.sqlite"
    # A shell's background job starts with SIGINT ignored; give this test the handler a terminal gives.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        t = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            execute(
                car,
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
                timeout=5.0,
            )
        timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.perf_counter() - t < 2.0
