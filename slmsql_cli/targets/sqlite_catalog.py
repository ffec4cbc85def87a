"""What slmsql reads of a SQLite file for the prompt: its catalog and a few of its values.

The tables (then the views) with their columns, keys and types (`schema_from_sqlite`), the first
two values of every column (`sample_values`, OmniSQL's query), and the strings of the value
index (`write_value_index`). All of it read through `sqlite_open.open_readonly`, as the queries
are; a view can hide an expensive query, so reading one for the prompt has a deadline.

The DuckDB and PostgreSQL targets read the same things from their own catalogs. `SQLiteTarget`
calls this module for the prompt; `sqlite_copy` lists tables and columns with it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slmsql_cli.schema import (
    SAMPLE_VALUE_CHARS,
    Column,
    ForeignKey,
    Schema,
    Table,
    order_foreign_keys,
    quote,
    sqlite_affinity_type,
)
from slmsql_cli.targets.sqlite_open import open_readonly
from slmsql_cli.values import MAX_VALUE_CHARS, is_indexable, write_index

# Shadow tables that FTS3/4/5 and R*Tree virtual tables keep behind the scenes.
_SHADOW_SUFFIXES = (
    "_content",
    "_data",
    "_idx",
    "_docsize",
    "_config",
    "_segments",
    "_segdir",
    "_stat",
    "_node",
    "_parent",
    "_rowid",
)


def list_tables(conn: sqlite3.Connection) -> list[str]:
    """User tables in sqlite_master order, then views; without sqlite_* internals and FTS/R*Tree shadow tables."""
    rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    shadow = {
        f"{name.lower()}{suffix}" for name, sql in rows if is_virtual(sql) for suffix in _SHADOW_SUFFIXES
    }
    tables = [
        name for name, _ in rows if not name.lower().startswith("sqlite_") and name.lower() not in shadow
    ]
    return tables + list_views(conn)


def is_virtual(create_sql: str | None) -> bool:
    """Whether sqlite_master's `sql` creates a virtual table (FTS, R*Tree, ...)."""
    return (create_sql or "").upper().startswith("CREATE VIRTUAL TABLE")


