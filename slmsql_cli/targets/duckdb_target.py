"""A DuckDB file as a `--db` target, opened so that DuckDB itself refuses to change anything.

DuckDB's own guarantees (duckdb.org/docs/operations_manual/securing_duckdb): the file is opened
`read_only`; `enable_external_access=false` stops every file, network and ATTACH access (read_csv,
COPY, INSTALL, httpfs); extensions are neither auto-installed nor auto-loaded; and
`lock_configuration` makes those settings final, so a query cannot turn them back on. Its progress
bar is off: it would draw on slmsql's terminal. A temporary
table would live only in this connection's memory, and `dialect.for_target` admits queries only.
The deadline is DuckDB's `interrupt()`, called by a timer thread.

Nothing is written anywhere: `temp_directory` is empty, so DuckDB never spills to disk (by
default a read-only file still spills beside itself, into `shop.duckdb.tmp/`, with no size cap).
A query that needs more than the memory limit is an error instead. Spilling into slmsql's cache
with a size cap was the other choice; measured on a GROUP BY that spills (docs/PERFORMANCE.md),
both stay within the memory limit, and no spilling also leaves nothing on disk after a crash and
nothing for two processes to share.

What a query may call is an allow-list, checked on DuckDB's own parse of the statement
(`json_serialize_sql`, before it runs): the scalar and aggregate functions, window functions and
macros built into DuckDB (read from `duckdb_functions()`), less the deny-list of
`dialect.denied_function` (settings, variables, logs); in FROM only the table functions that make
rows from values (TABLE_FUNCTIONS: no catalog, files, or SQL given as text, such as `query`,
`query_table` and `json_execute_serialized_sql`); of DuckDB's own views only the
information_schema and sqlite_master; no SHOW, DESCRIBE or SUMMARIZE. So a query learns nothing
about where files are (`duckdb_databases`, `pragma_database_list`, `current_setting`), and an
error message has the file's folder and the home folder replaced (`dialect.hide_folders`).

A query runs in a query worker process (`worker.WorkerPool`, as SQLite's), on a read-only
connection of its own, because DuckDB's memory limit bounds only its buffers: a value it makes
while planning or running, such as `repeat('x', 600000000)` (a constant, folded twice while
planning), is allocated outside them and took serve 1.15 GB more in-process. The worker's data
segment is capped (`RLIMIT_DATA`, QUERY_MEMORY_MB: DuckDB's address-space reservations make
`RLIMIT_AS` unusable), so such an allocation fails inside the worker as DuckDB's "Out of Memory",
one error line, and the worker lives on; DuckDB's own limit is QUERY_MEMORY_MB less the worker's
own needs, so that a big GROUP BY fails in DuckDB's words first. A worker is killed at the
deadline if DuckDB's `interrupt()` did not stop the query, and by `serve` on SIGTERM. The parent
keeps a connection of its own for the schema and the sample values (fixed queries of its own).

Inside the worker, a query runs inside `dialect.capped`: DuckDB keeps a running sum of the bytes of
the values (a streaming window) and leaves out every value past the result cap, so none reaches
Python. A query holds one of `serve --max-queries`' slots while it runs (`worker.WorkerPool.held`).
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmsql_cli.cache import file_version
from slmsql_cli.errors import UserError, first_line, require
from slmsql_cli.schema import Column, ForeignKey, Schema, Table, order_foreign_keys, quote
from slmsql_cli.targets import LiveTarget, batches, fetch, result, worker
from slmsql_cli.targets.dialect import CappedRows, capped, denied_function, hide_folders, too_large
from slmsql_cli.targets.executor import KILL_GRACE, collect
from slmsql_cli.targets.result import ExecResult

DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file
_CONFIG = {
    "enable_external_access": False,
    "memory_limit": "256MB",  # the parent's connection: schema and sample values only
    "temp_directory": "",  # never spill to disk (see above)
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
}
# MB a DuckDB query worker may allocate (its data segment): a query that needs more gets an
# error line. The default keeps `serve`'s whole process tree within its model + 512 MB with a
# 600 MB value asked for (docs/PERFORMANCE.md); raise it for big GROUP BYs on a big file.
QUERY_MEMORY_ENV = "SLMSQL_DUCKDB_MEMORY_MB"
DEFAULT_QUERY_MEMORY_MB = 320
_WORKER_OWN_MB = 128  # the worker's interpreter, DuckDB's catalog and the rows it sends back
QUERY_THREADS = 4  # DuckDB threads a query worker runs at most (each stack counts in the cap)
# Per connection, so set after connecting, then locked with the rest. DuckDB's Python package
# turns its progress bar on wherever it guesses a session is interactive (`python -c`, a REPL,
# Jupyter); slmsql owns the terminal, and a query's progress is not the user's business.
_SETTINGS = ("SET enable_progress_bar = false", "SET lock_configuration = true")
SAMPLE_SECONDS = 5.0  # one sample or index query
_HERE = "database_name = current_database() AND schema_name = current_schema()"
# Table functions a query may call in FROM: rows made from values.
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "json_each", "json_tree"})
# Names DuckDB's binder reads itself (not in duckdb_functions()); they call nothing.
_BINDER_FORMS = frozenset({"unnest", "unlist", "grouping", "grouping_id", "columns", "*columns"})
# Kinds of table reference a query may hold (no SHOW_REF: SHOW, DESCRIBE, SUMMARIZE).
_REFERENCES = frozenset({"BASE_TABLE", "JOIN", "SUBQUERY", "TABLE_FUNCTION", "EMPTY", "EXPRESSION_LIST"})
# DuckDB's own views a query may read: the information_schema, and SQLite's names for the catalog.
_VIEWS_ALLOWED = "schema_name = 'information_schema' OR view_name LIKE 'sqlite%'"
# Type ids of fixed size: not counted against the result cap (the row cap bounds them).
_FIXED_TYPES = frozenset(
    """boolean tinyint smallint integer bigint hugeint utinyint usmallint uinteger ubigint uhugeint
    float double decimal date time time_ns timestamp timestamp_s timestamp_ms timestamp_ns interval
    uuid null""".split()
) | {"time with time zone", "timestamp with time zone"}


def is_duckdb_file(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(12)[8:12] == DUCKDB_MAGIC
    except OSError:
        return False


def _driver() -> Any:
    return require("duckdb", "targets", "reading DuckDB files")


def query_memory_mb() -> int:
    """The query workers' memory cap in MB: $SLMSQL_DUCKDB_MEMORY_MB, else the default."""
    raw = os.environ.get(QUERY_MEMORY_ENV, "").strip()
    if not raw:
        return DEFAULT_QUERY_MEMORY_MB
    if not raw.isdigit() or int(raw) < _WORKER_OWN_MB + 64:
        raise UserError(
            f"{QUERY_MEMORY_ENV}={raw!r} is not a number of MB of at least {_WORKER_OWN_MB + 64}",
            f"unset it for the default ({DEFAULT_QUERY_MEMORY_MB}), or give e.g. {QUERY_MEMORY_ENV}=2048",
        )
    return int(raw)


