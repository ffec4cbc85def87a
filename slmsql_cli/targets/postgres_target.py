"""A PostgreSQL database (`--db postgresql://user@host:port/dbname`) as a `--db` target.

The password comes the libpq way (PGPASSWORD, ~/.pgpass, a service file), never from slmsql's
own options; the URL's other libpq parameters are kept. Read-only is enforced by the server,
not only by slmsql's checks (`dialect.for_target`):

- the session starts with `default_transaction_read_only=on`, and every query runs in its own
  `BEGIN TRANSACTION READ ONLY` … `ROLLBACK`, so INSERT/UPDATE/DELETE/DDL, `nextval` and
  `SELECT … INTO` fail in the server even if a check missed them;
- `statement_timeout` is the `--timeout`, set per transaction (`SET LOCAL`);
- one statement: the query is prepared first (the server refuses text holding several
  statements in a prepared statement, and describes the columns it returns), then runs through
  the extended protocol (psycopg's `stream`; psycopg's plain `execute` without parameters would
  use the simple protocol, which runs them all);
- bounded memory: the query runs inside `dialect.capped`, so the server leaves out (sends NULLs
  for) a row whose values are over a bound: no such value reaches the client. Rows stream in
  FETCH_BATCH at a time, each under a batch's share of the result cap (250 KB); a query with a
  bigger row that fits the whole cap (64 MB) runs again, one row at a time: the client holds at
  most one batch or one row past the cap, and a first row over the cap alone is an error;
- the deny-list of `dialect.denied_names`, for any role: file, large-object, dblink,
  configuration and dynamic-SQL functions, and the views that read configuration files or show
  paths (`pg_hba_file_rules`, `pg_ident_file_mappings`, `pg_file_settings`, `pg_settings`,
  `pg_config`, `current_setting('data_directory')`); an error message has the server's data
  folder (when the role may read it) and the home folder taken out;
- read-only by rule, not by list: a read-only transaction does not stop a function that changes
  state outside the table heap (`brin_summarize_new_values` rewrites index pages for the table's
  owner; a superuser's `pg_create_physical_replication_slot` keeps a slot, and WAL, after the
  ROLLBACK; `pg_stat_reset*`). So every function the statement names is looked up in `pg_proc`,
  and one that PostgreSQL marks volatile (`provolatile = 'v'`) is refused, unless it is on the
  short ALLOWED_VOLATILE list (random values, the clock, `pg_sleep`, which `statement_timeout`
  ends like any slow query);
- a connection the server closed (a restart, `pg_terminate_backend`) is opened again, once;
- each query holds one of `serve --max-queries`' slots while it waits for and runs on the
  connection (`worker.WorkerPool.held`), as a SQLite query holds a worker.

For the strongest guarantee, connect as a role that can only read (see the README).
"""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from slmsql_cli import sqlglot_log
from slmsql_cli.errors import UserError, first_line, require
from slmsql_cli.schema import Column, ForeignKey, Schema, Table, order_foreign_keys, quote
from slmsql_cli.targets import FETCH_BATCH, LiveTarget, fetch, result, worker
from slmsql_cli.targets.dialect import CappedRows, capped, denied_names, hide_folders, too_large
from slmsql_cli.targets.result import ExecResult

SCHEMES = ("postgresql", "postgres")
CONNECT_TIMEOUT = 5  # seconds: an unreachable server is an error this soon
CATALOG_TIMEOUT_MS = 5000  # catalog and sample queries
T = TypeVar("T")


def is_url(spec: str) -> bool:
    return "://" in spec


def check_url(spec: str) -> None:
    """A UserError unless `spec` starts with postgresql:// or postgres://."""
    scheme = spec.split("://", 1)[0]
    if scheme.lower() in SCHEMES:
        return
    close = difflib.get_close_matches(scheme.lower(), SCHEMES, n=1, cutoff=0.6)
    hint = (
        f"did you mean {close[0]}://…?" if close else "slmsql connects to postgresql://user@host:port/dbname"
    )
    raise UserError(f"--db {scheme}://… is not a database URL slmsql knows (scheme {scheme!r})", hint)


