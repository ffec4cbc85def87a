"""Where slmsql keeps what it derives from a database (schema, sample values, value index).

Each database file gets its own folder, keyed by its resolved path and, one level down, by its
size and modification time: editing the file makes a fresh folder (so nothing stale is ever
read) and the folders of older versions of the same file are removed (so the cache does not grow).
Writes go to a temporary file that is renamed into place, so a reader never sees half a file,
even with two slmsql processes working on the same database.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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


def db_cache_dir(db_path: str | os.PathLike[str]) -> Path:
    """The cache folder for the current version (size, mtime) of a database file."""
    resolved = Path(db_path).resolve()
    stat = resolved.stat()
    by_path = cache_dir() / "db" / f"{resolved.stem[:40]}-{short_hash(str(resolved))}"
    version = f"{stat.st_size}-{stat.st_mtime_ns}"
    folder = by_path / short_hash(version)
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        for old in by_path.iterdir():  # earlier versions of this file are never read again
            if old != folder and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    return folder


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success rename it onto `target`, else delete it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
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
