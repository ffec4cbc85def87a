"""Run model-written SQL against the user's database: read-only, one statement, time-limited.

A model's SQL is untrusted input. Read-only mode alone is not enough: `mode=ro` covers only the
main database, so `ATTACH '/tmp/x.db' AS x; CREATE TABLE x.t(...)` would still create files, and
`PRAGMA query_only=OFF` undoes a query_only guard. The layers here follow SQLite's own advice for
untrusted SQL (sqlite.org/security.html, "Defense Against the Dark Arts"; sqlite.org/c3ref/set_authorizer.html):

1. sqlglot allow-list (`sqlcheck.check_sql`): exactly one statement, a SELECT / set operation /
   VALUES (a WITH is part of its SELECT). This only gives a fast, clear error; SQL that sqlglot
   cannot parse goes on to SQLite, which is guarded anyway.
2. A read-only connection from `sqlite_open.open_readonly` (`mode=ro`, `immutable=1`, or a
   recovered private copy: nothing is created beside the database), `PRAGMA query_only=ON`,
   attach limit 0, extension loading off.
3. An authorizer allow-list: SELECT, READ, FUNCTION (minus file/extension functions), RECURSIVE,
   and the schema-row access and `PRAGMA data_version` that opening an FTS5 table asks for.
   SQLite asks it while preparing, so a write is refused before anything runs; the refusal
   names the first action it denied.
4. A progress-handler deadline interrupts runaway queries (an endless recursive CTE, a huge join).
5. `Connection.execute` runs one statement, never `executescript`; the fetch stops at
   `max_rows` rows or `MAX_RESULT_BYTES` bytes, whichever comes first (`truncated` says so).
6. Layers 2-5 run in a worker process (`worker.py`): one long C-level call (a quadratic
   `instr()`, a gigabyte `printf`) never reaches the progress handler, so the parent kills the
   worker `KILL_GRACE` seconds after the timeout (the result is `timed_out`) or on Ctrl-C (the
   KeyboardInterrupt goes on). The worker has an address-space cap; hitting it is an `error`.
   SQLite's own per-value length limit (`SQLITE_LIMIT_LENGTH`) stays.

`execute` never raises for bad SQL: every failure comes back as `ExecResult.error`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from pathlib import Path

from slmsql_cli.errors import UserError
from slmsql_cli.targets import worker
from slmsql_cli.targets.result import MAX_RESULT_BYTES, MAX_ROWS, ExecResult, fetch_capped, row_bytes
from slmsql_cli.targets.sqlcheck import check_sql
from slmsql_cli.targets.sqlite_open import open_readonly

# Functions that reach outside the database; none are in stock SQLite, but a build or an
# extension could add them.
DENIED_FUNCTIONS = frozenset(
    {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "zipfile", "lsdir"}
)
_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
# Asked while an FTS5 table is opened (its constructor re-reads the schema row and checks
# `PRAGMA data_version`): allowed, since mode=ro, query_only and SQLite's own refusal to modify
# sqlite_master without `PRAGMA writable_schema` (a pragma that stays denied) still hold.
_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"})
_READ_ONLY_PRAGMAS = frozenset({"data_version"})
# Authorizer action codes by name. Not every SQLITE_* constant: error codes and limits share
# these numbers (SQLITE_NOTICE is 27 like SQLITE_REINDEX), so the names are listed.
_ACTION_NAMES = {
    getattr(sqlite3, f"SQLITE_{name}"): name.replace("_", " ")
    for name in (
        "CREATE_INDEX CREATE_TABLE CREATE_TEMP_INDEX CREATE_TEMP_TABLE CREATE_TEMP_TRIGGER "
        "CREATE_TEMP_VIEW CREATE_TRIGGER CREATE_VIEW DELETE DROP_INDEX DROP_TABLE DROP_TEMP_INDEX "
        "DROP_TEMP_TABLE DROP_TEMP_TRIGGER DROP_TEMP_VIEW DROP_TRIGGER DROP_VIEW INSERT PRAGMA READ "
        "SELECT TRANSACTION UPDATE ATTACH DETACH ALTER_TABLE REINDEX ANALYZE CREATE_VTABLE "
        "DROP_VTABLE FUNCTION SAVEPOINT RECURSIVE"
    ).split()
}
_MAX_VALUE_BYTES = 100_000_000  # no string or blob above 100 MB (zeroblob(1e10) and friends)
_PROGRESS_OPS = 1000  # check the clock every 1000 virtual-machine instructions
KILL_GRACE = 0.5  # seconds past the timeout before a busy worker is killed
PARALLEL = 2  # queries of one execute_all running at once (each in its own worker)
_OUT_OF_MEMORY = frozenset({"MemoryError", "out of memory"})


def execute(db_path: str | Path, sql: str, *, timeout: float = 10.0, max_rows: int = MAX_ROWS) -> ExecResult:
    """Run one read-only statement and fetch at most `max_rows` rows within `timeout` seconds.

    The checks run here; the query runs in a worker process (`worker.py`) that is killed when
    it is still busy `KILL_GRACE` seconds after `timeout`, or when Ctrl-C interrupts the wait.
    """
    return execute_all(db_path, [sql], timeout=timeout, max_rows=max_rows)[0]


def execute_all(
    db_path: str | Path, sqls: Sequence[str], *, timeout: float = 10.0, max_rows: int = MAX_ROWS
) -> list[ExecResult]:
    """`execute` for each SQL, in order, with up to `PARALLEL` queries running at once in workers
    of their own: the next statement is checked (sqlglot, in this process) while the previous one
    runs, which hides most of a worker's round trip. Each query keeps its own deadline."""
    path = Path(db_path)
    if not path.is_file():
        raise UserError(
            f"database file not found: {path}", "check the path; slmsql opens existing SQLite files only"
        )
    pool = worker.default_pool()
    results: list[ExecResult | None] = [None] * len(sqls)
    running: deque[tuple[int, worker.Pending, float]] = deque()
    try:
        for i, sql in enumerate(sqls):
            start = time.perf_counter()
            rejection = check_sql(sql)
            if rejection:
                results[i] = ExecResult(error=rejection, seconds=time.perf_counter() - start)
                continue
            while True:
                if len(running) >= PARALLEL:
                    j, pending, started = running.popleft()
                    results[j] = collect(pending, started, pool)
                # over the pool's cap (serve --max-queries), collect a query of our own rather
                # than wait for others while holding workers
                submitted = pool.try_submit(
                    run_query,
                    path,
                    sql,
                    timeout,
                    max_rows,
                    MAX_RESULT_BYTES,
                    timeout=timeout + KILL_GRACE,
                    wait=not running,
                )
                if submitted is not None:
                    break
                j, pending, started = running.popleft()
                results[j] = collect(pending, started, pool)
            running.append((i, submitted, start))
        while running:
            j, pending, started = running.popleft()
            results[j] = collect(pending, started, pool)
    except BaseException:  # Ctrl-C, or a worker that could not start: stop what still runs
        for _, pending, _ in running:
            pending.cancel()
        raise
    return [r for r in results if r is not None]