def _driver() -> Any:
    return require("psycopg", "targets", "connecting to PostgreSQL")


class PostgresTarget(LiveTarget):
    dialect = "postgres"

    def __init__(self, url: str) -> None:
        check_url(url)
        psycopg = _driver()
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise UserError(
                f"--db is not a valid PostgreSQL URL: {first_line(exc)}",
                "write it as postgresql://user@host:port/dbname",
            ) from None
        self.host = str(params.get("host") or "localhost")
        self.port = str(params.get("port") or "5432")
        self.dbname = str(params.get("dbname") or params.get("user") or "")
        self.user = str(params.get("user") or "")
        self.name = f"{self.host}:{self.port}/{self.dbname}"
        self.cache_key = f"postgresql://{self.user}@{self.name}"
        self.version = ""  # the schema fingerprint alone keys the cache (reading data versions is not cheap)
        self.views: set[str] = set()
        options = f"{params.get('options') or ''} -c default_transaction_read_only=on".strip()
        self._conninfo = make_conninfo(
            url, connect_timeout=CONNECT_TIMEOUT, options=options, application_name="slmsql"
        )
        self._conn = self._connect()
        self._lock = threading.Lock()
        self._folders = self._server_folders()

    def _server_folders(self) -> dict[str, str]:
        """The server's data folder and configuration files (when the role may read those
        settings: a superuser may), to take out of error messages; {} otherwise."""
        try:
            rows = self._catalog(
                "SELECT name, setting FROM pg_catalog.pg_settings WHERE name IN "
                "('data_directory', 'config_file', 'hba_file', 'ident_file') AND setting LIKE '/%'"
            )
        except _driver().Error:
            return {}
        return {setting: f"<{name}>" for name, setting in rows}

    def _connect(self) -> Any:
        psycopg = _driver()
        try:
            return psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            raise self._connect_error(exc) from None

    def _live(self, work: Callable[[], T]) -> T:
        """`work()` on an open connection. A long-lived target (chat, serve) outlives its session
        when the server ends it (a restart, `pg_terminate_backend`): a closed connection is opened
        again first, and once more when it closes during `work` (which then runs again: it only
        reads). A server that is gone is a UserError saying so."""
        if self._conn.closed:
            self._conn = self._connect()
        try:
            return work()
        except _driver().OperationalError:
            if not self._conn.closed:
                raise
        self._conn = self._connect()
        return work()

    def _connect_error(self, exc: Exception) -> UserError:
        text = str(exc)
        where = f"PostgreSQL at {self.host}:{self.port}"
        if "does not exist" in text and "database" in text:
            return UserError(
                f"database {self.dbname!r} does not exist on {where}",
                "check the name at the end of the URL (psql -l lists the databases)",
            )
        if any(s in text for s in ("password", "authentication failed", "role", "no pg_hba.conf entry")):
            return UserError(
                f"{where} refused user {self.user!r}: {_reason(text)}",
                "check the user name; give the password in PGPASSWORD or ~/.pgpass, never on the command line",
            )
        if "resolve host" in text or "translate host name" in text:
            return UserError(f"cannot reach {where}: {_reason(text)}", "check the host name in the URL")
        return UserError(
            f"cannot reach {where}: {_reason(text)}",
            f"is the server running and accepting TCP connections there? (gave up after at most {CONNECT_TIMEOUT} s)",
        )

    def _query(self, sql: str, timeout_ms: int, max_rows: int) -> tuple[list[str], list[tuple], bool]:
        """Run one statement in a read-only transaction with a statement timeout; always rolled back.
        Rows are `plain` values, cut as the SQLite executor cuts them, and by the server past the
        result cap (`dialect.capped`). A statement that calls a volatile or denied function or
        reads a denied view is refused (`_Refused`) before it runs, and so is a first row over
        the cap."""
        with self._transaction(timeout_ms) as cursor:
            why = _refusal(cursor, sql)
            if why:
                raise _Refused(why)
            columns, types = self._describe(sql)
            max_bytes = result.MAX_RESULT_BYTES
            sizes = [_size(oid, f"c{i}") for i, oid in enumerate(types, 1)]
            # FETCH_BATCH rows at a time, each under a batch's share of the cap; a query with a
            # bigger row that fits the whole cap runs again, one row at a time
            share = max_bytes // FETCH_BATCH
            rows, truncated, over = self._fetch(cursor, sql, sizes, share, FETCH_BATCH, max_rows)
            if over is not None and over <= max_bytes:
                rows, truncated, over = self._fetch(cursor, sql, sizes, max_bytes, 1, max_rows)
            if over is not None and not rows:
                raise _Refused(too_large(max_bytes))
            return columns, rows, truncated or over is not None

    def _fetch(
        self, cursor: Any, sql: str, sizes: list[str | None], row_bytes: int, batch: int, max_rows: int
    ) -> tuple[list[tuple], bool, int | None]:
        """(rows, truncated, over): `sql`'s rows read `batch` at a time, the server leaving out
        (`dialect.capped`) the first row whose values take more than `row_bytes` (`over`: its
        bytes), so that the client holds at most `batch * row_bytes` bytes of the rows it reads
        next. stream(): the extended protocol (exactly one statement) and rows as they come, so
        a long result is cut at the caps instead of first filling the client's memory."""
        query = capped(sql, sizes, row_bytes, running=False, fence=" OFFSET 0")
        stream = cursor.stream(query or sql, size=batch)
        try:
            kept = CappedRows(stream, marked=query is not None)
            rows, truncated = fetch(kept, max_rows)
        finally:
            stream.close()  # an unfinished result is cancelled
        return rows, truncated, kept.over

    def _describe(self, sql: str) -> tuple[list[str], list[int]]:
        """The names and type OIDs of the columns `sql` returns: prepared and described by the
        server, not run (the server refuses several statements in one prepared statement)."""
        pgconn = self._conn.pgconn
        self._check(pgconn.prepare(b"", sql.encode("utf-8")))
        described = self._check(pgconn.describe_prepared(b""))
        names = [(described.fname(i) or b"").decode("utf-8") for i in range(described.nfields)]
        return names, [described.ftype(i) for i in range(described.nfields)]

    def _check(self, answer: Any) -> Any:
        """A libpq result that succeeded, or the psycopg error it holds, raised."""
        psycopg = _driver()
        if answer.status != psycopg.pq.ExecStatus.COMMAND_OK:
            raise psycopg.errors.error_from_result(answer, encoding=self._conn.info.encoding)
        return answer

    def _catalog(self, sql: str) -> list[tuple]:
        return self._live(lambda: self._catalog_once(sql))

    def _catalog_once(self, sql: str) -> list[tuple]:
        """slmsql's own catalog query, its rows as psycopg returns them (arrays stay lists)."""
        with self._transaction(CATALOG_TIMEOUT_MS) as cursor:
            return list(cursor.execute(sql).fetchall())

    @contextmanager
    def _transaction(self, timeout_ms: int) -> Iterator[Any]:
        conn = self._conn
        conn.execute("BEGIN TRANSACTION READ ONLY")
        try:
            conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
            yield conn.cursor()
        finally:
            try:
                conn.execute("ROLLBACK")
            except _driver().Error:  # a connection broken mid-query (Ctrl-C, server gone): not reused
                conn.close()

    def schema(self) -> Schema:
        """Tables, then views, of the first schema on the search path, from pg_catalog.

        Types are `format_type`'s names (`integer`, `text`, `character varying(40)`, `numeric(10,2)`).
        """
        psycopg = _driver()
        try:
            with self._lock:
                return self._schema()
        except psycopg.Error as exc:
            raise UserError(
                f"cannot read the catalog of {self.name}: {_error_text(exc)}",
                "the user needs to read pg_catalog and the schema's tables (see README: a read-only role)",
            ) from None

    def _schema(self) -> Schema:
        relations = self._catalog(
            "SELECT c.oid, c.relname, c.relkind IN ('v', 'm') FROM pg_catalog.pg_class c "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'f', 'v', 'm') "
            "AND NOT c.relispartition ORDER BY c.relkind IN ('v', 'm'), c.oid"
        )
        attributes = self._catalog(
            "SELECT a.attrelid, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) "
            "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attrelid, a.attnum"
        )
        constraints = self._catalog(
            "SELECT k.conrelid, k.contype, k.conkey, k.confrelid, k.confkey FROM pg_catalog.pg_constraint k "
            "JOIN pg_catalog.pg_class c ON c.oid = k.conrelid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND k.contype IN ('p', 'f') ORDER BY k.oid"
        )
        tables = {oid: Table(name, []) for oid, name, _ in relations}
        self.views = {name for _, name, is_view in relations if is_view}
        names: dict[tuple[int, int], str] = {}
        rel_names = {oid: name for oid, name, _ in relations}
        for relid, attnum, attname, type_name in attributes:
            names[(relid, attnum)] = attname
            if relid in tables:
                tables[relid].columns.append(Column(attname, type_name))
        for relid, kind, keys, ref_relid, ref_keys in constraints:
            table = tables.get(relid)
            if table is None:
                continue
            columns = [names.get((relid, k), "") for k in keys or []]
            if kind == "p":
                table.primary_key = columns
            elif ref_relid in rel_names:
                refs = [names.get((ref_relid, k), "") for k in ref_keys or []]
                table.foreign_keys += [ForeignKey(c, rel_names[ref_relid], r) for c, r in zip(columns, refs)]
        for t in tables.values():
            order_foreign_keys(t)
        return Schema(db_id=self.dbname, tables=list(tables.values()))

    def first_rows(self, table: str, column: str, limit: int) -> list[Any]:
        """The first `limit` non-null values of a column in the server's scan order."""
        c = quote(column)
        sql = f"SELECT {c} FROM {quote(table)} WHERE {c} IS NOT NULL LIMIT {int(limit)}"
        with self._lock:
            try:
                rows = self._catalog(sql)
            except _driver().Error:
                return []
        return [r[0] for r in rows]

    def run(self, sql: str, timeout: float, max_rows: int) -> ExecResult:
        """One checked statement in a read-only transaction, cancelled by the server at `timeout`."""
        psycopg = _driver()
        start = time.perf_counter()
        timeout_ms = max(1, round(timeout * 1000))
        # held: counted against serve --max-queries, and cancelled when serve stops (cancel_all)
        with worker.default_pool().held(lambda: self._conn.cancel_safe(timeout=5)), self._lock:
            try:
                columns, rows, truncated = self._live(lambda: self._query(sql, timeout_ms, max_rows))
            except psycopg.errors.QueryCanceled:
                return ExecResult(timed_out=True, seconds=time.perf_counter() - start)
            except psycopg.Error as exc:
                error = hide_folders(_error_text(exc), self._folders)
                return ExecResult(error=error, seconds=time.perf_counter() - start)
            except (_Refused, UserError) as exc:  # UserError: the server went away for good
                return ExecResult(error=str(exc), seconds=time.perf_counter() - start)
        return ExecResult(columns, rows, truncated=truncated, seconds=time.perf_counter() - start)

    def close(self) -> None:
        self._conn.close()


