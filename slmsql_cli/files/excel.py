"""Excel workbooks (.xlsx, .xlsm) → one table per sheet, with openpyxl (the `files` extra).

A workbook with one sheet holding data makes a table named after the file; with several, each
sheet makes a table named after the sheet (empty sheets are skipped). In a sheet, the first
non-empty row is the header and each later non-empty row a record; cells keep the value Excel
computed (formulas are not evaluated again); a date is `YYYY-MM-DD` text, a date with a time
`YYYY-MM-DD HH:MM:SS`.

Merged cells: every cell of a merged range holds the range's value. A header cell merged across
columns is a group title over a second header row (`Sales` above `Q1`, `Q2`), so the header then
takes as many rows as its tallest merged range, at least two, and a column's name joins its
header cells' distinct values (`Sales Q1`, `Sales Q2`; `Region` for a cell merged down both
rows). openpyxl reports merged ranges only when it loads the whole workbook, so a workbook over
MERGES_MAX_BYTES is streamed instead (bounded memory) and read as if nothing were merged.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from slmsql_cli.errors import UserError
from slmsql_cli.files.extras import require
from slmsql_cli.files.names import ColumnNames, clean
from slmsql_cli.files.rows import Advance, TableData, sqlite_value

MERGES_MAX_BYTES = 16 * 1024 * 1024  # loading a workbook whole takes tens of times its size in memory


def read_workbook(path: Path, name: str, advance: Advance) -> list[TableData]:
    openpyxl = require("openpyxl", "Excel files")
    invalid = require("openpyxl.utils.exceptions", "Excel files").InvalidFileException
    size = path.stat().st_size
    try:
        book = openpyxl.load_workbook(path, read_only=size > MERGES_MAX_BYTES, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, invalid):
        raise UserError(
            f"cannot read {path} as an Excel workbook", "slmsql reads .xlsx files; save .xls files as .xlsx"
        ) from None
    sheets = [ws for ws in book.worksheets if hasattr(ws, "iter_rows") and _has_data(ws)]
    if not sheets:
        raise UserError(f"{path} has no sheet holding data", "is it the right workbook?")
    tables = []
    for ws in sheets:
        table_name = name if len(sheets) == 1 else clean(ws.title)
        columns = ColumnNames()
        rows = _rows(ws, _merged_values(ws), columns, lambda n: advance(n // len(sheets)), size)
        tables.append(TableData(table_name, f"{path} sheet {ws.title!r}", columns, rows))
    return tables


def _has_data(ws: Any) -> bool:
    return any(any(v is not None for v in row) for row in ws.iter_rows(values_only=True))


def _merged_values(ws: Any) -> dict[tuple[int, int], tuple[Any, int, int]]:
    """(row, column) of every merged cell → (the range's value, its last row, its width)."""
    merged: dict[tuple[int, int], tuple[Any, int, int]] = {}
    for rng in getattr(ws, "merged_cells", None) or ():
        value = ws.cell(rng.min_row, rng.min_col).value
        for r in range(rng.min_row, rng.max_row + 1):
            for c in range(rng.min_col, rng.max_col + 1):
                merged[(r, c)] = (value, rng.max_row, rng.max_col - rng.min_col + 1)
    return merged


def _rows(
    ws: Any,
    merged: dict[tuple[int, int], tuple[Any, int, int]],
    columns: ColumnNames,
    advance: Advance,
    size: int,
) -> Iterator[list[Any]]:
    total = max(ws.max_row or 1, 1)
    header: list[list[Any]] = []
    header_end = 0
    for r, raw in enumerate(ws.iter_rows(values_only=True), 1):
        if r % 1000 == 0:
            advance(size * 1000 // total)
        values = [merged[(r, c)][0] if (r, c) in merged else v for c, v in enumerate(raw, 1)]
        if all(v is None for v in values):
            continue
        if not header or r <= header_end:
            if not header:
                header_end = _header_end(r, len(values), merged)
            header.append(values)
            if r == header_end:
                for name in _header_names(header):
                    columns.add(name)
            continue
        row = [_cell(v) for v in values]
        while row and row[-1] is None and len(row) > len(columns.names):
            row.pop()  # formatted but empty cells past the header
        for _ in range(len(columns.names), len(row)):
            columns.add(None)  # a value past the header: column_N
        yield row
    if header and not columns.names:  # the sheet ended inside its header
        for name in _header_names(header):
            columns.add(name)


def _header_end(first: int, width: int, merged: dict[tuple[int, int], tuple[Any, int, int]]) -> int:
    """The last row of a header that starts at row `first`."""
    end = first
    for c in range(1, width + 1):
        if (first, c) in merged:
            _, last_row, span = merged[(first, c)]
            end = max(end, last_row, first + 1 if span > 1 else first)
    return end


def _header_names(header: Sequence[Sequence[Any]]) -> list[str]:
    """Each column's name: its header cells' distinct values joined; empty columns at the end dropped."""
    width = max((c + 1 for row in header for c, v in enumerate(row) if clean(v)), default=0)
    names = []
    for c in range(width):
        parts: list[str] = []
        for row in header:
            part = clean(row[c]) if c < len(row) else ""
            if part and part not in parts:
                parts.append(part)
        names.append(" ".join(parts))
    return names


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date().isoformat()  # Excel has no date type: a date is a datetime at midnight
    return sqlite_value(value)
