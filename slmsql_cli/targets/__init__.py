"""The databases slmsql runs SQL on: SQLite files, DuckDB files and PostgreSQL servers.

Every query slmsql runs goes through a target (`run_many` here, called by `Database.run` and
`Database.run_many`): the model's candidates, the gold and predicted SQL of `eval`, and the SQL a
client sends to `serve`. A target gives the pipeline, through the same dataclasses: its catalog
as a `schema.Schema` (serialized exactly as for SQLite, so the model reads the prompt form it
was trained on; a live engine's column types are its own names, lower-cased), sample values,
the strings for the value index, and execution of SQLite SQL (transpiled for DuckDB and
PostgreSQL by `dialect.for_target`) as `result.ExecResult`s, under the engine's own read-only
guarantees. `database.open_database` picks the target from the `--db` text.
"""

from __future__ import annotations

import datetime
import decimal
import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from slmsql_cli.cache import short_hash, versioned_dir
from slmsql_cli.schema import SAMPLE_VALUE_CHARS, Schema
from slmsql_cli.targets.dialect import TranspileError, for_target
from slmsql_cli.targets.result import MAX_RESULT_BYTES, ExecResult, fetch_capped
from slmsql_cli.values import ValueIndex, is_indexable, write_index

SAMPLE_SCAN_ROWS = 1000  # sample values come from a column's first 1000 non-null rows
INDEX_SCAN_ROWS = 200_000  # index strings come from a column's first 200,000 non-null rows
FETCH_BATCH = 256


class Target(Protocol):
    """What a database does for the pipeline: its catalog, its values, and running queries."""

    dialect: str  # sqlglot's name: "sqlite" | "duckdb" | "postgres"
    name: str  # how the user recognises it: the file name, or host:port/dbname (no password)
    cache_key: str  # identifies the database (not its version) for the cache
    views: set[str]  # the schema's views (filled by schema()): their values are their tables'
    version: str  # what changes with its data, when the engine can tell cheaply ("" for a server)

    def schema(self) -> Schema: ...
    def samples(self, schema: Schema) -> dict[tuple[str, str], list[Any]]:
        """The first two distinct non-empty values of every column, for the prompt."""
        ...

    def value_index(self, schema: Schema, folder: Path | None) -> ValueIndex: ...
    def run(self, sql: str, timeout: float, max_rows: int) -> ExecResult:
        """One statement in the target's own dialect, already checked (`dialect.for_target`)."""
        ...

    def run_many(self, sqls: Sequence[str], timeout: float, max_rows: int) -> list[ExecResult]: ...
    def prepare(self) -> None:
        """Get ready for the first query (SQLite: start a query worker) without waiting."""
        ...

    def close(self) -> None: ...


class LiveTarget(ABC):
    """What the DuckDB and PostgreSQL targets share: queries run one after another (PostgreSQL's
    on the target's one connection, DuckDB's in a query worker); sample values and the value
    index are read from each column's `first_rows` (`samples`, `value_index`). SQLite has its
    own: OmniSQL's sample query and an index written in the query worker's way
    (`sqlite_catalog`)."""

    name: str
    views: set[str]

    @abstractmethod
    def first_rows(self, table: str, column: str, limit: int) -> list[Any]:
        """A column's first `limit` non-null values in the engine's order; [] when that fails."""

    @abstractmethod
    def run(self, sql: str, timeout: float, max_rows: int) -> ExecResult: ...

    def run_many(self, sqls: Sequence[str], timeout: float, max_rows: int) -> list[ExecResult]:
        return [self.run(sql, timeout, max_rows) for sql in sqls]

    def samples(self, schema: Schema) -> dict[tuple[str, str], list[Any]]:
        return samples(self, schema)

    def value_index(self, schema: Schema, folder: Path | None) -> ValueIndex:
        return value_index(self, schema, folder)

    def prepare(self) -> None:  # noqa: B027 (deliberately empty: the connection is open already)
        """Nothing to start: the connection opened with the target."""


