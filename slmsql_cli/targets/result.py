"""What running a query gives back, on any target: `ExecResult`, and the caps on a result's size.

Every target (the SQLite executor, DuckDB, PostgreSQL) returns an `ExecResult` and cuts its rows
with `fetch_capped`, so a vote, `--json` and the merge prompt see one kind of result whatever ran
the query. A plain dataclass with no dependency: the pipeline, the vote, rendering and charts
import it without importing the executor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_ROWS = 100_000  # rows a query returns by default; the result says when it was cut
MAX_RESULT_BYTES = 64_000_000  # a result is cut (truncated) past this many bytes of values


@dataclass
class ExecResult:
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    error: str | None = None  # None when the query ran (a timeout sets timed_out, not error)
    timed_out: bool = False
    truncated: bool = False  # cut at max_rows rows or MAX_RESULT_BYTES bytes; `rows` holds what fits
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out

    def key(self) -> frozenset:
        """The vote key: the set of rows (CSC-SQL). Row order and duplicates don't count; column order does."""
        return frozenset(self.rows)


def fetch_capped(cursor: Iterable[tuple], max_rows: int, max_bytes: int) -> tuple[list[tuple], bool]:
    """Rows until `max_rows` rows or `max_bytes` bytes (text and blob lengths, 8 per other value);
    one row at a time, so a cut result never holds more than one row past the cap. (The live
    targets cut their results with it too.)"""
    rows: list[tuple] = []
    total = 0
    for row in cursor:
        total += row_bytes(row)
        if len(rows) == max_rows or total > max_bytes:
            return rows, True
        rows.append(row)
    return rows, False


def row_bytes(row: tuple) -> int:
    return sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in row)