def list_views(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")]


def table_columns(conn: sqlite3.Connection, name: str) -> list[tuple[Any, ...]]:
    """`PRAGMA table_info` rows (cid, name, type, notnull, default, pk), generated columns included.

    `table_xinfo` adds a `hidden` field: 0 for ordinary columns, 2 and 3 for generated ones, 1
    for a virtual table's hidden columns (FTS5's rank), which stay out.
    """
    rows = conn.execute(f"PRAGMA table_xinfo({quote(name)})").fetchall()
    return [tuple(row[:6]) for row in rows if row[6] in (0, 2, 3)]


_VIEW_SECONDS = 1.0  # a view can hide an expensive query: reading it for the prompt gets this long


@contextmanager
def deadline(conn: sqlite3.Connection, seconds: float) -> Iterator[None]:
    """Interrupt `conn`'s queries (sqlite3.OperationalError) once `seconds` have passed.

    A Ctrl-C that lands in the handler also ends the query as "interrupted"; it is raised again.
    """
    end = time.monotonic() + seconds
    conn.set_progress_handler(lambda: int(time.monotonic() > end), 1000)
    try:
        yield
    except sqlite3.OperationalError as exc:
        if str(exc) == "interrupted" and time.monotonic() <= end:
            raise KeyboardInterrupt from None
        raise
    finally:
        conn.set_progress_handler(None, 0)


def table_from_sqlite(conn: sqlite3.Connection, name: str, infer_types: bool = False) -> Table:
    info = table_columns(conn, name)
    columns = [Column(name=row[1], type=sqlite_affinity_type(row[2] or "")) for row in info]
    if infer_types:
        for column, row in zip(columns, info):
            if not row[2]:
                column.type = value_type(conn, name, column.name)
    primary_key = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
    foreign_keys = []
    fk_rows = conn.execute(f"PRAGMA foreign_key_list({quote(name)})").fetchall()
    for _id, seq, ref_table, column, ref_column, *_ in sorted(fk_rows, key=lambda r: (-r[0], r[1])):
        if ref_column is None:  # REFERENCES parent without a column list: the parent's primary key
            parent = conn.execute(f"PRAGMA table_info({quote(ref_table)})").fetchall()
            parent_pk = [r[1] for r in sorted((r for r in parent if r[5]), key=lambda r: r[5])]
            ref_column = parent_pk[seq] if seq < len(parent_pk) else "rowid"
        foreign_keys.append(ForeignKey(column=column, ref_table=ref_table, ref_column=ref_column))
    # PRAGMA lists the newest constraint first (hence -id above); OmniSQL lists FK lines in column order.
    return order_foreign_keys(
        Table(name=name, columns=columns, primary_key=primary_key, foreign_keys=foreign_keys)
    )


def value_type(conn: sqlite3.Connection, view: str, column: str) -> str:
    """The type of a view or virtual-table column without a declared type: that of its first value."""
    c = quote(column)
    try:
        with deadline(conn, _VIEW_SECONDS):
            row = conn.execute(
                f"SELECT typeof({c}) FROM {quote(view)} WHERE {c} IS NOT NULL LIMIT 1"
            ).fetchone()
    except sqlite3.Error:
        row = None
    return {"integer": "integer", "real": "real", "text": "text", "blob": "blob"}.get(
        row[0] if row else "", "text"
    )


def schema_from_sqlite(db_path: str | Path) -> Schema:
    """Introspect a SQLite file (read-only): its tables, then its views. Plain SQLite has no column comments."""
    conn = open_readonly(db_path)
    try:
        # Views and virtual tables (FTS5: always untyped) get their untyped columns' types from values.
        untyped = {v.lower() for v in list_views(conn)} | {
            name.lower()
            for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
            if is_virtual(sql)
        }
        tables = []
        for name in list_tables(conn):
            try:
                tables.append(table_from_sqlite(conn, name, infer_types=name.lower() in untyped))
            except sqlite3.OperationalError:  # a virtual table whose module this SQLite lacks, a broken view
                continue
        return Schema(db_id=Path(db_path).stem, tables=tables)
    finally:
        conn.close()


def sample_values(db_path: str | Path, schema: Schema, limit: int = 2) -> dict[tuple[str, str], list[Any]]:
    """The first `limit` distinct non-empty values of every column, in SQLite's order (OmniSQL's query).

    Columns are read from the database itself (PRAGMA table_info), as OmniSQL does (and generated
    columns too), so a tables.json that spells a column differently still gets values (matched
    case-insensitively).
    """
    values: dict[tuple[str, str], list[Any]] = {}
    conn = open_readonly(db_path)
    try:
        views = {v.lower() for v in list_views(conn)}
        for table in schema.tables:
            try:
                columns = [row[1] for row in table_columns(conn, table.name)]
            except sqlite3.Error:
                continue
            budget = _VIEW_SECONDS if table.name.lower() in views else None
            for col in columns:
                c, t = quote(col), quote(table.name)
                sql = (
                    f"SELECT {c} FROM (SELECT DISTINCT {c} FROM {t} "
                    f"WHERE {c} IS NOT NULL and {c} != '') LIMIT {int(limit)}"
                )
                try:
                    with deadline(conn, budget) if budget else contextlib.nullcontext():
                        rows = conn.execute(sql).fetchall()
                except sqlite3.Error:
                    continue
                found = [v[:SAMPLE_VALUE_CHARS] if isinstance(v, (str, bytes)) else v for (v,) in rows]
                if found:
                    values[(table.name, col)] = found
    finally:
        conn.close()
    return values


# --- the value index's strings ------------------------------------------------------------------


def column_values(conn: sqlite3.Connection, table: str, column: str, limit: int) -> Iterator[str]:
    """The first `limit` distinct short, non-numeric strings of a column, in SQLite's order."""
    t, c = quote(table), quote(column)
    rows = conn.execute(
        f"SELECT DISTINCT {c} FROM {t} WHERE typeof({c}) = 'text' AND length({c}) BETWEEN 1 AND {MAX_VALUE_CHARS}"
    )
    kept = 0
    for (value,) in rows:  # streamed: SQLite hands rows over one at a time, and stops when we do
        if kept >= limit:
            return
        if is_indexable(value):
            kept += 1
            yield value


def write_value_index(db_path: Path, tables: list[str], target: Path) -> None:
    """Write the value index (`values.write_index`) of `tables`' columns, views skipped."""
    source = open_readonly(db_path)
    try:
        views = {v.lower() for v in list_views(source)}
        columns: list[tuple[str, str]] = []
        for table in tables:
            if table.lower() in views:  # a view's values are its tables' values
                continue
            try:
                columns.extend((table, row[1]) for row in table_columns(source, table))
            except sqlite3.Error:
                continue
        write_index(target, columns, lambda t, c, limit: column_values(source, t, c, limit))
    finally:
        source.close()
