"""What the first bytes of a SQLite file say, read without SQLite: whether it is one, whether it
is in WAL mode, and whether a glance shows it damaged.

Three rooms read SQLite files before (or instead of) opening them: `database` (is `--db` a
SQLite file at all), `targets/sqlite_open` (WAL or rollback journal decides how to open the
user's file) and `values` (is the cached value index whole). The file format's facts are kept
here once, on the ground floor, so that none of them imports another for a constant.
(sqlite.org/fileformat.html: the header is the first 100 bytes.)
"""

from __future__ import annotations

from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"


def is_wal(path: Path) -> bool:
    """Whether the database header says WAL mode (file format read/write versions 2, bytes 18-19)."""
    try:
        with path.open("rb") as fh:
            header = fh.read(20)
    except OSError:
        return False  # let SQLite report it
    return len(header) == 20 and header.startswith(SQLITE_HEADER) and 2 in (header[18], header[19])


def damage(path: Path) -> str | None:
    """What is wrong with a SQLite file that a glance at its header shows, or None: not a SQLite
    file, or shorter than the page count its header gives (truncated)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        return exc.strerror or str(exc)
    if len(header) < 100 or not header.startswith(SQLITE_HEADER):
        return "not a SQLite file"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if header[24:28] == header[92:96] and size < page_size * pages:  # the page count is valid
        return f"truncated to {size} of {page_size * pages} bytes"
    return None
