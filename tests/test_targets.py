"""DuckDB files and PostgreSQL servers as `--db`: the same prompt as SQLite, candidates run in the
target engine, and nothing a candidate does changes the data.

PostgreSQL runs for real (tests/pg_server.py starts a throwaway server); the tests that need it
skip only when no server can start, saying why. DuckDB is in-process. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg_server
import pytest
from conftest import Slmsql
from typer.testing import CliRunner

from slmsql_cli.cli import app
from slmsql_cli.database import open_database
from slmsql_cli.errors import UserError

duckdb = pytest.importorskip("duckdb", reason="the [targets] extra is not installed")
psycopg = pytest.importorskip("psycopg", reason="the [targets] extra is not installed")

runner = CliRunner()

# Portable DDL: the same data in SQLite, DuckDB and PostgreSQL.
SHOP = [
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT)",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers (id), "
    "total REAL, placed TEXT)",
    "CREATE VIEW londoners AS SELECT id, name FROM customers WHERE city = 'London'",
    "INSERT INTO customers VALUES (1, 'Ada Lovelace', 'London'), (2, 'Grace Hopper', 'New York'), "
    "(3, 'Alan Turing', 'London'), (4, 'Edsger Dijkstra', 'Rotterdam')",
    "INSERT INTO orders VALUES (10, 1, 12.5, '2024-01-03'), (11, 2, 99.0, '2024-02-11'), "
    "(12, 1, 7.25, '2024-03-30'), (13, 4, 3.0, '2024-04-01')",
]
TABLES = ("customers", "orders")
QUESTION = "Which customers from London placed orders?"


def said(sql: str) -> str:
    return f"<think>\nLook it up.\n</think>\n<answer>\n{sql}\n</answer>"


# ---- the three databases ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> None:
    monkeypatch.setenv("PGPASSWORD", pg_server.PASSWORD)  # the libpq way; never in a URL


def _superuser(pg: pg_server.Server, dbname: str = "postgres") -> Any:
    return psycopg.connect(pg.url(dbname), password=pg_server.PASSWORD, autocommit=True)


@pytest.fixture()
def pg_shop(pg: pg_server.Server, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database holding SHOP; its URL (no password)."""
    name = "shop_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:10]
    with _superuser(pg) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    with _superuser(pg, name) as conn:
        for statement in SHOP:
            conn.execute(statement)
    yield pg.url(name)
    with _superuser(pg) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture()
def sqlite_shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as conn:
        for statement in SHOP:
            conn.execute(statement)
    conn.close()
    return path


@pytest.fixture()
def duckdb_shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.duckdb"
    conn = duckdb.connect(str(path))
    for statement in SHOP:
        conn.execute(statement)
    conn.close()
    return path


@pytest.fixture(params=["duckdb", "pg"])
def target(request: pytest.FixtureRequest) -> str:
    """The --db text of a live target holding SHOP."""
    return str(request.getfixturevalue(f"{request.param}_shop"))


# ---- the prompt ------------------------------------------------------------------------------

# The engines' names for SHOP's types where they differ from SQLite's: DuckDB says varchar and
# float, PostgreSQL integer, text and real like SQLite.
_ENGINE_TYPES = {"varchar": "text", "float": "real"}


def _sqlite_types(prompt: str) -> str:
    return re.sub(
        r"^(    \w+) (\w+)\b", lambda m: f"{m[1]} {_ENGINE_TYPES.get(m[2], m[2])}", prompt, flags=re.M
    )


def test_prompt_is_the_sqlite_prompt(target: str, sqlite_shop: Path) -> None:
    expected = runner.invoke(app, ["prompt", "--db", str(sqlite_shop), QUESTION])
    got = runner.invoke(app, ["prompt", "--db", target, QUESTION])
    assert expected.exit_code == 0 and got.exit_code == 0, got.output
    assert "CREATE TABLE londoners" in got.stdout  # the view, after the tables
    assert "example: ['London'" in got.stdout  # the value the question mentions, from the value index
    assert _sqlite_types(got.stdout) == expected.stdout


def test_target_schema_has_keys(target: str) -> None:
    db = open_database(target)
    customers, orders, view = db.schema.tables
    assert (customers.name, orders.name, view.name) == ("customers", "orders", "londoners")
    assert customers.primary_key == ["id"] and orders.primary_key == ["id"]
    assert [(fk.column, fk.ref_table, fk.ref_column) for fk in orders.foreign_keys] == [
        ("customer_id", "customers", "id")
    ]
    assert db.samples[("customers", "city")] == ["London", "New York"]


# ---- execution -------------------------------------------------------------------------------


