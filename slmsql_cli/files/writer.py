"""Tables of rows → one SQLite file, each column's type inferred from every one of its values.

Types. A column whose values (empty cells aside) are all integers is INTEGER, all numbers (some
with a fraction or exponent) REAL, all bytes BLOB, and anything else TEXT: mixed columns, dates
and times (ISO text, which SQLite's date functions read), and columns without any value. Text
counts as a number only when written plainly as one: `-12`, `3.5`, `1e6`, `.5`; `007`, ` 12`,
`1,000`, `1_000`, `nan` and integers beyond 64 bits stay text (zip codes and ids keep their
zeros). This is written by hand because sqlite-utils' TypeTracker (the type detection of its
import) takes `int("007")`, `int("1_000")` and `float("nan")` for numbers, and calls a column
without values an integer.

How. Rows whose types must be inferred go first to a staging table without declared types (each
value stored as given) in a scratch file beside the output, while their kinds are tracked; then
the table is created with the inferred types and filled by one INSERT … SELECT, in which SQLite's
column affinity turns numeric text into numbers. One pass over the source in batches (bounded
memory), and the staging pages never enter the output file.

Bounded on disk. A file can expand far beyond its own size (a Parquet dictionary, an Excel
shared string or a short CSV row under a wide header repeated a million times), so the bytes
written are capped while they are written (`DiskCap`): before each statement that adds rows,
each of the two files may grow by what is left of the cap and no more (SQLite's
`max_page_count`), so the statement that would pass it fails inside SQLite (SQLITE_FULL) and the
import ends with one line. The staging file is the caller's (the import worker's parent makes
it and removes it, even when the worker is killed).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from slmsql_cli.errors import UserError
from slmsql_cli.files.rows import TableData
from slmsql_cli.schema import quote

BATCH = 2000  # rows per executemany

INTEGER, REAL, TEXT, BLOB = 1, 2, 4, 8
_INT_TEXT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_REAL_TEXT = re.compile(r"[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INT_LINES = re.compile(f"(?:{_INT_TEXT.pattern}\n)*{_INT_TEXT.pattern}")
_REAL_LINES = re.compile(f"(?:{_REAL_TEXT.pattern}\n)*{_REAL_TEXT.pattern}")
_INT64_DIGITS = 18  # every integer of up to 18 digits fits in 64 bits


def kind(value: Any, blank_is_null: bool = False) -> int:
    """INTEGER, REAL, TEXT or BLOB for one value as `rows.sqlite_value` made it; 0 for an empty cell."""
    if value is None:
        return 0
    if isinstance(value, str):
        if _INT_TEXT.fullmatch(value):
            digits = len(value.lstrip("+-"))
            if digits > _INT64_DIGITS + 1:
                return TEXT  # beyond 64 bits (and never parsed: Python refuses over 4,300 digits)
            return INTEGER if digits <= _INT64_DIGITS or -(2**63) <= int(value) < 2**63 else TEXT
        if _REAL_TEXT.fullmatch(value):
            return REAL
        return 0 if blank_is_null and not value else TEXT
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return REAL
    return BLOB if isinstance(value, bytes) else TEXT


def declared_type(kinds: int) -> str:
    """The column type for the union of its values' kinds."""
    if kinds == INTEGER:
        return "INTEGER"
    if kinds and not kinds & ~(INTEGER | REAL):
        return "REAL"
    return "BLOB" if kinds == BLOB else "TEXT"