def _connect(path: Path, memory_limit: str, threads: int | None = None) -> Any:
    """A read-only connection with the module doc's settings, locked."""
    duckdb = _driver()
    config: dict[str, Any] = {**_CONFIG, "memory_limit": memory_limit}
    if threads:
        config["threads"] = threads
    try:
        conn = duckdb.connect(str(path), read_only=True, config=config)
    except duckdb.Error as exc:
        hint = (
            "another program has it open for writing; close it, or ask about a copy of the file"
            if "lock" in str(exc).lower()
            else "is it a complete DuckDB database of a version this duckdb package reads?"
        )
        raise UserError(f"cannot open DuckDB database {path}: {first_line(exc)}", hint) from None
    for setting in _SETTINGS:
        conn.execute(setting)
    return conn


_pools: dict[int, worker.WorkerPool] = {}
_pools_lock = threading.Lock()


def query_pool() -> worker.WorkerPool:
    """The process-wide pool of DuckDB query workers (one per memory cap), started on first use."""
    cap = query_memory_mb()
    with _pools_lock:
        if cap not in _pools:
            _pools[cap] = worker.WorkerPool(
                cap * 1024**2, preload=("slmsql_cli.targets.duckdb_target",), limit=worker.DATA
            )
        return _pools[cap]


@atexit.register
def _close_pools() -> None:
    for pool in _pools.values():
        pool.close()


