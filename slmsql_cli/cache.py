"""Where slmsql keeps what it derives from a database (schema, sample values, value index).

Each database file gets its own folder, keyed by its resolved path and, one level down, by its
size and modification time: editing the file makes a fresh folder (so nothing stale is ever
read) and the folders of older versions of the same file are removed (so the cache does not grow).
Writes go to a temporary file that is renamed into place, so a reader never sees half a file,
even with two slmsql processes working on the same database; the temporary files of a killed
process are removed by the next run. A cache root that cannot be written means working without
a cache (one warning), and a damaged cache file is rebuilt (one warning, by its reader).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """slmsql's cache root: $SLMSQL_CACHE_DIR, else ~/.cache/slmsql (created on demand)."""
    root = Path(os.environ.get("SLMSQL_CACHE_DIR") or Path.home() / ".cache" / "slmsql").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def db_cache_dir(db_path: str | os.PathLike[str]) -> Path | None:
    """The cache folder for the current version (size, mtime, -wal) of a database file, or None.

    None (after one warning) when the cache root cannot be written: slmsql then works without
    a cache. Temporary files that a killed slmsql left in the folder are removed.
    """
    resolved = Path(db_path).resolve()
    return versioned_dir("db", f"{resolved.stem[:40]}-{short_hash(str(resolved))}", file_version(resolved))


def versioned_dir(kind: str, name: str, version: str) -> Path | None:
    """`<cache root>/<kind>/<name>/<hash of version>`, created; the other versions of `name` removed.

    None (after one warning) when the cache root cannot be written. Orphaned temporary files in
    the folder are removed.
    """
    try:
        by_name = cache_dir() / kind / name
        folder = by_name / short_hash(version)
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            for old in by_name.iterdir():  # earlier versions are never read again
                if old != folder and old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
        _probe_writable(folder)
    except OSError as exc:
        warn(unwritable_message(exc))
        return None
    remove_orphans(folder)
    return folder


def unwritable_message(exc: OSError) -> str:
    """The one warning for a cache that cannot be written (the same text for every cache, so a
    process that meets it twice prints it once)."""
    root = os.environ.get("SLMSQL_CACHE_DIR") or "~/.cache/slmsql"
    return (
        f"cannot write the cache folder {root} ({exc.strerror or exc}); running without a cache "
        "(set SLMSQL_CACHE_DIR to a writable folder)"
    )


def file_version(db_path: str | os.PathLike[str]) -> str:
    """Size and mtime of a database file and of its `-wal`, whose commits leave the file unchanged."""
    path = Path(db_path)
    stat = path.stat()
    version = f"{stat.st_size}-{stat.st_mtime_ns}"
    with contextlib.suppress(OSError):
        wal = Path(f"{path}-wal").stat()
        version += f"-wal-{wal.st_size}-{wal.st_mtime_ns}"
    return version


def _probe_writable(folder: Path) -> None:
    fd, probe = tempfile.mkstemp(prefix=f".probe.{os.getpid()}.", suffix=".tmp", dir=folder)
    os.close(fd)
    os.unlink(probe)


_ORPHAN = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]+\.tmp$")  # .{name}.{pid}.{random}.tmp


def remove_orphans(folder: Path) -> None:
    """Delete the temporary files of processes that died before renaming them into place."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            match = _ORPHAN.match(entry.name)
            if match and not process_alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    entry.unlink()


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (a reused id counts as alive: nothing is removed then)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def private_temp_dir(prefix: str) -> Path:
    """A new folder `{prefix}-{pid}-…` in the temporary folder, after removing those of dead processes."""
    root = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for folder in root.glob(f"{prefix}-*-*"):
            pid = folder.name.removeprefix(f"{prefix}-").split("-", 1)[0]
            if pid.isdigit() and not process_alive(int(pid)) and folder.stat().st_uid == os.getuid():
                shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-"))


_warned: set[str] = set()


def warn(message: str) -> None:
    """One `warning:` line on stderr, once per message per process."""
    if message not in _warned:
        _warned.add(message)
        print(f"warning: {message}", file=sys.stderr)


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success rename it onto `target`, else delete it.

    The temporary name carries this process's id, so a later run can tell an orphan from a
    file another live process is still writing.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(target: str | os.PathLike[str], data: Any) -> None:
    write_text_atomic(target, json.dumps(data, ensure_ascii=False))


def read_json(path: str | os.PathLike[str]) -> Any | None:
    """The JSON in `path`, or None when it is missing or unreadable (a cache miss, not an error)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
