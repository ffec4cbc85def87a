"""Open the user's SQLite file for reading, with its newest committed data, writing nothing next to it.

Every reader of the user's database (schema, sample values, value index build, executor) opens
it here. `file:…?mode=ro` alone is not enough: on a WAL-mode database SQLite creates `-shm` (and
`-wal`) files beside it and leaves them after exit, and a hot journal (`-journal` left by an
interrupted write) makes a read-only connection fail with "attempt to write a readonly
database". Datasette opens mutable files with `mode=ro` (accepting the `-shm`) and immutable ones
with `immutable=1` (which ignores a `-wal` and so reads stale data); slmsql chooses per file:

| the file                                   | how it is opened                                    |
|--------------------------------------------|-----------------------------------------------------|
| rollback journal, no `-journal`            | `mode=ro`                                           |
| rollback journal with a `-journal`         | `mode=ro`; if the journal is hot: a private copy    |
| WAL, no `-wal` (or an empty one, no `-shm`)| `immutable=1`: every committed row is in the file   |
| WAL with `-wal` and `-shm` (in use)        | `mode=ro`: SQLite's own locking with live writers   |
| WAL with a leftover `-wal`, no `-shm`      | a private copy                                      |

A private copy is the database and its `-wal`/`-journal` copied into a temporary folder of this
process, recovered there (WAL frames checkpointed, a hot journal rolled back: SQLite's own
recovery, which keeps only committed transactions) and opened with `mode=ro`. It is made once
per version of the files and removed when they change or the process exits; folders left by
killed processes are removed by the next copy. When the files change while they are copied (a
writer is at work) the copy is retried.

Reading without writing is impossible only when that copy cannot be made (the `-wal` or
`-journal` is unreadable, or no temporary space): then a UserError says so and what to do.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from slmsql_cli.cache import private_temp_dir
from slmsql_cli.errors import UserError
from slmsql_cli.sqlite_header import is_wal

_SNAPSHOT_PREFIX = "slmsql-snapshot"
_COPY_TRIES = 3
_PROBE = "SELECT count(*) FROM sqlite_master"  # reading the schema is SQLite's first real access


@dataclass
class _Snapshot:
    stamp: tuple[tuple[int, int] | None, ...]  # the original files' (size, mtime) when copied
    folder: Path
    copy: Path
    cleanup: weakref.finalize


class _Owner:
    """What the copies' finalizers hang on: they run at exit at the latest."""


_SNAPSHOTS: dict[Path, _Snapshot] = {}  # database -> its recovered copy, one per process
_snapshots_lock = threading.Lock()
_owner = _Owner()