def collect(pending: worker.Pending, start: float, pool: worker.WorkerPool) -> ExecResult:
    """A worker's answer as a result: past the deadline, out of memory or dead, an error line."""
    try:
        result: ExecResult = pending.result()
    except worker.WorkerTimeout:
        return ExecResult(timed_out=True, seconds=time.perf_counter() - start)
    except worker.WorkerOutOfMemory as exc:
        return ExecResult(error=f"out of memory: {exc}", seconds=time.perf_counter() - start)
    except worker.WorkerDied as exc:
        return ExecResult(
            error=f"the query stopped the worker process ({exc}); it may need more memory than "
            f"the {pool.memory_cap // 1024**2} MB cap",
            seconds=time.perf_counter() - start,
        )
    if result.error in _OUT_OF_MEMORY:  # SQLite's or Python's allocation failed under the cap
        result.error = f"out of memory: the worker's {pool.memory_cap // 1024**2} MB memory cap was reached"
    return result


def start_worker() -> None:
    """Start a query worker in the background, so that the first query need not wait for one."""
    worker.default_pool().start()


def run_query(
    path: Path, sql: str, timeout: float, max_rows: int, max_bytes: int = MAX_RESULT_BYTES
) -> ExecResult:
    """The checked query itself, in the worker process: read-only connection, SQLite-level deadline,
    at most `max_rows` rows and about `max_bytes` bytes (`truncated` says when either cut)."""
    start = time.perf_counter()
    try:
        conn, authorizer = _connect(path)
    except sqlite3.Error as exc:
        return ExecResult(error=f"cannot open the database: {exc}", seconds=time.perf_counter() - start)
    deadline = time.monotonic() + timeout
    expired = threading.Event()

    def progress() -> int:
        if time.monotonic() > deadline:
            expired.set()
            return 1
        return 0

    conn.set_progress_handler(progress, _PROGRESS_OPS)
    try:
        cursor = conn.execute(sql)
        if cursor.description is None:  # a statement that is not a query (e.g. a no-op DROP … IF EXISTS)
            return ExecResult(
                error="not a query: only SELECT statements that return rows are allowed",
                seconds=time.perf_counter() - start,
            )
        columns = [d[0] for d in cursor.description]
        rows, truncated = fetch_capped(cursor, max_rows, max_bytes)
        return ExecResult(columns, rows, truncated=truncated, seconds=time.perf_counter() - start)
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError, MemoryError) as exc:
        if expired.is_set():
            return ExecResult(timed_out=True, seconds=time.perf_counter() - start)
        if isinstance(exc, sqlite3.OperationalError) and str(exc) == "interrupted":
            # Ctrl-C landed inside the progress handler: sqlite3 swallows the KeyboardInterrupt
            # and aborts the query, so raise it again rather than report a failed query.
            raise KeyboardInterrupt from None
        return ExecResult(error=_describe(exc, authorizer.denied), seconds=time.perf_counter() - start)
    finally:
        conn.close()