class DuckDBTarget(LiveTarget):
    dialect = "duckdb"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.cache_key = str(path)
        self.version = file_version(path)
        self.views: set[str] = set()
        query_memory_mb()  # a bad $SLMSQL_DUCKDB_MEMORY_MB stops the command now, not at a query
        self._conn = _connect(path, str(_CONFIG["memory_limit"]))
        self._lock = threading.Lock()  # one sample query at a time on the parent's connection

    def schema(self) -> Schema:
        """Tables (in creation order), then views, of the current schema, from DuckDB's catalog."""
        conn = self._conn
        names = [
            r[0]
            for r in conn.execute(
                f"SELECT table_name FROM duckdb_tables() WHERE {_HERE} AND NOT temporary AND NOT internal ORDER BY table_oid"
            ).fetchall()
        ]
        views = [
            r[0]
            for r in conn.execute(
                f"SELECT view_name FROM duckdb_views() WHERE {_HERE} AND NOT temporary AND NOT internal ORDER BY view_oid"
            ).fetchall()
        ]
        self.views = set(views)
        names += views
        tables = {name: Table(name, []) for name in names}
        for table, column, data_type in conn.execute(
            f"SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE {_HERE} ORDER BY table_oid, column_index"
        ).fetchall():
            if table in tables:
                tables[table].columns.append(Column(column, data_type.lower()))
        for table, kind, columns, ref_table, ref_columns in conn.execute(
            "SELECT table_name, constraint_type, constraint_column_names, referenced_table, referenced_column_names "
            f"FROM duckdb_constraints() WHERE {_HERE} AND constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY') "
            "ORDER BY table_oid, constraint_index"
        ).fetchall():
            if table not in tables:
                continue
            if kind == "PRIMARY KEY":
                tables[table].primary_key = list(columns)
            else:
                tables[table].foreign_keys += [
                    ForeignKey(c, ref_table, r) for c, r in zip(columns, ref_columns)
                ]
        for t in tables.values():
            order_foreign_keys(t)
        return Schema(db_id=self.path.stem, tables=list(tables.values()))

    def first_rows(self, table: str, column: str, limit: int) -> list[Any]:
        """The first `limit` non-null values of a column in DuckDB's (insertion) order; [] when
        that fails or takes longer than SAMPLE_SECONDS (a view can hide an expensive query)."""
        c = quote(column)
        with self._lock, _deadline(self._conn, SAMPLE_SECONDS):
            try:
                rows = self._conn.execute(
                    f"SELECT {c} FROM {quote(table)} WHERE {c} IS NOT NULL LIMIT {int(limit)}"
                ).fetchall()
            except _driver().Error:
                return []
        return [r[0] for r in rows]

    def run(self, sql: str, timeout: float, max_rows: int) -> ExecResult:
        """One checked statement in a DuckDB query worker (`run_query`), which is killed if it
        outlives `timeout` by KILL_GRACE or when serve stops."""
        start = time.perf_counter()
        pool = query_pool()
        stops: list[Callable[[], None]] = []
        stopped = threading.Event()

        def stop() -> None:  # serve's SIGTERM (worker.WorkerPool.cancel_all)
            stopped.set()
            for kill in stops:
                kill()

        # held: counted against serve --max-queries, and stopped when serve stops
        with worker.default_pool().held(stop):
            pending = pool.submit(
                run_query,
                str(self.path),
                self.version,
                sql,
                timeout,
                max_rows,
                result.MAX_RESULT_BYTES,
                timeout=timeout + KILL_GRACE,
            )
            stops.append(pending.kill)
            if stopped.is_set():
                pending.kill()
            answer = collect(pending, start, pool)
        if stopped.is_set() and not answer.ok:
            return ExecResult(error="interrupted: the server is stopping", seconds=answer.seconds)
        return answer

    def prepare(self) -> None:
        """Start a query worker in the background, so that the first query need not wait for one."""
        query_pool().start()

    def close(self) -> None:
        self._conn.close()


