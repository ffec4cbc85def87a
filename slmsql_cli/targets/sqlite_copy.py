"""Copy a SQLite file into DuckDB (a cached file) or into a scratch PostgreSQL database (dropped after).

`slmsql eval --engine duckdb|postgres` scores SQL on the benchmark's data loaded into another
engine, so the copy must keep what the gold results depend on: every row, in rowid order (a
`LIMIT` without `ORDER BY` then picks the same rows), and values of the same kind.

SQLite types values, not columns, so each column's type is decided from the storage classes its
values actually have (`typeof`), not from its declared type alone:

| values in the column          | copied as                   | why |
|-------------------------------|-----------------------------|-----|
| integers only                 | integer (BIGINT)            | |
| reals, or reals and integers  | real (DOUBLE)               | SQLite's REAL is 8 bytes |
| text only                     | text                        | dates stay ISO text, as in SQLite |
| blobs only                    | blob (BLOB / BYTEA)         | |
| text mixed with numbers/blobs | text, each value as SQLite's `CAST(v AS TEXT)` | a number would lose its text rows |
| NULL only (or no rows)        | the declared type's affinity | |

Primary keys are declared in PostgreSQL when the data allow it (unique, no NULL), so that a
query grouping by a key may name the table's other columns, as SQLite lets it. Views are copied
as tables holding their rows. Text with NUL characters (which PostgreSQL's text refuses) loses them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from slmsql_cli.cache import atomic_path, db_cache_dir, read_json, write_json_atomic
from slmsql_cli.errors import UserError, require
from slmsql_cli.schema import Column, Schema, Table, quote, sqlite_affinity_type
from slmsql_cli.targets.sqlite_catalog import list_tables, table_columns
from slmsql_cli.targets.sqlite_open import open_readonly

KINDS = ("integer", "real", "text", "blob")  # the neutral column types of a copy's Schema
_DDL_TYPES = {
    "duckdb": {"integer": "BIGINT", "real": "DOUBLE", "text": "VARCHAR", "blob": "BLOB"},
    "postgres": {"integer": "BIGINT", "real": "DOUBLE PRECISION", "text": "TEXT", "blob": "BYTEA"},
}
_BATCH = 10_000
_COPY_VERSION = 1  # bump when the copy rules change: cached DuckDB files of older rules are rebuilt


@dataclass
class CopiedTable:
    table: Table  # neutral column types (KINDS)
    select: str  # the SQLite query that reads the rows, converted as the column types say
    pk_ok: bool  # whether the primary key holds in the data


def column_kind(classes: set[str], declared: str) -> str:
    """The copied type of a column whose values have these SQLite storage classes (`typeof`)."""
    classes = classes - {"null"}
    if not classes:
        affinity = sqlite_affinity_type(declared)
        return affinity if affinity in KINDS else ("real" if affinity == "numeric" else "text")
    if classes == {"integer"}:
        return "integer"
    if classes <= {"integer", "real"}:
        return "real"
    if classes == {"blob"}:
        return "blob"
    return "text"


def plan(conn: sqlite3.Connection, db_id: str) -> list[CopiedTable]:
    """How each table (and view) of the SQLite database is copied."""
    plans = []
    for name in list_tables(conn):
        info = table_columns(conn, name)
        columns, reads = [], []
        for _cid, col, declared, *_ in info:
            c = quote(col)
            classes = {r[0] for r in conn.execute(f"SELECT DISTINCT typeof({c}) FROM {quote(name)}")}
            kind = column_kind(classes, declared or "")
            columns.append(Column(col, kind))
            reads.append(f"CAST({c} AS TEXT)" if kind == "text" and classes - {"text", "null"} else c)
            if kind == "real":
                reads[-1] = f"CAST({c} AS REAL)"
        pk = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
        table = Table(name, columns, primary_key=pk)
        plans.append(
            CopiedTable(table, f"SELECT {', '.join(reads)} FROM {quote(name)}", _pk_holds(conn, name, pk))
        )
    return plans


def _pk_holds(conn: sqlite3.Connection, table: str, pk: list[str]) -> bool:
    if not pk:
        return False
    cols = ", ".join(quote(c) for c in pk)
    nulls = " OR ".join(f"{quote(c)} IS NULL" for c in pk)
    dup = conn.execute(f"SELECT 1 FROM {quote(table)} GROUP BY {cols} HAVING count(*) > 1 LIMIT 1").fetchone()
    null = conn.execute(f"SELECT 1 FROM {quote(table)} WHERE {nulls} LIMIT 1").fetchone()
    return dup is None and null is None


def copy_schema(plans: list[CopiedTable], db_id: str) -> Schema:
    return Schema(db_id=db_id, tables=[p.table for p in plans])


def _create_table(table: Table, dialect: str) -> str:
    types = _DDL_TYPES[dialect]
    cols = ", ".join(f"{quote(c.name)} {types[c.type]}" for c in table.columns)
    return f"CREATE TABLE {quote(table.name)} ({cols})"


def _rows(conn: sqlite3.Connection, select: str) -> Iterator[list[tuple]]:
    cursor = conn.execute(select)
    while batch := cursor.fetchmany(_BATCH):
        yield batch


# --- DuckDB --------------------------------------------------------------------------------------


@dataclass
class Copy:
    """A copy of one SQLite database in another engine."""

    dialect: str  # "duckdb" | "postgres"
    location: str  # the DuckDB file, or the scratch database's libpq URL
    schema: Schema  # the copy's tables and column types (KINDS)


def to_duckdb(sqlite_path: Path) -> Copy:
    """The SQLite file as a DuckDB file in slmsql's cache, built once per version of the file."""
    duckdb = _import("duckdb", "duckdb")
    folder = db_cache_dir(sqlite_path)
    if folder is None:
        raise UserError(
            "--engine duckdb needs a writable cache folder", "set SLMSQL_CACHE_DIR to a writable folder"
        )
    target, meta = folder / f"copy-v{_COPY_VERSION}.duckdb", folder / f"copy-v{_COPY_VERSION}.json"
    cached = read_json(meta)
    if target.exists() and isinstance(cached, dict):
        return Copy("duckdb", str(target), Schema.from_dict(cached))
    src = open_readonly(sqlite_path)
    try:
        plans = plan(src, sqlite_path.stem)
        with atomic_path(target) as tmp:
            tmp.unlink()  # DuckDB refuses to open an empty file as a database
            con = duckdb.connect(str(tmp))
            try:
                for p in plans:
                    con.execute(_create_table(p.table, "duckdb"))
                    for batch in _rows(src, p.select):
                        _duckdb_insert(con, p.table, batch)
                con.execute("CHECKPOINT")
            finally:
                con.close()
            with contextlib.suppress(OSError):
                Path(f"{tmp}.wal").unlink()
    finally:
        src.close()
    schema = copy_schema(plans, sqlite_path.stem)
    write_json_atomic(meta, schema.to_dict())
    return Copy("duckdb", str(target), schema)