def _connect(path: Path) -> tuple[sqlite3.Connection, _Authorizer]:
    conn = open_readonly(path)
    conn.execute("PRAGMA query_only=ON")
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _MAX_VALUE_BYTES)
    authorizer = _Authorizer()
    conn.set_authorizer(authorizer)
    return conn, authorizer


class _Authorizer:
    """The authorizer allow-list; remembers the first action it denied, to name it in the error."""

    denied: str | None = None

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None
    ) -> int:
        if _allowed(action, arg1, arg2):
            return sqlite3.SQLITE_OK
        if self.denied is None:
            self.denied = _action_name(action, arg1, arg2)
        return sqlite3.SQLITE_DENY


def _allowed(action: int, arg1: str | None, arg2: str | None) -> bool:
    if action == sqlite3.SQLITE_FUNCTION:
        return (arg2 or "").lower() not in DENIED_FUNCTIONS
    if action == sqlite3.SQLITE_UPDATE:
        return (arg1 or "").lower() in _SCHEMA_TABLES
    if action == sqlite3.SQLITE_PRAGMA:
        return (arg1 or "").lower() in _READ_ONLY_PRAGMAS and arg2 is None
    return action in _ALLOWED_ACTIONS


def _action_name(action: int, arg1: str | None, arg2: str | None) -> str:
    if action == sqlite3.SQLITE_TRANSACTION:
        return arg1 or "TRANSACTION"  # BEGIN, COMMIT or ROLLBACK
    if action == sqlite3.SQLITE_SAVEPOINT:
        return {"BEGIN": "SAVEPOINT", "RELEASE": "RELEASE", "ROLLBACK": "ROLLBACK TO"}.get(
            arg1 or "", "SAVEPOINT"
        )
    if action == sqlite3.SQLITE_PRAGMA:
        return f"PRAGMA {arg1}"
    if action == sqlite3.SQLITE_FUNCTION:
        return f"{arg2}()"
    return _ACTION_NAMES.get(action, f"action {action}")


def _describe(exc: BaseException, denied: str | None = None) -> str:
    message = str(exc) or type(exc).__name__
    if "not authorized" in message:
        return (
            f"{message}: only reading the database is allowed (got {denied})"
            if denied
            else (f"{message}: only reading the database is allowed")
        )
    return message


# --- many candidates ---------------------------------------------------------------------------

_CACHE: OrderedDict[tuple, ExecResult] = OrderedDict()
_CACHE_SIZE = 128
_CACHE_MAX_ROWS = 10_000  # big results are not kept: memory matters more than a rerun
_CACHE_MAX_BYTES = 2_000_000
_cache_lock = threading.Lock()


def execute_many(
    db_path: str | Path, sqls: Iterable[str | None], *, timeout: float = 10.0, max_rows: int = MAX_ROWS
) -> list[ExecResult | None]:
    """Execute each SQL in order (None stays None), remembered per (database file, its mtime and
    size, sql, limits): identical SQL runs once, and the SQL not yet cached runs with
    `execute_all`'s overlap. A changed file (new mtime or size) misses the cache. The returned
    objects may be shared: don't mutate them."""
    sqls = list(sqls)
    path = Path(db_path).resolve()
    try:
        st = path.stat()
    except OSError:
        return [None if sql is None else execute(path, sql) for sql in sqls]  # the missing-file UserError
    keys = [(str(path), st.st_mtime_ns, st.st_size, sql, timeout, max_rows) for sql in sqls]
    found: dict[tuple, ExecResult] = {}
    with _cache_lock:
        for key in keys:
            hit = _CACHE.get(key)
            if hit is not None and key[3] is not None:
                _CACHE.move_to_end(key)
                found[key] = hit
    missing = list(dict.fromkeys(k for k in keys if k[3] is not None and k not in found))
    ran = execute_all(path, [str(k[3]) for k in missing], timeout=timeout, max_rows=max_rows)
    for key, result in zip(missing, ran):
        found[key] = result
        if len(result.rows) <= _CACHE_MAX_ROWS and sum(map(row_bytes, result.rows)) <= _CACHE_MAX_BYTES:
            with _cache_lock:
                _CACHE[key] = result
                while len(_CACHE) > _CACHE_SIZE:
                    _CACHE.popitem(last=False)
    return [None if key[3] is None else found[key] for key in keys]


def clear_cache() -> None:
    with _cache_lock:
        _CACHE.clear()