def write_database(
    path: Path,
    tables: Iterable[TableData],
    status: Callable[[str], None] = lambda _: None,
    *,
    scratch: Path | None = None,
    max_bytes: int | None = None,
    cap_how: str = "",
) -> list[str]:
    """Fill the new SQLite file `path` with every table; their names, in order.

    `status` hears what is happening between rows (the final copy of a large table takes a while).
    `scratch`: the (empty) staging file, left for the caller to remove; None makes one beside
    `path` and removes it. `max_bytes`: at most this much in both files together (None: no cap),
    past it a UserError saying `cap_how` (how the cap was set, so the person knows what to change).
    """
    own = scratch is None
    if scratch is None:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        scratch = Path(name)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # The file is private until renamed into place, and deleted if anything fails: no journal.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("ATTACH DATABASE ? AS stage", (str(scratch),))
        conn.execute("PRAGMA stage.journal_mode = OFF")
        conn.execute("PRAGMA stage.synchronous = OFF")
        conn.execute("BEGIN")
        cap = DiskCap(conn, max_bytes)
        names = []
        for data in tables:
            try:
                _write_table(conn, data, status, cap)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_FULL:
                    raise
                raise cap.stopped(data.source, cap_how, path.parent) from None
            except UnicodeEncodeError:  # JSON's "\ud800": a lone surrogate, which UTF-8 cannot hold
                raise UserError(
                    f"{data.source} holds text with a lone UTF-16 surrogate (a \\ud800-\\udfff escape without its pair)",
                    "fix the text: such an escape is only valid as half of a pair",
                ) from None
            except sqlite3.DataError:  # SQLITE_TOOBIG: a value over SQLite's length limit
                limit = conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
                raise UserError(
                    f"{data.source} has a cell over SQLite's limit of {limit:,} bytes",
                    "split or shorten the oversized value",
                ) from None
            names.append(data.name)
        conn.execute("COMMIT")
        return names
    finally:
        conn.close()
        if own:
            scratch.unlink(missing_ok=True)


class DiskCap:
    """At most `max_bytes` in the output and staging files together, enforced by SQLite: `arm`,
    called before each statement that adds rows, lets each file grow by what is left of the cap
    (`max_page_count`: the pages it has plus the pages left), so the statement that would pass
    the cap fails with SQLITE_FULL, even in the middle of one INSERT … SELECT. Between two arms
    only one of the two files grows, so the sum stays within the cap (an empty file may always
    take its first page: a max_page_count of 0 would leave the limit unset)."""

    def __init__(self, conn: sqlite3.Connection, max_bytes: int | None) -> None:
        self.conn, self.max_bytes = conn, max_bytes
        self.left = max_bytes  # what the last statement was allowed to add

    def arm(self) -> None:
        if self.max_bytes is None:
            return
        pages = {
            db: (
                self.conn.execute(f"PRAGMA {db}.page_count").fetchone()[0],
                self.conn.execute(f"PRAGMA {db}.page_size").fetchone()[0],
            )
            for db in ("main", "stage")
        }
        self.left = max(self.max_bytes - sum(n * size for n, size in pages.values()), 0)
        for db, (n, size) in pages.items():
            self.conn.execute(f"PRAGMA {db}.max_page_count = {max(n + self.left // size, 1)}")

    def stopped(self, source: str, how: str, folder: Path) -> UserError:
        """The error for a statement that failed with SQLITE_FULL: the cap, unless the disk
        holding `folder` has less room than the statement was allowed (then the disk is full).
        (After SQLITE_FULL without a journal the files are past reading: nothing is asked of them.)"""
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = 0
        if self.max_bytes is not None and self.left is not None and free >= self.left:
            mb = self.max_bytes / 1024**2
            return UserError(
                f"{source} expands to more than {mb:,.0f} MB in SQLite, the import's disk cap "
                f"({how or 'set by the caller'}); the import was stopped",
                "set SLMSQL_IMPORT_DISK_MB higher if the data really is that large, or import a part of it",
            )
        return UserError(
            f"the disk holding slmsql's cache is full (importing {source})",
            "free some space, or set SLMSQL_CACHE_DIR to a folder on a larger disk",
        )