def test_scripted_ask_runs_candidates_in_the_target(target: str, scripted_engine: Any) -> None:
    londoners = (
        "SELECT DISTINCT c.name FROM customers AS c JOIN orders AS o ON o.customer_id = c.id "
        "WHERE c.city = 'London'"
    )
    same = "SELECT name FROM customers WHERE city = 'London' AND id IN (SELECT customer_id FROM orders)"
    broken = "SELECT name FROM customers WHERE ("  # sqlglot cannot parse it: no translation, no vote
    writes = "DELETE FROM orders"
    scripted_engine([said(londoners), said(same), said(broken), said(writes)])
    # --no-constrain: the engine's own refusals are under test (the constraint would stop the last two)
    result = runner.invoke(
        app,
        ["ask", "--db", target, "--model", "scripted", "-n", "4", "--no-merge", "--no-constrain", "--json"]
        + [QUESTION],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert sorted(doc["rows"]) == [["Ada Lovelace"]]
    assert doc["votes"] == 2 and doc["sql"] == londoners  # the model's SQL, as it wrote it
    errors = [c["error"] for c in doc["candidates"]]
    assert errors[:2] == [None, None]
    assert "cannot be translated" in errors[2]
    assert "only read-only queries" in errors[3]


def test_verbose_shows_why_a_candidate_was_not_translated(target: str, scripted_engine: Any) -> None:
    scripted_engine([said("SELECT count(*) FROM customers"), said("SELECT FROM WHERE (")])
    result = runner.invoke(
        app,
        ["ask", "--db", target, "--model", "scripted", "-n", "2", "--no-merge", "--no-constrain", "-v", "x?"],
    )
    assert result.exit_code == 0, result.output
    assert "cannot be translated" in result.stderr  # -v: a diagnostic, on stderr


def test_chat_through_the_target(target: str, scripted_engine: Any) -> None:
    count = "SELECT count(*) FROM customers"
    scripted_engine([said(count), said(count)])
    result = runner.invoke(
        app,
        ["chat", "--db", target, "--model", "scripted", "--no-merge", "-n", "2"],
        input="How many customers are there?\nexit\n",
    )
    assert result.exit_code == 0, result.output
    assert "2/2 candidates agreed" in result.stderr and "4" in result.stdout


def test_sqlite_functions_are_translated(target: str) -> None:
    db = open_database(target)
    [result] = db.run_many(
        ["SELECT substr(name, 1, 3), strftime('%Y', '2024-05-06'), iif(id > 2, 'late', 'early'), "
         "7 / 2 FROM customers WHERE id = 1 AND name LIKE '%Love%'"],
        timeout=5,
    )  # fmt: skip
    assert result is not None and result.ok, result
    assert result.rows[0][:3] == ("Ada", "2024", "early")


def test_row_cap_and_plain_values(target: str) -> None:
    db = open_database(target)
    [capped, avg] = db.run_many(
        ["SELECT id FROM orders ORDER BY id", "SELECT avg(total), sum(id) FROM orders"], timeout=5, max_rows=2
    )
    assert capped is not None and capped.truncated and capped.rows == [(10,), (11,)]
    assert avg is not None and avg.rows == [(30.4375, 46)]  # Decimal/numeric come back as Python numbers
    assert hash(frozenset(avg.rows))  # votable
    many = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 20000) SELECT n FROM r"
    [cut, empty] = db.run_many(
        [many, "SELECT name, city FROM customers WHERE id < 0"], timeout=60, max_rows=5
    )
    assert cut is not None and cut.truncated and cut.rows == [(1,), (2,), (3,), (4,), (5,)]
    assert empty is not None and empty.ok and empty.rows == [] and empty.columns == ["name", "city"]


def test_deadline(target: str) -> None:
    db = open_database(target)
    endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    start = time.monotonic()
    [result] = db.run_many([endless], timeout=0.5)
    assert result is not None and result.timed_out, result
    assert time.monotonic() - start < 30  # stopped by the engine, not left running
    [after] = db.run_many(["SELECT count(*) FROM customers"], timeout=5)
    assert after is not None and after.rows == [(4,)]  # the connection still serves


# ---- attacks ---------------------------------------------------------------------------------