# --- in the query worker -----------------------------------------------------------------------

# The worker's connection, by file and version: one at a time, since each DuckDB instance takes
# threads and memory of its own out of the worker's cap; switching files reopens (milliseconds).
_open: dict[tuple[str, Any], _Queries] = {}
_MAX_OPEN = 1


def run_query(
    path: str, version: Any, sql: str, timeout: float, max_rows: int, max_bytes: int = result.MAX_RESULT_BYTES
) -> ExecResult:
    """In a query worker: `sql` on the worker's own read-only connection to `path`, opened on
    the first query of that version of the file (a changed file gets a fresh connection)."""
    key = (path, version)
    queries = _open.get(key)
    if queries is None:
        while len(_open) >= _MAX_OPEN:
            _open.pop(next(iter(_open))).conn.close()
        memory = max(64, query_memory_mb() - _WORKER_OWN_MB)
        threads = min(os.cpu_count() or 1, QUERY_THREADS)
        queries = _open[key] = _Queries(Path(path), _connect(Path(path), f"{memory}MB", threads))
    try:
        answer = queries.run(sql, timeout, max_rows, max_bytes)
        if answer.error and answer.error.startswith("Out of Memory"):
            # DuckDB keeps what it allocated until the connection closes: start the next query
            # on a fresh one, within the cap again
            _open.pop(key).conn.close()
        return answer
    except RuntimeError as exc:  # a thread's stack is memory too: the worker's cap was reached
        if "thread" not in str(exc):
            raise
        raise MemoryError(str(exc)) from None


class _Queries:
    """One read-only connection in a worker, and what a query on it may call."""

    def __init__(self, path: Path, conn: Any) -> None:
        self.path, self.conn = path, conn
        self._callable: _Callable | None = None  # read from the catalog on the first query

    def run(self, sql: str, timeout: float, max_rows: int, max_bytes: int) -> ExecResult:
        """One checked statement, interrupted at `timeout` seconds: refused unless the allow-list
        admits it, its rows cut by DuckDB at `max_bytes` (the result cap)."""
        duckdb = _driver()
        start = time.perf_counter()
        with _deadline(self.conn, timeout) as expired:
            try:
                why = self._refusal(sql)
                if why:
                    return ExecResult(error=why, seconds=time.perf_counter() - start)
                bound = self.conn.sql(sql)  # bound, not run: a checked SELECT
                columns, kinds = list(bound.columns), [t.id for t in bound.types]
                sizes = [_size(kind, f"c{i}") for i, kind in enumerate(kinds, 1)]
                query = capped(sql, sizes, max_bytes, running=True)
                cursor = self.conn.execute(query or sql)
                kept = CappedRows(batches(cursor.fetchmany), marked=query is not None)
                rows, truncated = fetch(kept, max_rows)  # DuckDB streams
                if kept.cut and not rows:
                    return ExecResult(error=too_large(max_bytes), seconds=time.perf_counter() - start)
                return ExecResult(
                    columns, rows, truncated=truncated or kept.cut, seconds=time.perf_counter() - start
                )
            except duckdb.Error as exc:
                if expired.is_set():
                    return ExecResult(timed_out=True, seconds=time.perf_counter() - start)
                return ExecResult(error=self._error_text(exc), seconds=time.perf_counter() - start)

    def _refusal(self, sql: str) -> str | None:
        """Why `sql` must not run (see the module doc), from DuckDB's own parse of it; or None."""
        if len(self.conn.extract_statements(sql)) != 1:  # the driver would run them all
            return "only one SQL statement is allowed"
        parsed = self.conn.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
        try:
            tree = json.loads(parsed[0])
        except RecursionError:
            return "the statement is nested too deeply to be checked"
        if tree.get("error"):
            if tree.get("error_type") == "parser":
                return hide_folders(first_line(tree.get("error_message", "")), {str(self.path.parent): "."})
            return "only a query (SELECT) may run on duckdb: the database is read-only"
        if self._callable is None:
            self._callable = _Callable.read(self.conn)
        return self._callable.refusal(tree["statements"])

    def _error_text(self, exc: Exception) -> str:
        """DuckDB's error, one line, without the file's folder or the home folder (an error can
        name one, e.g. the extension folder); running out of memory says which cap it met."""
        text = hide_folders(first_line(exc), {str(self.path.parent): "."})
        if text.startswith("Out of Memory"):
            text += (
                f" (the query worker's {query_memory_mb()} MB cap, ${QUERY_MEMORY_ENV}; "
                "slmsql lets DuckDB write no temporary files)"
            )
        return text


