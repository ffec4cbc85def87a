"""Every query goes through the registered database's target: `/v1/sql`, MCP `run_sql` (the web
page's "edit and run" posts to `/v1/sql`), on SQLite, DuckDB and PostgreSQL alike.

Real servers and files throughout: the HTTP app in process, the MCP server through the SDK's
in-process client, a throwaway PostgreSQL (conftest.pg) with an owner role and a superuser, and
real DuckDB and SQLite files. Only the model is scripted (no test here asks a question).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg_server
import pytest

pytest.importorskip("fastapi", reason="needs the [serve] extra")
duckdb = pytest.importorskip("duckdb", reason="the [targets] extra is not installed")
psycopg = pytest.importorskip("psycopg", reason="the [targets] extra is not installed")

from starlette.testclient import TestClient
from test_targets import SHOP

from slmsql_cli.database import open_database
from slmsql_cli.pipeline import AskConfig, Pipeline
from slmsql_cli.serve.http import create_app
from slmsql_cli.serve.registry import Registry, parse_spec
from slmsql_cli.serve.service import QueriesBusy, Service
from slmsql_cli.targets import worker

LONDON = "SELECT name FROM customers WHERE city = 'London' ORDER BY name"
LONDONERS = [["Ada Lovelace"], ["Alan Turing"]]
OWNER = "slmsql_owner"  # a login role that owns its database and tables, not a superuser


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> None:
    monkeypatch.setenv("PGPASSWORD", pg_server.PASSWORD)  # the libpq way; every role has it


def _connect(pg: pg_server.Server, dbname: str = "postgres", user: str = pg_server.USER) -> Any:
    return psycopg.connect(pg.url(dbname, user), password=pg_server.PASSWORD, autocommit=True)


def _fresh_database(pg: pg_server.Server, request: pytest.FixtureRequest, owner: str) -> str:
    name = "door_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:10]
    with _connect(pg) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [OWNER]).fetchone()
        if not exists:
            conn.execute(f"CREATE ROLE {OWNER} LOGIN PASSWORD '{pg_server.PASSWORD}'")
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name} OWNER {owner}")
    request.addfinalizer(lambda: _drop(pg, name))
    return name


def _drop(pg: pg_server.Server, name: str) -> None:
    with _connect(pg) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---- the three databases, and decoys where a bare name would lead ------------------------------


@pytest.fixture()
def shops(pg: pg_server.Server, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """SHOP as a SQLite file, a DuckDB file and a PostgreSQL database: name -> --db text."""
    folder = tmp_path / "data"
    folder.mkdir()
    sqlite_path, duck_path = folder / "shop.sqlite", folder / "shop.duckdb"
    with sqlite3.connect(sqlite_path) as conn:
        for statement in SHOP:
            conn.execute(statement)
    conn.close()
    duck = duckdb.connect(str(duck_path))
    for statement in SHOP:
        duck.execute(statement)
    duck.close()
    name = _fresh_database(pg, request, pg_server.USER)
    with _connect(pg, name) as conn:
        for statement in SHOP:
            conn.execute(statement)
    return {"lite": str(sqlite_path), "duck": str(duck_path), "pg": pg.url(name)}


def _decoy(path: Path) -> None:
    """A SQLite file whose customers all live in London under another name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT)")
        conn.execute("INSERT INTO customers VALUES (1, 'DECOY', 'London')")
    conn.close()