COMMON_ATTACKS = [
    "INSERT INTO customers VALUES (9, 'Mallory', 'Nowhere')",
    "UPDATE customers SET name = 'pwned'",
    "DELETE FROM orders",
    "DROP TABLE orders",
    "CREATE TABLE evil (a INTEGER)",
    "CREATE TEMP TABLE evil AS SELECT 1 AS a",
    "CREATE VIEW evil AS SELECT 1",
    "ALTER TABLE customers ADD COLUMN evil INTEGER",
    "SELECT 1; DELETE FROM orders",
    "SELECT * FROM customers; DROP TABLE orders",
    "BEGIN; DELETE FROM orders; COMMIT",
    "WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone",
    "SELECT * INTO evil FROM customers",
    "SELECT * FROM customers FOR UPDATE",
    "ATTACH DATABASE '{marker}.db' AS evil",
    "PRAGMA writable_schema = 1",
    "VACUUM",
]
ENGINE_ATTACKS = {
    "postgres": [
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT * FROM pg_ls_dir('.')",
        "SELECT lo_export(lo_from_bytea(0, 'x'), '{marker}')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "SELECT nextval('evil_seq')",
        "COPY (SELECT 1) TO PROGRAM 'touch {marker}'",
        "SELECT dblink_exec('dbname=postgres', 'DROP TABLE orders')",
        "SELECT query_to_xml('DELETE FROM orders', true, true, '')",
        "SELECT pg_terminate_backend(pg_backend_pid())",
    ],
    "duckdb": [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/passwd')",
        "COPY customers TO '{marker}'",
        "SELECT * FROM query('DELETE FROM orders')",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "CHECKPOINT",
    ],
}


def _fingerprint(target: str, pg: pg_server.Server | None) -> dict[str, Any]:
    """Row counts and a checksum of every table, and every relation that exists, read as an owner."""
    out: dict[str, Any] = {}
    if target.startswith("postgresql://"):
        assert pg is not None
        with _superuser(pg, target.rsplit("/", 1)[1]) as conn:
            for t in TABLES:
                rows = conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                out[t] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
            out["relations"] = conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' "
                "ORDER BY 1, 2"
            ).fetchall()
            out["large objects"] = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
        return out
    path = Path(target)
    out["file"] = hashlib.sha256(path.read_bytes()).hexdigest()
    conn = duckdb.connect(str(path), read_only=True)
    try:
        for t in TABLES:
            rows = conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
            out[t] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
        out["relations"] = conn.execute(
            "SELECT table_name FROM information_schema.tables ORDER BY 1"
        ).fetchall()
    finally:
        conn.close()
    out["files"] = sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))
    return out