def _duckdb_insert(con, table: Table, rows: list[tuple]) -> None:
    """Rows into a DuckDB table as a batch of numpy object columns, which DuckDB scans natively
    (hundreds of times faster than `executemany`, which binds one row at a time; no pyarrow needed)."""
    import numpy as np

    columns = {}
    for i, values in enumerate(zip(*rows)):
        column = np.empty(len(rows), dtype=object)
        column[:] = values
        columns[f"c{i}"] = column
    con.register("slmsql_rows", columns)
    try:
        con.execute(f"INSERT INTO {quote(table.name)} SELECT * FROM slmsql_rows")
    finally:
        con.unregister("slmsql_rows")


# --- PostgreSQL ----------------------------------------------------------------------------------


@contextlib.contextmanager
def to_postgres(sqlite_path: Path, server_url: str) -> Iterator[Copy]:
    """The SQLite file in a new database on the PostgreSQL server at `server_url`; dropped on exit."""
    psycopg = _import("psycopg", "postgres")

    from urllib.parse import urlsplit, urlunsplit

    name = f"slmsql_scratch_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(server_url, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        raise UserError(
            f"cannot connect to the PostgreSQL server {_where(server_url)}: {str(exc).strip().splitlines()[0]}",
            "check --pg-url / SLMSQL_PG_URL (postgresql://user@host:port/dbname; the password from PGPASSWORD or ~/.pgpass)",
        ) from None
    try:
        admin.execute(
            f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        )
        url = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
        try:
            schema = _fill_postgres(psycopg, url, sqlite_path)
            yield Copy("postgres", url, schema)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


def _fill_postgres(psycopg, url: str, sqlite_path: Path) -> Schema:
    src = open_readonly(sqlite_path)
    try:
        plans = plan(src, sqlite_path.stem)
        with psycopg.connect(url) as con:
            for p in plans:
                con.execute(_create_table(p.table, "postgres"))
                names = ", ".join(quote(c.name) for c in p.table.columns)
                blobs = [c.type == "blob" for c in p.table.columns]
                texts = [c.type == "text" for c in p.table.columns]
                with con.cursor().copy(f"COPY {quote(p.table.name)} ({names}) FROM STDIN") as copy:
                    for batch in _rows(src, p.select):
                        for row in batch:
                            copy.write_row([_pg_value(v, b, t) for v, b, t in zip(row, blobs, texts)])
                if p.pk_ok:
                    cols = ", ".join(quote(c) for c in p.table.primary_key)
                    con.execute(f"ALTER TABLE {quote(p.table.name)} ADD PRIMARY KEY ({cols})")
            con.execute("ANALYZE")
    finally:
        src.close()
    return copy_schema(plans, sqlite_path.stem)


def _pg_value(value: object, blob: bool, text: bool) -> object:
    if text and isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "")
    if blob and isinstance(value, str):
        return value.encode("utf-8")
    return value


def _where(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(url)
    except Exception:
        return "(unparsable URL)"
    return f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}"


def _import(module: str, extra: str):
    return require(module, "targets", f"--engine {extra}")
