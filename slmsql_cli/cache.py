"""Where slmsql keeps what it derives from a database (schema, sample values, value index).

Each database file gets its own folder, keyed by its resolved path and, one level down, by its
size and modification time: editing the file makes a fresh folder (so nothing stale is ever
read) and the folders of older versions of the same file are removed (so the cache does not grow).
Writes go to a temporary file that is renamed into place, so a reader never sees half a file,
even with two slmsql processes working on the same database; the temporary files of a killed
process are removed by the next run. A cache root that cannot be written means working without
a cache (one warning), and a damaged cache file is rebuilt (one warning, by its reader).

Private: what the cache holds is derived from the user's data (an imported CSV is a readable
copy of it), so every folder under the root is created 0700 and every file 0600, whatever the
umask. A cache made looser by an older slmsql is tightened on first use, with one warning.

Concurrency: a file is published atomically (written to a temporary file, fsync'ed, renamed into
place, the folder fsync'ed). A process using a version folder holds a shared lock on its
`.in-use` file for as long as it runs; an older version is removed only by a process that can
take that lock exclusively, so a folder another live process uses is never deleted. `locked`
lets processes take turns at building the same thing (an import).
"""

from __future__ import annotations

import contextlib
import fcntl
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

_PRIVATE_MARK = ".private-v1"  # in the root once every entry under it is 0600 / 0700
_private_roots: set[Path] = set()


def cache_path() -> Path:
    """Where slmsql's cache root is: $SLMSQL_CACHE_DIR, else ~/.cache/slmsql. Nothing is created:
    for code that only looks (`slmsql models`, a reader of the saved answers)."""
    return Path(os.environ.get("SLMSQL_CACHE_DIR") or Path.home() / ".cache" / "slmsql").expanduser()


def cache_dir() -> Path:
    """slmsql's cache root (`cache_path`), created 0700 on demand and made private once (see
    `make_private`). OSError when it cannot be made: callers go on without it (`unwritable_message`)."""
    root = cache_path()
    if root not in _private_roots:
        private_mkdir(root)
        make_private(root)
        _private_roots.add(root)
    return root


def private_mkdir(folder: Path) -> None:
    """`folder` and its missing parents, created 0700 whatever the umask (existing parents untouched)."""
    missing = []
    path = folder
    while not path.exists():
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
            os.chmod(path, 0o700)


def make_private(root: Path) -> None:
    """Tighten every folder under `root` to 0700 and every file to 0600 (one warning when any was
    looser), once: a mark file records that the cache is private."""
    if (root / _PRIVATE_MARK).exists() and _mode(root) == 0o700:
        return
    loose = 0
    for folder, dirs, names in os.walk(root):
        for path, wanted in [(folder, 0o700), *((os.path.join(folder, n), 0o600) for n in names)]:
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                if not os.path.islink(path) and st.st_uid == os.getuid() and st.st_mode & 0o777 & ~wanted:
                    os.chmod(path, (st.st_mode & 0o777) & wanted if wanted == 0o600 else 0o700)
                    loose += 1
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
    if loose:
        warn(f"made the cache folder {root} private: {loose} file(s) and folder(s) others could read")
    with contextlib.suppress(OSError):
        fd = os.open(root / _PRIVATE_MARK, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)


def _mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return -1


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
        _use(folder)
        for old in by_name.iterdir():  # earlier versions are never read again
            if old != folder and old.is_dir() and not old.name.startswith("."):
                with contextlib.suppress(KeyError, OSError):
                    os.close(_in_use.pop(old))  # this process has moved on to the new version
                _remove_unused(old)
        _probe_writable(folder)
    except OSError as exc:
        warn(unwritable_message(exc))
        return None
    remove_orphans(folder)
    return folder


_IN_USE = ".in-use"
_in_use: dict[Path, int] = {}  # version folders this process uses → the fd holding a shared lock
MAX_HELD = 256  # locks held at once (an eval over many databases): the oldest is let go beyond it


def _use(folder: Path) -> None:
    """Create `folder` if needed and hold a shared lock on it for the life of this process."""
    if folder in _in_use:
        return
    for _ in range(10):
        private_mkdir(folder)
        try:
            fd = os.open(folder / _IN_USE, os.O_RDONLY | os.O_CREAT, 0o600)
        except FileNotFoundError:  # removed by another process just now
            continue
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            if os.stat(folder / _IN_USE).st_ino == os.fstat(fd).st_ino:
                _in_use[folder] = fd  # still the live folder's lock: nobody can remove it now
                if len(_in_use) > MAX_HELD:
                    with contextlib.suppress(OSError):
                        os.close(_in_use.pop(next(iter(_in_use))))
                return
        except FileNotFoundError:
            pass
        os.close(fd)  # removed between open and lock: make it again
    raise OSError(f"{folder} keeps being removed")


def _remove_unused(old: Path) -> None:
    """Remove an old version folder unless a live process holds its lock (then it stays)."""
    try:
        fd = os.open(old / _IN_USE, os.O_RDONLY | os.O_CREAT, 0o600)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return  # in use
    try:
        trash = old.with_name(f".removed-{old.name}-{os.getpid()}")
        os.rename(old, trash)  # whoever opens old/.in-use from now on finds it gone and recreates it
        shutil.rmtree(trash, ignore_errors=True)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (a file, created 0600) for the `with` block: processes
    that build the same thing take turns."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


_unwritable_reason: list[str] = []  # the first fault's words, kept for every later one


def unwritable_message(exc: OSError) -> str:
    """The one warning for a cache that cannot be written, saying what is lost. The same text for
    every cache and every later fault (the first one's reason), so a process prints it once
    however many parts of it meet the fault (`warn` drops repeats)."""
    if not _unwritable_reason:
        _unwritable_reason.append(str(exc.strerror or exc))
    root = os.environ.get("SLMSQL_CACHE_DIR") or "~/.cache/slmsql"
    return (
        f"cannot write the cache folder {root} ({_unwritable_reason[0]}); running without a cache: "
        "schemas, value indexes and imported files are rebuilt (in a temporary folder) on every run, "
        "the prompt cache is off and --save is refused (set SLMSQL_CACHE_DIR to a writable folder)"
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
    private_mkdir(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync(tmp_path, private=True)
        os.replace(tmp_path, target)
        _fsync(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _fsync(path: Path, private: bool = False) -> None:
    """Flush a file (made 0600 when `private`: whatever wrote it may have replaced mkstemp's
    file) or a folder's entries to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if private:
            os.fchmod(fd, 0o600)
        with contextlib.suppress(OSError):  # some file systems cannot sync a folder
            os.fsync(fd)
    finally:
        os.close(fd)


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
