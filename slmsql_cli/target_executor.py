"""Run (already transpiled) SQL on DuckDB or PostgreSQL: read-only, one statement, time-limited.

The minimal executor of `eval --engine duckdb|postgres` until the live `--db` targets' executor
(branch `targets`) replaces it; the contract is the SQLite executor's: `ExecResult`, never raises
for bad SQL, rows cut at `max_rows`. Values come back as SQLite's storage classes would give them
(see `sqlite_value`), so results compare and vote as those of SQLite do.

- DuckDB: opened `read_only`, external access and extension auto-loading off, a timer
  interrupts the query at the deadline.
- PostgreSQL: a read-only transaction (`default_transaction_read_only`), `statement_timeout`.
"""

from __future__ import annotations

import datetime
import decimal
import threading
import time
from typing import Any

from slmsql_cli.executor import ExecResult, check_sql
from slmsql_cli.sqlite_copy import Copy
from slmsql_cli.transpile import transpile

DUCKDB_CONFIG = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
}


def sqlite_value(value: Any) -> Any:
    """An engine's value as SQLite would return it: numbers as int/float, booleans as 0/1, dates
    and times as ISO text, binary as bytes. An integral DECIMAL becomes an int (SUM of BIGINT in
    PostgreSQL), any other a float (AVG: SQLite computes in doubles)."""
    if value is None or isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, decimal.Decimal):
        if value == value.to_integral_value() and value.as_tuple().exponent == 0:  # type: ignore[operator]
            return int(value)
        return float(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return str(value)


def execute_duckdb(path: str, sql: str, *, timeout: float, max_rows: int) -> ExecResult:
    import duckdb

    start = time.perf_counter()
    try:
        con = duckdb.connect(path, read_only=True, config=dict(DUCKDB_CONFIG))
    except duckdb.Error as exc:
        return ExecResult(error=f"cannot open the DuckDB database: {exc}", seconds=time.perf_counter() - start)
    expired = threading.Event()

    def interrupt() -> None:
        expired.set()
        con.interrupt()

    timer = threading.Timer(timeout, interrupt)
    timer.start()
    try:
        cursor = con.execute(sql)
        if cursor.description is None:
            return ExecResult(error="not a query", seconds=time.perf_counter() - start)
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchmany(max_rows + 1)
        return _result(columns, rows, max_rows, start)
    except duckdb.Error as exc:
        if expired.is_set():
            return ExecResult(timed_out=True, seconds=time.perf_counter() - start)
        return ExecResult(error=str(exc).strip(), seconds=time.perf_counter() - start)
    finally:
        timer.cancel()
        con.close()


def execute_postgres(url: str, sql: str, *, timeout: float, max_rows: int) -> ExecResult:
    import psycopg

    start = time.perf_counter()
    options = f"-c default_transaction_read_only=on -c statement_timeout={int(timeout * 1000)}"
    try:
        con = psycopg.connect(url, options=options, connect_timeout=5)
    except psycopg.Error as exc:
        return ExecResult(error=f"cannot connect: {exc}", seconds=time.perf_counter() - start)
    try:
        with con.transaction(force_rollback=True):
            cursor = con.execute(sql, prepare=False)
            if cursor.description is None:
                return ExecResult(error="not a query", seconds=time.perf_counter() - start)
            columns = [d.name for d in cursor.description]
            rows = cursor.fetchmany(max_rows + 1)
        return _result(columns, rows, max_rows, start)
    except psycopg.errors.QueryCanceled:
        return ExecResult(timed_out=True, seconds=time.perf_counter() - start)
    except psycopg.Error as exc:
        return ExecResult(error=str(exc).strip().splitlines()[0], seconds=time.perf_counter() - start)
    finally:
        con.close()


def _result(columns: list[str], rows: list[Any], max_rows: int, start: float) -> ExecResult:
    truncated = len(rows) > max_rows
    converted = [tuple(sqlite_value(v) for v in row) for row in rows[:max_rows]]
    return ExecResult(columns, converted, truncated=truncated, seconds=time.perf_counter() - start)


def execute_on(copy: Copy, sql: str, *, timeout: float, max_rows: int) -> ExecResult:
    """SQLite SQL (a model's, or a benchmark's gold) on a copy in DuckDB or PostgreSQL: checked by
    the SQLite executor's allow-list, transpiled, run. SQL that cannot be transpiled comes back as
    an error naming the reason."""
    start = time.perf_counter()
    rejection = check_sql(sql)
    if rejection:
        return ExecResult(error=rejection, seconds=time.perf_counter() - start)
    translated = transpile(sql, copy.dialect, copy.schema)
    if translated.sql is None:
        return ExecResult(error=f"cannot transpile to {copy.dialect}: {translated.reason}", seconds=time.perf_counter() - start)
    run = execute_duckdb if copy.dialect == "duckdb" else execute_postgres
    return run(copy.location, translated.sql, timeout=timeout, max_rows=max_rows)