def test_attacks_change_nothing(target: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    pg = request.getfixturevalue("pg") if target.startswith("postgresql://") else None
    dialect = "postgres" if pg else "duckdb"
    marker = tmp_path / "pwned"
    attacks = [a.replace("{marker}", str(marker)) for a in COMMON_ATTACKS + ENGINE_ATTACKS[dialect]]
    before = _fingerprint(target, pg)
    db = open_database(target)
    results = db.run_many(attacks, timeout=5)
    refused = {sql: r for sql, r in zip(attacks, results) if r is not None and not r.ok}
    assert set(refused) == set(attacks), [sql for sql in attacks if sql not in refused]
    assert db.run("SELECT count(*) FROM orders", timeout=5).rows == [(4,)]
    db.close()
    assert _fingerprint(target, pg) == before
    assert not list(tmp_path.glob("pwned*"))


RAW_WRITES = [
    "INSERT INTO customers VALUES (9, 'Mallory', 'Nowhere')",
    "DELETE FROM orders",
    "CREATE TABLE evil (a INTEGER)",
    "DROP TABLE orders",
    "SELECT 1; DELETE FROM orders",
]


def test_the_engine_itself_refuses_writes(target: str, request: pytest.FixtureRequest) -> None:
    """Past slmsql's own checks (the target's `run`, which takes SQL already translated and
    checked), the engine still refuses: read-only file or transaction, one statement."""
    pg = request.getfixturevalue("pg") if target.startswith("postgresql://") else None
    before = _fingerprint(target, pg)
    db = open_database(target)
    for sql in RAW_WRITES:
        result = db.target.run(sql, 5, 100)
        assert result.error, (sql, result)
    db.target.close()
    assert _fingerprint(target, pg) == before


# ---- bad input -------------------------------------------------------------------------------


def _error(*args: str) -> str:
    result = runner.invoke(app, ["prompt", *args, "q?"])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    return result.stderr


def test_scheme_typo() -> None:
    err = _error("--db", "postgresq://me@localhost/shop")
    assert "postgresq" in err and "did you mean postgresql://" in err


def test_postgres_scheme_alias(pg_shop: str) -> None:
    url = pg_shop.replace("postgresql://", "postgres://")
    assert open_database(url).schema.tables[0].name == "customers"


def test_wrong_password(pg_shop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "wrong")
    err = _error("--db", pg_shop)
    assert "refused user 'slmsql'" in err and "PGPASSWORD" in err
    assert "wrong" not in err


def test_database_does_not_exist(pg: pg_server.Server) -> None:
    err = _error("--db", pg.url("no_such_db"))
    assert "'no_such_db' does not exist" in err and f"127.0.0.1:{pg.port}" in err


def test_unreachable_server_names_host_and_port() -> None:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: nothing answers there
        err = _error("--db", f"postgresql://me@127.0.0.1:{port}/shop")
    assert f"cannot reach PostgreSQL at 127.0.0.1:{port}" in err


def test_unknown_host() -> None:
    err = _error("--db", "postgresql://me@no-such-host.invalid:5432/shop")
    assert "cannot reach PostgreSQL at no-such-host.invalid:5432" in err and "host name" in err


def test_empty_target_is_refused(pg: pg_server.Server, tmp_path: Path) -> None:
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    with pytest.raises(UserError, match="no tables"):
        open_database(str(empty))
    with pytest.raises(UserError, match="no tables"):
        open_database(pg.url("postgres"))


# ---- the real model --------------------------------------------------------------------------


def test_ask_json_with_the_test_model(slmsql: Slmsql, target: str, gemma_gguf: Path, tmp_path: Path) -> None:
    proc = slmsql(
        "ask", "--db", target, "--model", gemma_gguf, "-n", "1", "--max-tokens", "24", "--no-merge", "--json",
        "How many customers are there?", cache=tmp_path / "cache", timeout=600,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr  # a base model may or may not write SQL
    doc = json.loads(proc.stdout)
    assert doc["question"] == "How many customers are there?" and len(doc["candidates"]) == 1
    assert doc["generation"]["generated_tokens"] > 0
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "module, spec", [("duckdb", "duckdb_shop"), ("psycopg", "postgresql://me@127.0.0.1:1/x")]
)
def test_missing_driver_names_the_extra(
    slmsql: Slmsql, module: str, spec: str, request: pytest.FixtureRequest
) -> None:
    db = str(request.getfixturevalue(spec)) if spec == "duckdb_shop" else spec
    proc = slmsql("prompt", "--db", db, "q?", code=f"import sys; sys.modules[{module!r}] = None", timeout=120)
    assert proc.returncode != 0
    assert "slmsql[targets]" in proc.stderr and "Traceback" not in proc.stderr


def test_value_index_is_cached_by_schema_fingerprint(pg: pg_server.Server, pg_shop: str) -> None:
    from slmsql_cli import database
    from slmsql_cli.values import ValueIndex

    def matched() -> dict:
        database._LIVE.clear()  # a new process, as far as the memo knows: only the disk cache is left
        return open_database(pg_shop).relevant_values("Who lives in New York?")

    builds = ValueIndex.builds
    assert matched() == {("customers", "city"): ["New York"]}
    assert matched() == {("customers", "city"): ["New York"]} and ValueIndex.builds == builds + 1
    with _superuser(pg, pg_shop.rsplit("/", 1)[1]) as conn:
        conn.execute("ALTER TABLE customers ADD COLUMN country TEXT")
        conn.execute("UPDATE customers SET country = 'United Kingdom' WHERE city = 'London'")
    assert matched() == {("customers", "city"): ["New York"]} and ValueIndex.builds == builds + 2
    assert "country" in [c.name for c in open_database(pg_shop).schema.tables[0].columns]


def test_file_kind_comes_from_its_header(sqlite_shop: Path, tmp_path: Path) -> None:
    misnamed = tmp_path / "really-sqlite.duckdb"
    misnamed.write_bytes(sqlite_shop.read_bytes())
    assert open_database(str(misnamed)).target.dialect == "sqlite"  # a SQLite file, whatever its name
    damaged = tmp_path / "damaged.duckdb"
    damaged.write_bytes(b"\0" * 8 + b"DUCK" + b"\xff" * 4096)
    with pytest.raises(UserError, match="cannot open DuckDB database"):
        open_database(str(damaged))


def test_engine_values_become_sqlite_values() -> None:
    import datetime
    import decimal
    import uuid

    from slmsql_cli.targets import plain

    cases = {
        decimal.Decimal("42"): 42,
        decimal.Decimal("2.50"): 2.5,
        True: 1,
        datetime.date(2024, 1, 2): "2024-01-02",
        datetime.datetime(2024, 1, 2, 3, 4, 5): "2024-01-02 03:04:05",
        memoryview(b"ab"): b"ab",
        uuid.UUID(int=1): "00000000-0000-0000-0000-000000000001",
        (1, "a"): '[1, "a"]',
        "text": "text",
        None: None,
    }
    for engine_value, expected in cases.items():
        got = plain(engine_value)
        assert got == expected and type(got) is type(expected), (engine_value, got)
    assert plain([1, 2]) == "[1, 2]"  # arrays: hashable text, so results can vote
