"""A database that arrives through a pipe: `--db <(ssh host cat shop.sqlite)` or a named FIFO.

SQLite needs a seekable file, and opening a FIFO that nobody writes to blocks forever. So a
path that is not a regular file is read, without blocking, into a private temporary copy that
is deleted when slmsql exits; a writer that sends nothing for `IDLE_SECONDS`, or more than
`MAX_BYTES`, is refused with one line instead of a hang or a full disk.
"""

from __future__ import annotations

import atexit
import os
import select
import shutil
import stat
import tempfile
from pathlib import Path

from slmsql_cli.errors import UserError

MAX_BYTES = 2 * 1024**3  # a database bigger than 2 GiB should be a file on disk
IDLE_SECONDS = 10.0  # how long to wait for the first byte, and for each next one
_CHUNK = 1 << 20

_copies: list[Path] = []


def is_stream(path: Path) -> bool:
    """True for a FIFO, a process substitution (/dev/fd/N), a socket or a character device."""
    try:
        mode = os.stat(path).st_mode  # follows /dev/fd/N to the pipe itself
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def copy_stream(
    path: Path, header: bytes, *, max_bytes: int = MAX_BYTES, idle_seconds: float = IDLE_SECONDS
) -> Path:
    """Read `path` (a pipe) to its end into a temporary file and return the file's path.

    The stream must start with `header` (SQLite's magic string): anything else is refused at its
    first bytes rather than after copying it (`--db /dev/zero` would never end)."""
    if not hasattr(select, "poll"):  # Windows
        raise UserError(
            f"{path} is not a regular file, and slmsql cannot read a database from a pipe here",
            "save the database to a file and pass that file with --db",
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO without a writer must not block here
    except OSError as exc:
        raise UserError(f"cannot read database {path}: {exc.strerror or exc}") from None
    folder = Path(tempfile.mkdtemp(prefix="slmsql-pipe-"))
    if not _copies:
        atexit.register(_remove_copies)
    _copies.append(folder)
    target = folder / (Path(path).stem or "database")
    target = target.with_suffix(".sqlite")
    try:
        size = _drain(fd, path, target, header, max_bytes, idle_seconds)
        if size == 0:
            raise UserError(
                f"nothing arrived through {path}: it ended before sending any byte",
                "pass a SQLite file, or make sure the command writing into the pipe succeeds",
            )
        if size < len(header):
            raise UserError(
                f"{path} does not carry a SQLite database", "slmsql reads SQLite 3 files (.sqlite, .db)"
            )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # a partial copy can be large: not left for exit
        raise
    finally:
        os.close(fd)
    return target


def _drain(fd: int, path: Path, target: Path, header: bytes, max_bytes: int, idle_seconds: float) -> int:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    size = 0
    waited_for_writer = False
    head = b""
    with target.open("wb") as out:
        while True:
            try:
                chunk: bytes | None = os.read(fd, _CHUNK)
            except BlockingIOError:
                chunk = None  # a writer is there but has sent nothing new yet
            if chunk:
                if len(head) < len(header):
                    head += chunk[: len(header) - len(head)]
                    if not header.startswith(head):
                        raise UserError(
                            f"{path} does not carry a SQLite database",
                            "slmsql reads SQLite 3 files (.sqlite, .db)",
                        )
                size += len(chunk)
                if size > max_bytes:
                    raise UserError(
                        f"{path} sent more than {max_bytes // 1024**2} MiB",
                        "save the database to a file and pass that file with --db",
                    )
                out.write(chunk)
                continue
            if chunk == b"" and (size > 0 or waited_for_writer):
                return size  # end of file
            # Nothing yet: a FIFO reads as empty until its writer opens it, so wait for activity.
            waited_for_writer = chunk == b""
            if not poller.poll(idle_seconds * 1000):
                what = "nothing was written to" if size == 0 else "the writer stopped sending through"
                raise UserError(
                    f"{what} {path} for {idle_seconds:g} s",
                    "slmsql reads a pipe to its end before it opens the database; pass a SQLite file instead",
                )


def _remove_copies() -> None:
    for folder in _copies:
        shutil.rmtree(folder, ignore_errors=True)
    _copies.clear()