class _Refused(Exception):
    """A statement that must not run (a volatile function); the message says why."""


# Volatile functions that change nothing outside the query: random values and the clock, and
# pg_sleep, which statement_timeout ends like any slow query.
ALLOWED_VOLATILE = frozenset(
    {
        "random",
        "random_normal",
        "gen_random_uuid",
        "uuid_generate_v4",
        "clock_timestamp",
        "timeofday",
        "pg_sleep",
    }
)
_VOLATILE = (
    "SELECT DISTINCT proname FROM pg_catalog.pg_proc WHERE proname = ANY(%s) AND provolatile = 'v' ORDER BY 1"
)


def _refusal(cursor: Any, sql: str) -> str | None:
    """Why `sql` must not run: it calls a function or reads a view of `dialect.denied_names`
    (files, configuration, paths: for any role); it calls a function that PostgreSQL marks
    volatile (any overload of that name), which may change state that a read-only transaction
    does not protect (index pages, replication slots, statistics), unless ALLOWED_VOLATILE names
    it; or it cannot be parsed, so its calls cannot be known. The volatile names are looked up in
    the server's own pg_proc, so a function added by a later PostgreSQL or an extension is judged
    by the same rule."""
    trees = _parse(sql)
    if trees is None:
        return "the statement cannot be checked (sqlglot cannot parse it as PostgreSQL)"
    for tree in trees:
        why = denied_names(tree, "postgres")
        if why:
            return why
    names = called_functions(trees) - ALLOWED_VOLATILE
    if not names:
        return None
    volatile = [row[0] for row in cursor.execute(_VOLATILE, [sorted(names)]).fetchall()]
    if volatile:
        listed = ", ".join(f"{name}()" for name in volatile)
        return (
            f"{listed} may change the database (PostgreSQL marks it volatile): only read-only queries may run"
        )
    return None