@pytest.fixture()
def decoys(tmp_path: Path, shops: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding SQLite files under the names the databases go by
    (`shop.duckdb`, `host:port/dbname`): what a bare name would open."""
    cwd = tmp_path / "cwd"
    db = open_database(shops["pg"])
    for name in ("shop.duckdb", "shop.sqlite", db.name):
        _decoy(cwd / name)
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture()
def service(shops: dict[str, str], decoys: Path, scripted_engine: Any) -> Iterator[Service]:
    scripted_engine([])
    pipeline = Pipeline.load("scripted", config=AskConfig(n=1, merge=False, timeout=5))
    registry = Registry.open([f"{name}={spec}" for name, spec in shops.items()])
    svc = Service(pipeline, registry, model_name="scripted", load_seconds=0.0)
    yield svc
    svc.close()


def test_v1_sql_runs_on_each_registered_database_never_a_decoy(service: Service) -> None:
    client = TestClient(create_app(service))
    for name in ("lite", "duck", "pg"):
        doc = client.post("/v1/sql", json={"database": name, "sql": LONDON}).json()
        assert doc["error"] is None and doc["rows"] == LONDONERS, (name, doc)
        assert doc["row_count"] == 2 and doc["database"] == name
    # SQLite SQL, as the model writes it, is translated for the engine
    for name in ("lite", "duck", "pg"):
        doc = client.post(
            "/v1/sql", json={"database": name, "sql": "SELECT substr(name, 1, 3) FROM customers WHERE id = 1"}
        ).json()
        assert doc["rows"] == [["Ada"]], (name, doc)


def test_mcp_run_sql_runs_on_each_registered_database(service: Service) -> None:
    from mcp.client import Client

    from slmsql_cli.serve import mcp_server
    from slmsql_cli.serve.requestlog import RequestLog

    async def calls() -> dict[str, Any]:
        async with Client(mcp_server.build(service, RequestLog())) as client:
            return {
                name: (
                    await client.call_tool("run_sql", {"database": name, "sql": LONDON})
                ).structured_content
                for name in ("lite", "duck", "pg")
            }

    for name, doc in asyncio.run(calls()).items():
        assert doc is not None and doc["rows"] == LONDONERS, (name, doc)


def test_serve_takes_a_postgresql_url(shops: dict[str, str]) -> None:
    url = shops["pg"]
    assert parse_spec(f"pg={url}") == ("pg", url)  # the `//` kept: a URL, not a path
    dbname = url.rsplit("/", 1)[1]
    assert parse_spec(url) == (dbname, url)  # unnamed: after its database
    assert parse_spec(f"{url}?sslmode=disable") == (dbname, f"{url}?sslmode=disable")
    registry = Registry.open([f"pg={url}", shops["duck"]])
    assert registry.names() == ["pg", "shop"]
    entry = registry.get("pg")
    assert entry.database.target.dialect == "postgres"
    assert entry.database.run("SELECT count(*) FROM customers", timeout=5).rows == [(4,)]


# ---- PostgreSQL: read-only by rule ---------------------------------------------------------------


@pytest.fixture()
def brin_shop(pg: pg_server.Server, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database owned by OWNER: orders with a BRIN index whose newest pages are not summarized
    yet (what `brin_summarize_new_values` would change), autovacuum off so that nothing else
    does; a replication slot that exists (for pg_drop_replication_slot). The database's name."""
    name = _fresh_database(pg, request, OWNER)
    with _connect(pg, name, OWNER) as conn:
        conn.execute("CREATE TABLE orders (id integer, placed date) WITH (autovacuum_enabled = false)")
        conn.execute(
            "INSERT INTO orders SELECT i, DATE '2024-01-01' + i % 365 FROM generate_series(1, 2000) i"
        )
        conn.execute("CREATE INDEX orders_brin ON orders USING brin (placed) WITH (pages_per_range = 1)")
        conn.execute("INSERT INTO orders SELECT i, DATE '2025-01-01' FROM generate_series(2001, 4000) i")
    with _connect(pg, name) as conn:
        conn.execute("SELECT pg_create_physical_replication_slot('slmsql_kept')")
        deadline = time.monotonic() + 10  # the inserts' statistics reach the server when their session ends
        while time.monotonic() < deadline and conn.execute(
            "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'orders'"
        ).fetchone() != (4000,):
            time.sleep(0.05)
    yield name
    with _connect(pg) as conn:
        for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall():
            conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])


STATE_CHANGES = [
    "SELECT brin_summarize_new_values('orders_brin')",
    "SELECT brin_summarize_range('orders_brin', 30)",
    "SELECT brin_desummarize_range('orders_brin', 0)",
    "SELECT pg_create_physical_replication_slot('slmsql_evil', true)",
    "SELECT * FROM pg_create_physical_replication_slot('slmsql_evil2', true)",
    "SELECT pg_drop_replication_slot('slmsql_kept')",
    "SELECT pg_stat_reset()",
    "SELECT pg_stat_reset_shared('bgwriter')",
    "SELECT pg_stat_reset_shared('archiver')",
    "SELECT pg_stat_reset_single_table_counters((SELECT oid FROM pg_class WHERE relname = 'orders'))",
    "SELECT pg_stat_reset_slru(NULL)",
    "SELECT lo_create(0)",
    "SELECT lo_from_bytea(0, 'x')",
    "SELECT pg_catalog.brin_summarize_new_values('orders_brin')",
    "SELECT count(*) FROM orders WHERE brin_summarize_new_values('orders_brin') >= 0",
    "SELECT setval('nothing', 1)",
]