def row_counts(path: Path, names: Sequence[str]) -> list[int]:
    """The rows of each named table of the written file `path` (what a folder's import reports)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [conn.execute(f"SELECT count(*) FROM {quote(name)}").fetchone()[0] for name in names]
    finally:
        conn.close()


def _check_width(conn: sqlite3.Connection, data: TableData, width: int) -> None:
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_COLUMN)
    if width > limit:
        raise UserError(
            f"{data.source} has {width:,} columns; a SQLite table holds at most {limit:,}",
            "keep only the columns you need, or split the file into several",
        )


def _write_table(
    conn: sqlite3.Connection, data: TableData, status: Callable[[str], None], cap: DiskCap
) -> None:
    target = f"main.{quote(data.name)}"
    _check_width(conn, data, len(data.columns.names))
    cap.arm()
    if data.types is not None:
        _create(conn, target, data.columns.names, data.types)
        insert = _insert_sql(target, len(data.types))
        for batch in _batches(data.rows):
            cap.arm()
            conn.executemany(insert, batch)
        return
    staging = f"stage.{quote(data.name)}"
    kinds: list[int] = []  # per staged column; empty until the staging table exists
    for batch in _batches(data.rows):
        cap.arm()  # the staging file alone grows until the copy: one arm covers the batch
        names = data.columns.names
        if not names:
            raise UserError(f"{data.source}: its first records have no fields", "is it the right file?")
        _check_width(conn, data, len(names))
        if not kinds:
            conn.execute(f"CREATE TABLE {staging} ({', '.join(map(quote, names))})")
        else:
            for name in names[len(kinds) :]:
                conn.execute(f"ALTER TABLE {staging} ADD COLUMN {quote(name)}")
        width = len(names)
        kinds.extend([0] * (width - len(kinds)))
        rows = [row if len(row) == width else (*row, *[None] * (width - len(row))) for row in batch]
        conn.executemany(_insert_sql(staging, width), rows)
        for i, column in enumerate(zip(*rows)):
            if not kinds[i] & TEXT:  # TEXT is final: nothing more to learn about the column
                kinds[i] |= _kinds(column, data.blank_is_null)
    names = data.columns.names
    if not names:
        raise UserError(f"{data.source} holds no data", "is it the right file?")
    staged = bool(kinds)
    kinds.extend([0] * (len(names) - len(kinds)))  # a header without rows: TEXT columns
    cap.arm()
    _create(conn, target, names, [declared_type(k) for k in kinds])
    if staged:
        status(f"{data.name}: setting column types")
        select = ", ".join(f"NULLIF({quote(n)}, '')" if data.blank_is_null else quote(n) for n in names)
        conn.execute(f"INSERT INTO {target} SELECT {select} FROM {staging}")
        conn.execute(f"DROP TABLE {staging}")


def _kinds(column: Sequence[Any], blank_is_null: bool) -> int:
    """The union of the kinds of a batch's values in one column."""
    values = set(column)  # distinct values: a repeated value costs once
    values.discard(None)
    if blank_is_null:
        values.discard("")
    try:
        joined = "\n".join(values)  # TypeError unless every value is text (CSV: always)
    except TypeError:
        return _slow_kinds(values)
    # One regular-expression match over all the text (a value holding the separator is text).
    if not values or joined.count("\n") != len(values) - 1:
        return TEXT if values else 0
    if _INT_LINES.fullmatch(joined):
        return INTEGER if max(map(len, values)) <= _INT64_DIGITS else _slow_kinds(values)
    if _REAL_LINES.fullmatch(joined):
        if max(map(len, values)) <= _INT64_DIGITS:
            return REAL
        return REAL | _slow_kinds(v for v in values if _INT_TEXT.fullmatch(v))  # beyond 64 bits: text
    return TEXT


def _slow_kinds(values: Iterable[Any]) -> int:
    found = 0
    for value in values:
        found |= kind(value)
        if found & TEXT:
            break
    return found


def _create(conn: sqlite3.Connection, target: str, names: Sequence[str], types: Sequence[str]) -> None:
    columns = ", ".join(f"{quote(n)} {t}" for n, t in zip(names, types))
    conn.execute(f"CREATE TABLE {target} ({columns})")


def _insert_sql(target: str, width: int) -> str:
    return f"INSERT INTO {target} VALUES ({', '.join('?' * width)})"


def _batches(rows: Iterator[Sequence[Any]]) -> Iterator[list[Sequence[Any]]]:
    while batch := list(islice(rows, BATCH)):
        yield batch