def plain(value: Any) -> Any:
    """An engine value as the SQLite-typed Python value the rest of slmsql knows (and can hash,
    vote on, show and write as JSON): Decimal → int or float, dates and times → ISO text (SQLite's
    form), bool → 0/1, UUID → text, lists and structs → JSON text."""
    if value is None or isinstance(value, (int, float, str, bytes)) and not isinstance(value, bool):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return float(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (memoryview, bytearray)):
        return bytes(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def batches(fetchmany: Callable[[int], list[tuple]]) -> Iterator[tuple]:
    """A cursor's rows, read FETCH_BATCH at a time (only as many as the caller takes)."""
    while batch := fetchmany(FETCH_BATCH):
        yield from batch


def fetch(rows: Iterable[Sequence[Any]], max_rows: int) -> tuple[list[tuple], bool]:
    """`plain` rows up to `max_rows` rows or MAX_RESULT_BYTES bytes, as the SQLite executor cuts
    them; `rows` is read lazily, so an engine that streams never holds more than that."""
    return fetch_capped((tuple(plain(v) for v in row) for row in rows), max_rows, MAX_RESULT_BYTES)


def samples(target: LiveTarget, schema: Schema, limit: int = 2) -> dict[tuple[str, str], list[Any]]:
    """The first `limit` distinct non-empty values of every column (OmniSQL's rule, as
    `sqlite_catalog.sample_values` applies it to SQLite), read from each column's first rows only."""
    out: dict[tuple[str, str], list[Any]] = {}
    for table in schema.tables:
        for column in table.columns:
            values = [plain(v) for v in target.first_rows(table.name, column.name, SAMPLE_SCAN_ROWS)]
            found = list(dict.fromkeys(v for v in values if v != ""))[:limit]
            found = [v[:SAMPLE_VALUE_CHARS] if isinstance(v, (str, bytes)) else v for v in found]
            if found:
                out[(table.name, column.name)] = found
    return out


def index_values(target: LiveTarget, table: str, column: str, limit: int) -> Iterator[str]:
    """A column's first `limit` distinct indexable strings, from its first INDEX_SCAN_ROWS rows."""
    kept: dict[str, None] = {}
    for value in target.first_rows(table, column, INDEX_SCAN_ROWS):
        if len(kept) >= limit:
            break
        if is_indexable(value):
            kept[value] = None
    return iter(kept)


def cache_folder(target: Target, schema: Schema) -> Path | None:
    """The target's cache folder (samples, value index): keyed by its schema's fingerprint (and
    a DuckDB file's size and mtime); None without a writable cache."""
    fingerprint = json.dumps(schema.to_dict(), sort_keys=True)
    name = f"{schema.db_id[:40].replace('/', '_')}-{short_hash(target.cache_key)}"
    return versioned_dir("db", name, f"{target.version}|{fingerprint}")


def value_index(target: LiveTarget, schema: Schema, folder: Path | None) -> ValueIndex:
    """The value index of the target's text columns (tables only, as for SQLite), built once."""
    text_columns = {(t.name, c.name) for t in schema.tables for c in t.columns if is_text_type(c.type)}
    tables = [t for t in schema.tables if t.name not in target.views]
    columns = [(t.name, c.name) for t in tables for c in t.columns]

    def values(table: str, column: str, limit: int) -> Iterable[str]:
        if (table, column) not in text_columns:
            return ()
        return index_values(target, table, column, limit)

    key = chr(0).join(t.name for t in tables)
    return ValueIndex.in_folder(folder, key, target.name, lambda path: write_index(path, columns, values))


def is_text_type(type_name: str) -> bool:
    """Whether an engine's column type holds text (char, varchar, character varying, text, string)."""
    t = type_name.lower()
    return "char" in t or "text" in t or "string" in t


def run_many(
    target: Target, sqls: Iterable[str | None], *, timeout: float, max_rows: int, schema: Schema | None = None
) -> list[ExecResult | None]:
    """Each SQLite SQL's result on the target (None stays None); identical SQL runs once. A
    statement that cannot be transpiled gets an error result (no vote) saying why."""
    sqls = list(sqls)
    done: dict[str, ExecResult] = {}
    ready: dict[str, str] = {}  # SQLite SQL -> the target's SQL
    for sql in dict.fromkeys(s for s in sqls if s is not None):
        start = time.perf_counter()
        try:
            ready[sql] = for_target(sql, target.dialect, schema)
        except TranspileError as exc:
            done[sql] = ExecResult(error=str(exc), seconds=time.perf_counter() - start)
    for sql, result in zip(ready, target.run_many(list(ready.values()), timeout, max_rows)):
        done[sql] = result
    return [None if sql is None else done[sql] for sql in sqls]