def _state(pg: pg_server.Server, name: str) -> dict[str, Any]:
    """What the functions above would change, read as the superuser: the BRIN index's file (md5,
    after a checkpoint), replication slots, statistics reset times and counters, large objects."""
    with _connect(pg, name) as conn:
        conn.execute("CHECKPOINT")
        one = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
        return {
            "brin pages": one("SELECT md5(pg_read_binary_file(pg_relation_filepath('orders_brin')))"),
            "slots": one("SELECT slot_name FROM pg_replication_slots ORDER BY 1"),
            "db stats reset": one(
                "SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()"
            ),
            "bgwriter reset": one("SELECT stats_reset FROM pg_stat_bgwriter"),
            "archiver reset": one("SELECT stats_reset FROM pg_stat_archiver"),
            "slru reset": one("SELECT name, stats_reset FROM pg_stat_slru ORDER BY 1"),
            "orders inserts": one("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'orders'"),
            "large objects": one("SELECT count(*) FROM pg_largeobject_metadata"),
        }


@pytest.mark.parametrize("role", [OWNER, pg_server.USER])
def test_volatile_functions_change_nothing(pg: pg_server.Server, brin_shop: str, role: str) -> None:
    before = _state(pg, brin_shop)
    assert before["slots"] == [("slmsql_kept",)] and before["large objects"] == [(0,)]
    db = open_database(pg.url(brin_shop, role))
    for sql in STATE_CHANGES:
        through_door = db.run(sql, timeout=5)  # SQLite SQL: checked, translated, then the target
        at_engine = db.target.run(sql, 5, 100)  # past slmsql's own checks: the engine's rule alone
        assert through_door.error and at_engine.error, (role, sql, through_door, at_engine)
    assert "volatile" in db.target.run(STATE_CHANGES[0], 5, 100).error  # type: ignore[operator]
    # ordinary queries, volatile ones on the allow-list included, still run
    assert db.run("SELECT count(*) FROM orders", timeout=5).rows == [(4000,)]
    assert db.run("SELECT upper('a'), random() < 2", timeout=5).rows == [("A", 1)]
    assert db.run("SELECT pg_sleep(0)", timeout=5).ok
    db.close()
    assert _state(pg, brin_shop) == before


def test_a_closed_connection_is_opened_again(pg: pg_server.Server, shops: dict[str, str]) -> None:
    db = open_database(shops["pg"])
    assert db.run("SELECT count(*) FROM customers", timeout=5).rows == [(4,)]
    with _connect(pg) as conn:
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'slmsql' AND datname = %s",
            [shops["pg"].rsplit("/", 1)[1]],
        ).fetchall()
        assert ended and all(ok for (ok,) in ended)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and conn.execute(  # until the backend is gone
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'slmsql'"
        ).fetchone() != (0,):
            time.sleep(0.05)
    result = db.run("SELECT count(*) FROM customers", timeout=5)
    assert result.ok and result.rows == [(4,)], result
    db.close()


# ---- DuckDB: no paths --------------------------------------------------------------------------

PATH_QUERIES = [
    "SELECT * FROM pragma_database_list",
    "SELECT path FROM duckdb_databases()",
    "SELECT * FROM duckdb_databases",
    "SELECT * FROM duckdb_extensions()",
    "SELECT current_setting('home_directory')",
    "SELECT current_setting('temp_directory')",
    "SELECT * FROM duckdb_settings() WHERE value LIKE '%/%'",
    "SELECT * FROM duckdb_temporary_files()",
]


@pytest.mark.parametrize("sql", PATH_QUERIES)
def test_duckdb_discloses_no_paths(shops: dict[str, str], sql: str) -> None:
    db = open_database(shops["duck"])
    result = db.run(sql, timeout=5)
    shown = repr((result.error, result.columns, result.rows))
    assert result.error, result
    for secret in (str(Path(shops["duck"]).parent), str(Path.home())):
        assert secret not in shown


def test_duckdb_errors_name_no_folders(shops: dict[str, str]) -> None:
    """Past the name checks, an engine error that names the home folder has it replaced."""
    db = open_database(shops["duck"])
    result = db.target.run("SELECT * FROM duckdb_extensions()", 5, 100)
    assert result.error and str(Path.home()) not in result.error, result


# ---- one cap on query workers ------------------------------------------------------------------


