"""Run model-written SQL against the user's database: read-only, one statement, time-limited.

A model's SQL is untrusted input. Read-only mode alone is not enough: `mode=ro` covers only the
main database, so `ATTACH '/tmp/x.db' AS x; CREATE TABLE x.t(...)` would still create files, and
`PRAGMA query_only=OFF` undoes a query_only guard. The layers here follow SQLite's own advice for
untrusted SQL (sqlite.org/security.html, "Defense Against the Dark Arts"; sqlite.org/c3ref/set_authorizer.html):

1. sqlglot allow-list: exactly one statement, a SELECT / set operation / VALUES (a WITH is part
   of its SELECT). This only gives a fast, clear error; SQL that sqlglot cannot parse goes on to
   SQLite, which is guarded anyway.
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

import re
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmsql_cli import sqlglot_log
from slmsql_cli.errors import UserError
from slmsql_cli.targets import worker
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
MAX_ROWS = 100_000  # rows a query returns by default; the result says when it was cut
MAX_RESULT_BYTES = 64_000_000  # a result is cut (truncated) past this many bytes of values
KILL_GRACE = 0.5  # seconds past the timeout before a busy worker is killed
PARALLEL = 2  # queries of one execute_all running at once (each in its own worker)
_OUT_OF_MEMORY = frozenset({"MemoryError", "out of memory"})


@dataclass
class ExecResult:
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    error: str | None = None  # None when the query ran (a timeout sets timed_out, not error)
    timed_out: bool = False
    truncated: bool = False  # cut at max_rows rows or MAX_RESULT_BYTES bytes; `rows` holds what fits
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out

    def key(self) -> frozenset:
        """The vote key: the set of rows (CSC-SQL). Row order and duplicates don't count; column order does."""
        return frozenset(self.rows)


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
                    results[j] = _collect(pending, started, pool)
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
                results[j] = _collect(pending, started, pool)
            running.append((i, submitted, start))
        while running:
            j, pending, started = running.popleft()
            results[j] = _collect(pending, started, pool)
    except BaseException:  # Ctrl-C, or a worker that could not start: stop what still runs
        for _, pending, _ in running:
            pending.cancel()
        raise
    return [r for r in results if r is not None]


def _collect(pending: worker.Pending, start: float, pool: worker.WorkerPool) -> ExecResult:
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


def check_sql(sql: str) -> str | None:
    """Why `sql` is refused before it reaches SQLite, or None. An allow-list, never a deny-list."""
    if not isinstance(sql, str) or not sql.strip():
        return "empty SQL"
    import sqlglot
    from sqlglot import exp

    try:
        with sqlglot_log.quiet():
            trees = [
                t
                for t in sqlglot.parse(sql, read="sqlite")
                if t is not None and not isinstance(t, exp.Semicolon)
            ]
    except Exception:  # sqlglot's parser is not SQLite's: let SQLite judge (and the authorizer guard)
        return None
    if len(trees) > 1:
        return f"only one SQL statement is allowed, found {len(trees)}"
    if not trees:
        return "empty SQL"
    tree = trees[0]
    if isinstance(tree, (exp.Select, exp.SetOperation, exp.Values)):
        return None
    if isinstance(tree, exp.Subquery) and isinstance(
        tree.unnest(), (exp.Select, exp.SetOperation, exp.Values)
    ):
        return None
    return (
        f"only read-only queries (SELECT, WITH … SELECT, VALUES) may run (got {_statement_name(sql, tree)})"
    )


_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$)|\()*", re.DOTALL)
_WORD = re.compile(r"[A-Za-z_]+")
_OBJECT_KINDS = ("TABLE", "VIEW", "INDEX", "TRIGGER")


def _statement_name(sql: str, tree: Any) -> str:
    """The statement's own keyword(s): SAVEPOINT, REINDEX, CREATE TEMP TABLE, INSERT (for WITH … INSERT).

    sqlglot's node type is no name for it: it parses `SAVEPOINT x` as an alias and `REINDEX` as
    a column.
    """
    words = _WORD.findall(sql[_LEADING_NOISE.match(sql).end() :][:200])  # type: ignore[union-attr]
    if not words:
        return tree.key.upper()
    first = words[0].upper()
    if first == "WITH":
        return tree.key.upper() if tree.key in ("insert", "update", "delete") else "WITH"
    if first in ("CREATE", "DROP", "ALTER"):
        upper = [w.upper() for w in words[:5]]
        end = next((i for i, w in enumerate(upper) if w in _OBJECT_KINDS), 0)
        return " ".join(upper[: end + 1]) if end else " ".join(upper[:2])
    return first


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


def fetch_capped(cursor: Iterable[tuple], max_rows: int, max_bytes: int) -> tuple[list[tuple], bool]:
    """Rows until `max_rows` rows or `max_bytes` bytes (text and blob lengths, 8 per other value);
    one row at a time, so a cut result never holds more than one row past the cap. (The live
    targets cut their results with it too.)"""
    rows: list[tuple] = []
    total = 0
    for row in cursor:
        total += _row_bytes(row)
        if len(rows) == max_rows or total > max_bytes:
            return rows, True
        rows.append(row)
    return rows, False


def _row_bytes(row: tuple) -> int:
    return sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in row)


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
        if len(result.rows) <= _CACHE_MAX_ROWS and sum(map(_row_bytes, result.rows)) <= _CACHE_MAX_BYTES:
            with _cache_lock:
                _CACHE[key] = result
                while len(_CACHE) > _CACHE_SIZE:
                    _CACHE.popitem(last=False)
    return [None if key[3] is None else found[key] for key in keys]


def clear_cache() -> None:
    with _cache_lock:
        _CACHE.clear()