def open_readonly(db_path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A read-only connection to `db_path` showing its newest committed data; creates no file beside it.

    Text that is not valid UTF-8 (some Spider databases hold it) decodes with U+FFFD. The
    connection may be used from any thread and is in autocommit mode.
    """
    path = Path(db_path).resolve()
    wal_mode = is_wal(path)
    wal, shm, journal = (Path(f"{path}{suffix}") for suffix in ("-wal", "-shm", "-journal"))
    if wal_mode:
        if not wal.exists() or (_size(wal) == 0 and not shm.exists()):
            return _connect(path, "immutable=1")
        if shm.exists():
            try:
                return _probed(_connect(path, "mode=ro"))
            except sqlite3.Error:  # e.g. a -shm this user may not write: read a copy instead
                pass
        return _snapshot(path, wal)
    if _size(journal) > 0:
        try:
            return _probed(_connect(path, "mode=ro"))
        except sqlite3.Error as exc:
            # SQLITE_READONLY_ROLLBACK: the journal is hot (Python 3.10 has no sqlite_errorname)
            if "readonly database" not in str(exc):
                raise
        return _snapshot(path, journal)
    return _connect(path, "mode=ro")


def _connect(
    path: Path, query: str, factory: type[sqlite3.Connection] = sqlite3.Connection
) -> sqlite3.Connection:
    conn = sqlite3.connect(
        f"{path.as_uri()}?{query}", uri=True, check_same_thread=False, isolation_level=None, factory=factory
    )
    conn.text_factory = lambda raw: raw.decode("utf-8", errors="replace")
    return conn


def _probed(conn: sqlite3.Connection) -> sqlite3.Connection:
    """`conn` after a first read, so that a hot journal or an unusable -shm fails here, not later."""
    try:
        conn.execute(_PROBE).fetchall()
    except BaseException:
        conn.close()
        raise
    return conn


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# --- private copies -----------------------------------------------------------------------------


def _snapshot(path: Path, sidecar: Path) -> sqlite3.Connection:
    """A `mode=ro` connection to a recovered copy of `path` and its `-wal` or `-journal` (`sidecar`).

    The copy is made once per version of the files and reused (the executor opens a connection
    per query); it is removed when the files change, and when the process exits.
    """
    with _snapshots_lock:
        current = _SNAPSHOTS.get(path)
        if current is None or current.stamp != _stamp(path, sidecar):
            if current is not None:
                current.cleanup()
                del _SNAPSHOTS[path]
            current = _SNAPSHOTS[path] = _make_snapshot(path, sidecar)
    return _probed(_connect(current.copy, "mode=ro"))


def _make_snapshot(path: Path, sidecar: Path) -> _Snapshot:
    try:
        folder = private_temp_dir(_SNAPSHOT_PREFIX)
    except OSError as exc:
        raise _cannot_read(path, sidecar, exc) from None
    cleanup = weakref.finalize(_owner, shutil.rmtree, folder, ignore_errors=True)
    try:
        copy = folder / path.name
        stamp = _copy_consistent(path, sidecar, copy, Path(f"{copy}{sidecar.name.removeprefix(path.name)}"))
        _recover(copy)
    except (OSError, sqlite3.Error) as exc:
        cleanup()
        raise _cannot_read(path, sidecar, exc) from None
    except BaseException:
        cleanup()
        raise
    return _Snapshot(stamp, folder, copy, cleanup)


def _copy_consistent(
    db: Path, sidecar: Path, db_copy: Path, sidecar_copy: Path
) -> tuple[tuple[int, int] | None, ...]:
    """Copy the database and its sidecar; retry while a writer changes them during the copy."""
    for _ in range(_COPY_TRIES):
        before = _stamp(db, sidecar)
        shutil.copyfile(db, db_copy)
        try:
            shutil.copyfile(sidecar, sidecar_copy)
        except FileNotFoundError:  # checkpointed and removed meanwhile: the stamps below tell
            sidecar_copy.unlink(missing_ok=True)
        if _stamp(db, sidecar) == before:
            return before
    raise OSError(f"{db.name} kept changing while it was copied (another program is writing it)")


def _stamp(*paths: Path) -> tuple[tuple[int, int] | None, ...]:
    stamps: list[tuple[int, int] | None] = []
    for p in paths:
        try:
            st = p.stat()
            stamps.append((st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            stamps.append(None)
    return tuple(stamps)


def _recover(copy: Path) -> None:
    """Let SQLite recover the private copy: roll a hot journal back, or move WAL frames into the file."""
    conn = sqlite3.connect(copy, isolation_level=None)
    try:
        conn.execute(_PROBE).fetchall()  # rolls back a hot journal
        conn.execute("PRAGMA journal_mode=DELETE").fetchall()  # checkpoints the WAL, then leaves WAL mode
    finally:
        conn.close()


def _cannot_read(path: Path, sidecar: Path, exc: BaseException) -> UserError:
    reason = getattr(exc, "strerror", None) or str(exc)
    if sidecar.name.endswith("-wal"):
        return UserError(
            f"cannot read {path} without writing beside it: it is in WAL mode, its newest changes are "
            f"in {sidecar.name}, and slmsql could not copy the two to a private folder ({reason})",
            f"checkpoint the database: sqlite3 '{path}' 'PRAGMA wal_checkpoint(TRUNCATE)', "
            "or copy it together with its -wal file somewhere writable",
        )
    return UserError(
        f"cannot read {path} without writing beside it: {sidecar.name} holds an interrupted write "
        f"that must be rolled back first, and slmsql could not copy the two to a private folder ({reason})",
        f"let SQLite roll it back: sqlite3 '{path}' 'PRAGMA quick_check', "
        "or copy it together with its -journal file somewhere writable",
    )
