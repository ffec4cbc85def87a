"""A DuckDB file as a `--db` target, opened so that DuckDB itself refuses to change anything.

DuckDB's own guarantees (duckdb.org/docs/operations_manual/securing_duckdb): the file is opened
`read_only`; `enable_external_access=false` stops every file, network and ATTACH access (read_csv,
COPY, INSTALL, httpfs); extensions are neither auto-installed nor auto-loaded; and
`lock_configuration` makes those settings final, so a query cannot turn them back on. A temporary
table would live only in this connection's memory, and `dialect.for_target` admits queries only.
The deadline is DuckDB's `interrupt()`, called by a timer thread.

A query learns nothing about where files are: the catalog functions that show the database
file's path, settings holding folders (`temp_directory`, `allowed_directories`) or the extension
folder under the home folder are refused by name (`dialect.check_target_sql`), as functions and
as tables (`FROM pragma_database_list`), and an error message has those folders replaced.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slmsql_cli.cache import file_version
from slmsql_cli.errors import UserError, first_line, require
from slmsql_cli.schema import Column, ForeignKey, Schema, Table, order_foreign_keys, quote
from slmsql_cli.targets import LiveTarget, batches, fetch
from slmsql_cli.targets.result import ExecResult

DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file
_CONFIG = {
    "enable_external_access": False,
    "memory_limit": "2GB",  # as the SQLite query worker's cap
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "lock_configuration": True,
}
SAMPLE_SECONDS = 5.0  # one sample or index query
_HERE = "database_name = current_database() AND schema_name = current_schema()"


def is_duckdb_file(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(12)[8:12] == DUCKDB_MAGIC
    except OSError:
        return False


def _driver() -> Any:
    return require("duckdb", "targets", "reading DuckDB files")


class DuckDBTarget(LiveTarget):
    dialect = "duckdb"

    def __init__(self, path: Path) -> None:
        duckdb = _driver()
        self.path = path
        self.name = path.name
        self.cache_key = str(path)
        self.version = file_version(path)
        self.views: set[str] = set()
        try:
            self._conn = duckdb.connect(str(path), read_only=True, config=dict(_CONFIG))
        except duckdb.Error as exc:
            hint = (
                "another program has it open for writing; close it, or ask about a copy of the file"
                if "lock" in str(exc).lower()
                else "is it a complete DuckDB database of a version this duckdb package reads?"
            )
            raise UserError(f"cannot open DuckDB database {path}: {first_line(exc)}", hint) from None
        self._lock = threading.Lock()  # one query at a time on the connection

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
        with self._lock, self._deadline(SAMPLE_SECONDS):
            try:
                rows = self._conn.execute(
                    f"SELECT {c} FROM {quote(table)} WHERE {c} IS NOT NULL LIMIT {int(limit)}"
                ).fetchall()
            except _driver().Error:
                return []
        return [r[0] for r in rows]

    def run(self, sql: str, timeout: float, max_rows: int) -> ExecResult:
        """One checked statement on the read-only connection, interrupted at `timeout` seconds."""
        duckdb = _driver()
        start = time.perf_counter()
        with self._lock, self._deadline(timeout) as expired:
            try:
                if len(self._conn.extract_statements(sql)) != 1:  # the driver would run them all
                    return ExecResult(
                        error="only one SQL statement is allowed", seconds=time.perf_counter() - start
                    )
                cursor = self._conn.execute(sql)
                columns = [d[0] for d in cursor.description or []]
                rows, truncated = fetch(batches(cursor.fetchmany), max_rows)  # DuckDB streams
                return ExecResult(columns, rows, truncated=truncated, seconds=time.perf_counter() - start)
            except duckdb.Error as exc:
                if expired.is_set():
                    return ExecResult(timed_out=True, seconds=time.perf_counter() - start)
                return ExecResult(
                    error=self._hide_paths(first_line(exc)), seconds=time.perf_counter() - start
                )

    def _hide_paths(self, text: str) -> str:
        """An error message without the file's folder or the home folder (the catalog functions
        that show them are refused; an error can still name one, e.g. the extension folder)."""
        for folder, shown in ((self.path.parent, "."), (Path.home(), "~")):
            if str(folder) not in ("", "/", "."):
                text = text.replace(str(folder), shown)
        return text

    @contextmanager
    def _deadline(self, seconds: float) -> Iterator[threading.Event]:
        """Interrupt the connection's query after `seconds`; the event says whether it did."""
        expired = threading.Event()

        def stop() -> None:
            expired.set()
            self._conn.interrupt()

        timer = threading.Timer(seconds, stop)
        timer.start()
        try:
            yield expired
        finally:
            timer.cancel()

    def close(self) -> None:
        self._conn.close()
