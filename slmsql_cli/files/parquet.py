"""Parquet → rows, with pyarrow (the `files` extra), streamed batch by batch.

Types come from the file, not from the values: integers and booleans are INTEGER, floats and
decimals REAL, strings TEXT, binary BLOB, dates, times and timestamps ISO text
(`2024-05-01`, `2024-05-01 13:45:00`), dictionary-encoded columns their values' type. Nested
columns: a struct is flattened into `parent.child` columns (a null parent makes its children
NULL); lists and maps are stored as JSON text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slmsql_cli.errors import UserError
from slmsql_cli.files.extras import require
from slmsql_cli.files.names import ColumnNames
from slmsql_cli.files.rows import Advance, TableData, sqlite_value

BATCH_ROWS = 16_384


def read_parquet(path: Path, name: str, advance: Advance) -> TableData:
    pa = require("pyarrow", "Parquet files")
    pq = require("pyarrow.parquet", "Parquet files")
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"cannot read {path} as Parquet: {exc}", "is it a complete Parquet file?") from None
    leaves = list(_leaves(parquet.schema_arrow))
    columns = ColumnNames()
    for leaf_name, _ in leaves:
        columns.add(leaf_name)
    types = [_sqlite_type(pa, t) for _, t in leaves]
    return TableData(name, str(path), columns, _rows(parquet, path, advance), types=types)


def _leaves(schema: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, arrow type) of every column after flattening structs, in schema order."""
    import pyarrow as pa

    for field in schema:
        if pa.types.is_struct(field.type):
            yield from _leaves(field.type.fields, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}", field.type


def _sqlite_type(pa: Any, arrow_type: Any) -> str:
    t = pa.types
    if t.is_dictionary(arrow_type):
        return _sqlite_type(pa, arrow_type.value_type)
    if t.is_integer(arrow_type) or t.is_boolean(arrow_type):
        return "INTEGER"
    if t.is_floating(arrow_type) or t.is_decimal(arrow_type):
        return "REAL"
    if t.is_binary(arrow_type) or t.is_large_binary(arrow_type) or t.is_fixed_size_binary(arrow_type):
        return "BLOB"
    return "TEXT"


def _rows(parquet: Any, path: Path, advance: Advance) -> Iterator[tuple[Any, ...]]:
    import pyarrow as pa

    total = max(parquet.metadata.num_rows, 1)
    size = path.stat().st_size
    try:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            arrays = [a for column in batch.columns for a in _flatten(column)]
            values = [_values(pa, a) for a in arrays]
            yield from zip(*values)
            advance(size * batch.num_rows // total)
    except pa.ArrowException as exc:
        raise UserError(f"cannot read {path} as Parquet: {exc}", "is it a complete Parquet file?") from None


def _values(pa: Any, array: Any) -> list[Any]:
    values = array.to_pylist(maps_as_pydicts="lossy")
    t = pa.types
    kind = array.type.value_type if t.is_dictionary(array.type) else array.type
    if t.is_floating(kind) or t.is_string(kind) or t.is_large_string(kind) or t.is_boolean(kind):
        return values  # as sqlite3 binds them already
    if (t.is_integer(kind) and kind != pa.uint64()) or t.is_binary(kind) or t.is_large_binary(kind):
        return values
    return [sqlite_value(v) for v in values]


def _flatten(array: Any) -> Iterator[Any]:
    import pyarrow as pa

    if pa.types.is_struct(array.type):
        for child in array.flatten():
            yield from _flatten(child)
    else:
        yield array