@contextmanager
def _deadline(conn: Any, seconds: float) -> Iterator[threading.Event]:
    """Interrupt the connection's query after `seconds`; the event says whether it did."""
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        conn.interrupt()

    timer = threading.Timer(seconds, stop)
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()


def _size(kind: str, column: str) -> str | None:
    """An SQL expression of the bytes a value of DuckDB type `kind` (a type id) takes in Python
    (`dialect.capped`): text and blobs their length; lists, structs, maps and the rest four bytes
    per character of their text (Python's lists and dicts take more than their text); None for
    fixed sizes."""
    if kind in _FIXED_TYPES:
        return None
    if kind == "varchar":
        return f"strlen({column})"
    if kind == "blob":
        return f"octet_length({column})"
    return f"4 * strlen(CAST({column} AS VARCHAR))"


@dataclass(frozen=True)
class _Callable:
    """What a query on this connection may call and read (the module doc's allow-list)."""

    functions: frozenset[str]  # built-in scalar, aggregate and window functions and macros, allowed
    views: frozenset[str]  # DuckDB's own views that are not allowed (duckdb_databases, pg_settings…)
    own: frozenset[str]  # the database's own tables and views: a name they share is theirs

    @classmethod
    def read(cls, conn: Any) -> _Callable:
        def names(sql: str) -> frozenset[str]:
            return frozenset(str(r[0]).lower() for r in conn.execute(sql).fetchall())

        functions = names(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE internal "
            "AND function_type IN ('scalar', 'aggregate', 'window', 'macro')"
        )
        return cls(
            functions=frozenset(f for f in functions if not denied_function(f, "duckdb")) | _BINDER_FORMS,
            views=names(f"SELECT view_name FROM duckdb_views() WHERE internal AND NOT ({_VIEWS_ALLOWED})"),
            own=names("SELECT table_name FROM duckdb_tables() WHERE NOT internal")
            | names("SELECT view_name FROM duckdb_views() WHERE NOT internal"),
        )

    def refusal(self, statements: Any) -> str | None:
        """Why a statement parsed by `json_serialize_sql` must not run, or None. The parse tree is
        walked whole: expressions (`function_name`), table references (those with a `sample`
        field, unlike query nodes), subqueries, CTEs and set operations alike."""
        stack: list[tuple[Any, bool]] = [(statements, False)]
        while stack:
            node, in_from = stack.pop()
            if isinstance(node, list):
                stack.extend((item, False) for item in node)
                continue
            if not isinstance(node, dict):
                continue
            kind = node.get("type")
            if "function_name" in node:
                name = str(node["function_name"]).lower()
                if in_from and name not in TABLE_FUNCTIONS:
                    listed = ", ".join(sorted(TABLE_FUNCTIONS))
                    return f"the table function {name}() is not allowed on duckdb (only {listed})"
                if not in_from and name not in self.functions:
                    return f"the function {name}() is not allowed on duckdb (it is not one of its built-in functions a read-only query may call)"
            elif (
                "sample" in node and "class" not in node and not str(kind).endswith("_NODE")
            ):  # a table reference
                if kind not in _REFERENCES:
                    return f"{str(kind).replace('_REF', '')} is not allowed on duckdb: only queries of tables may run"
                table = str(node.get("table_name", "")).lower()
                if kind == "BASE_TABLE" and table in self.views and table not in self.own:
                    return f"{node['table_name']} is not allowed on duckdb (it shows the catalog's settings or where files are)"
            for key, value in node.items():
                stack.append((value, key == "function" and kind == "TABLE_FUNCTION"))
        return None
