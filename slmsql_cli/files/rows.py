"""What every reader hands the writer: one table's name, columns and rows of SQLite values."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from slmsql_cli.files.names import ColumnNames

Advance = Callable[[int], None]  # bytes of the source file consumed since the last call

_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class TableData:
    """One table to import.

    `columns` may grow while `rows` is read (a JSON Lines record with a new key, an Excel cell
    past the header): a row is never longer than `columns` is when it is yielded, and rows
    shorter than the final `columns` end in NULLs. `types` are the declared SQLite types when the
    format carries them (Parquet); None means they are inferred from every value.
    `blank_is_null`: an empty string is an empty cell (CSV, TSV), stored as NULL.
    """

    name: str
    source: str  # the file (and sheet) for messages
    columns: ColumnNames
    rows: Iterator[Sequence[Any]]
    types: list[str] | None = None
    blank_is_null: bool = False


def sqlite_value(value: Any) -> Any:
    """A Python value as SQLite stores it: dates and times as ISO text, booleans as 0/1, nested
    lists and objects as JSON text, integers beyond 64 bits as text, decimals as REAL."""
    if value is None or isinstance(value, str | float | bytes):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(
        value, dt.datetime
    ):  # `YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM]`, as SQLite's date functions read
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