def _parse(sql: str) -> list[Any] | None:
    """A PostgreSQL statement's sqlglot trees; None when it does not parse."""
    import sqlglot
    from sqlglot.errors import SqlglotError

    try:
        with sqlglot_log.quiet():
            return [t for t in sqlglot.parse(sql, read="postgres") if t is not None]
    except (SqlglotError, RecursionError):
        return None


def called_functions(trees: list[Any]) -> set[str]:
    """The names of the functions parsed statements call, as written and lower-cased (and as
    PostgreSQL spells the ones sqlglot knows by another name)."""
    from sqlglot import exp

    names: set[str] = set()
    for tree in trees:
        for func in tree.find_all(exp.Func):
            if isinstance(func, exp.Anonymous):
                names.update({func.name, func.name.lower()})
                continue
            names.add(func.sql_name().lower())
            head = func.sql(dialect="postgres").split("(", 1)[0].strip().lower()
            if head.isidentifier():
                names.add(head)
    return names


# Type OIDs of fixed size: not counted against the result cap (the row cap bounds them).
_FIXED_TYPES = frozenset(
    {16, 20, 21, 23, 26, 28, 700, 701, 790, 1082, 1083, 1114, 1184, 1186, 1266, 2950, 3220}
)
# Text and bytes, counted as they are: text, varchar, bpchar, name, "char", bytea.
_TEXT_TYPES = frozenset({25, 1043, 1042, 19, 18, 17})


def _size(oid: int, column: str) -> str | None:
    """An SQL expression of the bytes a value of type `oid` takes in the client (`dialect.capped`):
    text and bytes their length; other types four bytes per character of their text (json and
    arrays become dicts and lists, which take more than their text); None for fixed sizes."""
    if oid in _FIXED_TYPES:
        return None
    if oid in _TEXT_TYPES:
        return f"octet_length({column})::bigint"
    return f"4 * octet_length({column}::text)::bigint"


def _error_text(exc: Any) -> str:
    diag = getattr(exc, "diag", None)
    return (diag.message_primary if diag is not None else None) or first_line(exc)


def _reason(text: str) -> str:
    """libpq's reason without its `connection to server at … failed:` preamble."""
    line = text.strip().splitlines()[0] if text.strip() else text
    return line.rsplit("failed: ", 1)[-1].removeprefix("FATAL:").strip()
