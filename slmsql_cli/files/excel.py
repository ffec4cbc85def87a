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
rows). openpyxl reports merged ranges only when it loads the whole workbook, which takes tens of
times the sheet's size in memory; so every sheet is streamed (openpyxl's read-only mode), and the
merged ranges of a sheet whose XML is at most MERGES_MAX_BYTES are read by a second streamed pass
(a larger sheet is read as if nothing were merged).

Bounded before it is read: an .xlsx file is a zip archive, and the decompressed size of each part
is checked from the zip directory first (zipfile then stops at that size). A part over
MAX_PART_BYTES, or over BOMB_MIN_BYTES and more than MAX_RATIO times its compressed size (Apache
POI's zip-bomb rule), is refused with one line. An XML error (a DTD or entity, which is never
resolved) is one line too.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from slmsql_cli.errors import UserError
from slmsql_cli.files.extras import require
from slmsql_cli.files.names import ColumnNames, clean
from slmsql_cli.files.rows import Advance, TableData, sqlite_value

MERGES_MAX_BYTES = 16 * 1024 * 1024  # sheets up to this much XML get a second pass for merged cells
MAX_PART_BYTES = 4 * 1024**3  # decompressed bytes of one part of the archive
BOMB_MIN_BYTES = 16 * 1024 * 1024  # parts at least this large must compress at most MAX_RATIO:1
MAX_RATIO = 100
MAX_MERGED_CELLS = 1_000_000  # cells covered by merged ranges in one sheet
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
# what a malformed or hostile workbook makes openpyxl raise (SyntaxError: expat's and lxml's XML errors)
_BROKEN = (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, SyntaxError, TypeError, IndexError)


def read_workbook(path: Path, name: str, advance: Advance) -> list[TableData]:
    openpyxl = require("openpyxl", "Excel files")
    invalid = require("openpyxl.utils.exceptions", "Excel files").InvalidFileException
    size = path.stat().st_size
    part_sizes = check_parts(path)
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        sheets = [ws for ws in book.worksheets if hasattr(ws, "iter_rows") and _has_data(ws)]
    except (*_BROKEN, invalid) as exc:
        raise _unreadable(path, exc) from None
    if not sheets:
        raise UserError(f"{path} has no sheet holding data", "is it the right workbook?")
    tables = []
    for ws in sheets:
        table_name = name if len(sheets) == 1 else clean(ws.title)
        columns = ColumnNames()
        part = getattr(ws, "_worksheet_path", "").lstrip("/")
        merged = _merged_ranges(path, part) if part_sizes.get(part, 0) <= MERGES_MAX_BYTES else {}
        rows = _rows(ws, merged, columns, lambda n: advance(n // len(sheets)), size)
        tables.append(TableData(table_name, f"{path} sheet {ws.title!r}", columns, _guarded(rows, path)))
    return tables


def check_parts(path: Path) -> dict[str, int]:
    """Each part's decompressed size, from the zip directory; a UserError for one too large, or
    one that decompresses like a zip bomb."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > MAX_PART_BYTES or (info.file_size > BOMB_MIN_BYTES and ratio > MAX_RATIO):
            raise UserError(
                f"{path}: its part {info.filename} decompresses to {info.file_size:,} bytes "
                f"({ratio:,.0f} times its stored size); refused as a possible zip bomb",
                "re-save the workbook in Excel or LibreOffice, or export the sheet as CSV",
            )
    return {info.filename: info.file_size for info in infos}


def _unreadable(path: Path, exc: BaseException) -> UserError:
    detail = f" ({exc.msg})" if isinstance(exc, SyntaxError) and exc.msg else ""
    return UserError(
        f"cannot read {path} as an Excel workbook{detail}",
        "slmsql reads .xlsx files; save .xls files as .xlsx",
    )


def _guarded(rows: Iterator[list[Any]], path: Path) -> Iterator[list[Any]]:
    """The rows, with a broken part met while streaming them as one line."""
    try:
        yield from rows
    except _BROKEN as exc:
        raise _unreadable(path, exc) from None


def _has_data(ws: Any) -> bool:
    return any(any(v is not None for v in row) for row in ws.iter_rows(values_only=True))


Merges = dict[tuple[int, int], tuple[int, int, int, int]]


def _merged_ranges(path: Path, part: str) -> Merges:
    """(row, column) of every merged cell → (first row, first column, last row, width) of its
    range, from a streamed pass over the sheet's XML (rows are dropped as they are passed)."""
    from openpyxl.worksheet.cell_range import CellRange

    merged: Merges = {}
    try:
        with zipfile.ZipFile(path) as archive, archive.open(part) as xml:
            for _event, element in ElementTree.iterparse(xml):
                if element.tag == f"{_MAIN}mergeCell" and element.get("ref"):
                    rng = CellRange(element.get("ref"))
                    cells = (rng.max_row - rng.min_row + 1) * (rng.max_col - rng.min_col + 1)
                    if len(merged) + cells > MAX_MERGED_CELLS:
                        return merged
                    span = (rng.min_row, rng.min_col, rng.max_row, rng.max_col - rng.min_col + 1)
                    for r in range(rng.min_row, rng.max_row + 1):
                        for c in range(rng.min_col, rng.max_col + 1):
                            merged[(r, c)] = span
                elif element.tag == f"{_MAIN}row":
                    element.clear()
    except _BROKEN as exc:
        raise _unreadable(path, exc) from None
    return merged


def _rows(ws: Any, merged: Merges, columns: ColumnNames, advance: Advance, size: int) -> Iterator[list[Any]]:
    total = max(ws.max_row or 1, 1)
    header: list[list[Any]] = []
    header_end = 0
    firsts: dict[tuple[int, int], Any] = {}  # the value of each merged range's first cell
    widths: dict[int, int] = {}  # row → its last merged column (a streamed row may stop before it)
    for r, c in merged:
        widths[r] = max(widths.get(r, 0), c)
    for r, raw in enumerate(ws.iter_rows(values_only=True), 1):
        if r % 1000 == 0:
            advance(size * 1000 // total)
        values = list(raw)
        if merged:
            values.extend([None] * (widths.get(r, 0) - len(values)))
            for c, v in enumerate(list(values), 1):
                if (r, c) in merged:
                    first = merged[(r, c)][:2]
                    if first == (r, c):
                        firsts[first] = v
                    values[c - 1] = firsts.get(first)
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


def _header_end(first: int, width: int, merged: Merges) -> int:
    """The last row of a header that starts at row `first`."""
    end = first
    for c in range(1, width + 1):
        if (first, c) in merged:
            _, _, last_row, span = merged[(first, c)]
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