def test_query_workers_are_capped_across_the_server(
    shops: dict[str, str], decoys: Path, scripted_engine: Any
) -> None:
    """Six clients at once, `max_queries=2`: never more than two SQLite workers busy, every query
    answered; with the cap held and a short wait, the next request gets 503 (QueriesBusy)."""
    scripted_engine([])
    # A request waits up to the query timeout for a worker: 10 s lets the six finish on a busy
    # machine too (each takes well under a second on a quiet one).
    pipeline = Pipeline.load("scripted", config=AskConfig(n=1, merge=False, timeout=10))
    registry = Registry.open([f"lite={shops['lite']}"])
    service = Service(pipeline, registry, model_name="scripted", load_seconds=0.0, max_queries=2)
    pool = worker.default_pool()
    slow = (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < {}) SELECT count(*) FROM r"
    )
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(pool.busy)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        docs: dict[int, dict[str, Any]] = {}

        def client(i: int) -> None:  # each its own SQL: none is answered from the executor's cache
            docs[i] = service.run_sql("lite", slow.format(300000 + i))

        clients = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        stop.set()
        watcher.join()
        assert {i: d["rows"] for i, d in docs.items()} == {i: [[300000 + i]] for i in range(6)}
        assert max(seen) == 2, max(seen)  # the cap was reached, never passed

        pool.limit(1, busy_wait=0.2)  # one slot, held below by a query of our own
        held = pool.submit(time.sleep, 2, timeout=10)
        try:
            with pytest.raises(QueriesBusy) as refused:
                service.run_sql("lite", "SELECT 1")
            assert refused.value.retry_after >= 1
        finally:
            held.result()
        assert service.run_sql("lite", "SELECT 1")["rows"] == [[1]]
        client = TestClient(create_app(service))
        held = pool.submit(time.sleep, 2, timeout=10)
        try:
            response = client.post("/v1/sql", json={"database": "lite", "sql": "SELECT 2"})
            assert response.status_code == 503 and "Retry-After" in response.headers, response.text
        finally:
            held.result()
    finally:
        stop.set()
        service.close()
    assert pool.max_busy is None  # closing the service lifts its cap


def test_ask_and_sql_documents_carry_the_same_result_fields(pets_db: Path, scripted_engine: Any) -> None:
    """/v1/ask (and so `ask --json`, the same `render.answer_dict`) has every result field of /v1/sql."""
    said = "<think>\nCount them.\n</think>\n<answer>\nSELECT count(*) FROM pets\n</answer>"
    scripted_engine([said])
    pipeline = Pipeline.load("scripted", config=AskConfig(n=1, merge=False))
    service = Service(pipeline, Registry.open([f"pets={pets_db}"]), model_name="scripted", load_seconds=0.0)
    try:
        client = TestClient(create_app(service))
        asked = client.post("/v1/ask", json={"database": "pets", "question": "How many pets?"}).json()
        ran = client.post("/v1/sql", json={"database": "pets", "sql": "SELECT count(*) FROM pets"}).json()
    finally:
        service.close()
    result_fields = set(ran) - {"database", "sql"}
    assert {"row_count", "timed_out", "truncated", "seconds"} <= result_fields <= set(asked), sorted(
        result_fields - set(asked)
    )
    assert (asked["rows"], asked["row_count"], asked["timed_out"]) == (ran["rows"], 1, False)


def test_a_query_round_under_a_cap_of_one_finishes(shops: dict[str, str]) -> None:
    """The executor runs two queries at once; under a cap of one it collects its own running query
    before it starts the next, instead of waiting for a worker it holds (no deadlock)."""
    pool = worker.default_pool()
    pool.limit(1, busy_wait=5)
    try:
        db = open_database(shops["lite"])
        results = db.run_many([f"SELECT {i}, count(*) FROM customers" for i in range(3)], timeout=5)
        assert [r.rows if r else None for r in results] == [[(i, 4)] for i in range(3)]
        assert pool.busy == 0
    finally:
        pool.limit(None)


def test_serve_takes_data_files_and_folders(tmp_path: Path, isolated_cache: Path) -> None:
    """`serve --db` takes what `ask --db` takes: a folder of data files becomes one database."""
    folder = tmp_path / "sales"
    folder.mkdir()
    (folder / "customers.csv").write_text("id,name,city\n1,Ada Lovelace,London\n2,Grace Hopper,New York\n")
    registry = Registry.open([f"crm={folder}", str(folder / "customers.csv")])
    assert registry.names() == ["crm", "customers"]
    for name in registry.names():
        db = registry.get(name).database
        assert db.run("SELECT name FROM customers WHERE city = 'London'", timeout=5).rows == [
            ("Ada Lovelace",)
        ]
