"""CSV, TSV, JSON and JSON Lines → rows (Python's csv and json modules: nothing to install).

CSV and TSV: UTF-8 (a byte-order mark is skipped); the first non-empty row names the columns;
every row must have as many fields as the header (a ragged row is refused, naming its line);
blank lines are skipped; an empty cell is NULL. A .csv file's delimiter is whichever of
`, ; | TAB` its header line holds most (comma on a tie or when it holds none); .tsv and .tab
files are tab-separated. Streamed line by line: memory stays bounded however large the file.

JSON: an array of records (`[{…}, {…}]`), read whole (for files larger than memory, use JSON
Lines); a .json file whose first line is a whole object is read as JSON Lines. JSON Lines: one record per line,
streamed. A record's keys are the columns, in the order first seen; a nested object becomes
`parent.child` columns (as Parquet structs do), down to FLATTEN_DEPTH levels (deeper objects are
JSON text); a list is stored as JSON text. An integer of more than 18 digits is kept as its text
(as `rows.sqlite_value` stores integers beyond 64 bits), however long; JSON nested deeper than
Python's parser goes (about a thousand levels) is refused with one line.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slmsql_cli.errors import UserError
from slmsql_cli.files.names import ColumnNames
from slmsql_cli.files.rows import Advance, TableData, sqlite_value

_FIELD_LIMIT = 256 * 1024 * 1024  # csv's default, 128 KiB per field, refuses long text cells
_DELIMITERS = ",;|\t"
_REPORT_EVERY_ROWS = 10_000  # rows (lines) between progress updates
FLATTEN_DEPTH = 32  # levels of nested objects made into parent.child columns


def _parse_int(text: str) -> int | str:
    """JSON integers: beyond 18 digits kept as text (Python refuses to parse over 4,300 digits)."""
    return int(text) if len(text) <= 19 else text


def _loads(text: str | bytes, path: Path, where: str) -> Any:
    """json.loads with long integers kept as text, and too deep nesting a UserError."""
    try:
        return json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise UserError(
            f"{path}{where}: JSON nested too deeply to read",
            "store deeply nested data as text, or flatten it before importing",
        ) from None


def read_csv(path: Path, name: str, advance: Advance) -> TableData:
    columns = ColumnNames()
    return TableData(
        name, str(path), columns, _delimited_rows(path, columns, advance, None), blank_is_null=True
    )


def read_tsv(path: Path, name: str, advance: Advance) -> TableData:
    columns = ColumnNames()
    return TableData(
        name, str(path), columns, _delimited_rows(path, columns, advance, "\t"), blank_is_null=True
    )


def read_json(path: Path, name: str, advance: Advance) -> TableData:
    columns = ColumnNames()
    reader = _json_lines_rows if _starts_with_a_record_line(path) else _json_array_rows
    return TableData(name, str(path), columns, reader(path, columns, advance))


def _starts_with_a_record_line(path: Path) -> bool:
    """Whether a .json file is JSON Lines: its first non-blank line is a whole JSON object."""
    with path.open("rb") as fh:
        if not fh.read(64).lstrip().removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{"):
            return False
        fh.seek(0)
        first = next((line for line in fh if line.strip()), b"")
    try:
        return isinstance(json.loads(first.decode("utf-8-sig")), dict)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False  # read as a whole: its error (or an object that is not records) is reported then


def read_json_lines(path: Path, name: str, advance: Advance) -> TableData:
    columns = ColumnNames()
    return TableData(name, str(path), columns, _json_lines_rows(path, columns, advance))


def _delimited_rows(
    path: Path, columns: ColumnNames, advance: Advance, delimiter: str | None
) -> Iterator[list[str]]:
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    try:
        with path.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as fh:
            skipped, first = 0, fh.readline()
            while first and not first.strip():
                skipped, first = skipped + 1, fh.readline()
            if not first:
                raise UserError(f"{path} is empty", "a CSV file starts with a header line naming its columns")
            if delimiter is None:
                delimiter = max(_DELIMITERS, key=lambda d: (first.count(d), d == ","))
            reader = csv.reader(itertools.chain([first], fh), delimiter=delimiter, strict=True)
            try:
                header = next(reader)
                for cell in header:
                    columns.add(cell)
                width, reported = len(header), 0
                for number, row in enumerate(reader):
                    if len(row) != width:
                        if not row:
                            continue  # a blank line
                        raise UserError(
                            f"{path} line {skipped + reader.line_num}: {len(row)} fields, the header has {width}",
                            "quote fields that contain the delimiter; every row needs the header's number of fields",
                        )
                    if number % _REPORT_EVERY_ROWS == 0:
                        position = raw.tell()
                        advance(position - reported)
                        reported = position
                    yield row
            except csv.Error as exc:
                line = skipped + reader.line_num
                raise UserError(f"{path} line {line}: {exc}", "is it a CSV file?") from None
    except UnicodeDecodeError:
        raise _not_utf8(path) from None


def _not_utf8(path: Path) -> UserError:
    """The error for a text file that is not UTF-8, naming its first line that is not."""
    with path.open("rb") as fh:
        number = next((n for n, raw in enumerate(fh, 1) if not _decodes(raw)), None)
    where = f"line {number} of {path}" if number else str(path)
    return UserError(
        f"{where} is not UTF-8 text",
        f"convert it, e.g. from Windows' cp1252: iconv -f cp1252 -t utf-8 {path.name} > utf8-{path.name}",
    )


def _decodes(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _json_array_rows(path: Path, columns: ColumnNames, advance: Advance) -> Iterator[list[Any]]:
    try:
        data = _loads(path.read_bytes().decode("utf-8-sig"), path, "")
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path} line {exc.lineno} column {exc.colno}: {exc.msg}", "is it valid JSON?"
        ) from None
    advance(path.stat().st_size)
    if not isinstance(data, list) or not data:
        raise UserError(
            f"{path} is not an array of records" if data else f"{path} holds no records",
            'slmsql reads JSON as [{"column": value, …}, …], or JSON Lines: one {…} record per line',
        )
    positions: dict[str, int] = {}
    for number, record in enumerate(data, 1):
        if not isinstance(record, dict):
            raise UserError(
                f"{path}: item {number} of the array is {type(record).__name__}, not a record",
                'every item of the array is an object: {"column": value, …}',
            )
        yield _checked_row(record, columns, positions, path, f" item {number}")


def _json_lines_rows(path: Path, columns: ColumnNames, advance: Advance) -> Iterator[list[Any]]:
    positions: dict[str, int] = {}
    reported = 0
    try:
        with path.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as fh:
            for number, line in enumerate(fh, 1):
                if number % _REPORT_EVERY_ROWS == 0:
                    position = raw.tell()
                    advance(position - reported)
                    reported = position
                if not line.strip():
                    continue
                try:
                    record = _loads(line, path, f" line {number}")
                except json.JSONDecodeError as exc:
                    raise UserError(
                        f"{path} line {number} column {exc.colno}: {exc.msg}",
                        "JSON Lines holds one complete JSON object per line",
                    ) from None
                if not isinstance(record, dict):
                    raise UserError(
                        f"{path} line {number} is {type(record).__name__}, not a record",
                        'JSON Lines holds one object per line: {"column": value, …}',
                    )
                yield _checked_row(record, columns, positions, path, f" line {number}")
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    if not positions:
        raise UserError(f"{path} holds no records", "JSON Lines holds one JSON object per line")


def _checked_row(
    record: dict[str, Any], columns: ColumnNames, positions: dict[str, int], path: Path, where: str
) -> list[Any]:
    try:
        return _row(record, columns, positions)
    except RecursionError:  # json.dumps of a nested value deeper than the stack allows
        raise UserError(
            f"{path}{where}: JSON nested too deeply to store",
            "store deeply nested data as text, or flatten it before importing",
        ) from None


def _row(record: dict[str, Any], columns: ColumnNames, positions: dict[str, int]) -> list[Any]:
    """One record as a row in column order; a key not seen before adds a column."""
    row: list[Any] = [None] * len(columns.names)
    for key, value in _flat_items(record):
        i = positions.get(key)
        if i is None:
            i = positions[key] = len(columns.names)
            columns.add(key)
            row.append(None)
        row[i] = sqlite_value(value)
    return row


def _flat_items(record: dict[str, Any], prefix: str = "", depth: int = 1) -> Iterator[tuple[str, Any]]:
    for key, value in record.items():
        if isinstance(value, dict) and value and depth < FLATTEN_DEPTH:
            yield from _flat_items(value, f"{prefix}{key}.", depth + 1)
        else:
            yield f"{prefix}{key}", value
