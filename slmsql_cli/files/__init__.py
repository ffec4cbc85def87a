"""Data files as a SQLite database: `--db sales.csv`, `--db orders.csv --db customers.parquet`, or
`--db exports/` (the data files directly inside a folder, in name order).

The files become one SQLite file with one table per file (per sheet for an Excel workbook with
several), written once into slmsql's cache and reused while the files are unchanged (same paths,
sizes and modification times; a file added to a folder counts as a change). Everything after that
is the ordinary SQLite path: `database.open_database` receives the cached file from `as_sqlite`.
A folder's import says on stderr what it took (file → table, rows) and what it skipped and why:
only regular data files directly inside it are read, a link only to a file inside it.

Formats, by file name: .csv, .tsv/.tab, .json, .jsonl/.ndjson (text.py, no extra), .parquet
(parquet.py) and .xlsx/.xlsm (excel.py), the last two with the `files` extra. A table is named
after its file (or sheet) as written, and two sources that would make the same table are refused
(names.py). Column types are inferred from every value (writer.py). An import of more than
PROGRESS_MIN_BYTES shows a progress bar on stderr.

A file is read through symbolic links: the link's target's suffix decides its format. An import
runs in a worker process with a time and memory budget (`BUDGET`: `--import-timeout`,
SLMSQL_IMPORT_MEMORY_MB), killed when it runs past either, so no file can exhaust the machine;
the readers also refuse what SQLite cannot hold (column count, cell size) with one clear line.
The bytes it writes are capped while they are written (`disk_limit`, SLMSQL_IMPORT_DISK_MB: a
small Parquet or Excel file can expand a thousandfold), and its staging file is removed by this
process whatever happens to the worker (a killed run's are swept by the next import).
Two processes importing the same files at once take turns (a lock in the cache folder): the
second finds the first one's import and reuses it.

A cached import is used only while its record (`source.json`) matches both the files (paths,
sizes, modification times and a digest of each file's first and last MB) and the import itself
(a regular file, not a link, whose header is whole and whose size, modification time and first
64 KB are those it was written with); otherwise it is imported again, with one warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmsql_cli import sqlite_header
from slmsql_cli.cache import (
    atomic_path,
    locked,
    private_temp_dir,
    read_json,
    remove_orphans,
    short_hash,
    versioned_dir,
    warn,
    write_json_atomic,
)
from slmsql_cli.errors import UserError
from slmsql_cli.files.names import TableNames, clean

if TYPE_CHECKING:
    from slmsql_cli.files.rows import Advance, TableData

_FORMAT = 1  # the layout of imported databases; a new one re-imports everything
PROGRESS_MIN_BYTES = 32 * 1024 * 1024
KINDS = "CSV, TSV, JSON, JSON Lines, Parquet or Excel (.xlsx)"


@dataclass
class Budget:
    """What one import may take: seconds of wall time, bytes of address space in its worker."""

    timeout: float = 600.0
    memory: int = int(os.environ.get("SLMSQL_IMPORT_MEMORY_MB") or 4096) * 1024**2


BUDGET = Budget()  # set once by the CLI (`--import-timeout`)

DISK_FACTOR = 10  # the default disk cap: this many times the input files' size,
DISK_MIN_MB = 1024  # at least this (a CSV takes about 2.2 times its size: staging and output),
DISK_MAX_MB = 10 * 1024  # and at most this
_MB = 1024**2


@dataclass(frozen=True)
class DiskLimit:
    """The bytes one import may write (its output and staging files together), and how the cap
    was set (said in the error, so the person knows what to change)."""

    max_bytes: int
    how: str


def disk_limit(input_bytes: int) -> DiskLimit:
    """SLMSQL_IMPORT_DISK_MB, or by default DISK_FACTOR times the input, within DISK_MIN_MB and
    DISK_MAX_MB: a file whose import would pass it is stopped with one line, not left to fill
    the disk."""
    raw = os.environ.get("SLMSQL_IMPORT_DISK_MB", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) <= 0:
            raise UserError(
                f"SLMSQL_IMPORT_DISK_MB={raw} is not a positive whole number of megabytes",
                "set it to the megabytes an import may write (e.g. 20000), or unset it for the default",
            )
        return DiskLimit(int(raw) * _MB, f"SLMSQL_IMPORT_DISK_MB={int(raw)}")
    cap = min(max(DISK_FACTOR * input_bytes, DISK_MIN_MB * _MB), DISK_MAX_MB * _MB)
    return DiskLimit(
        cap,
        f"by default {DISK_FACTOR} times the input, at least {DISK_MIN_MB // 1024} GB and at most "
        f"{DISK_MAX_MB // 1024} GB; SLMSQL_IMPORT_DISK_MB sets it",
    )


# suffix → (module of this package, reader): imported when a file of that kind is read, so that
# opening a SQLite file pays for none of them
READERS: dict[str, tuple[str, str]] = {
    ".csv": ("text", "read_csv"),
    ".tsv": ("text", "read_tsv"),
    ".tab": ("text", "read_tsv"),
    ".json": ("text", "read_json"),
    ".jsonl": ("text", "read_json_lines"),
    ".ndjson": ("text", "read_json_lines"),
    ".parquet": ("parquet", "read_parquet"),
    ".xlsx": ("excel", "read_workbook"),
    ".xlsm": ("excel", "read_workbook"),
}


def _read(path: Path, advance: Advance) -> list[TableData]:
    """The tables in one data file (a workbook has one per sheet)."""
    module, function = READERS[path.suffix.lower()]
    reader = getattr(importlib.import_module(f"slmsql_cli.files.{module}"), function)
    tables = reader(path, clean(path.stem), advance)
    return tables if isinstance(tables, list) else [tables]


def as_sqlite(db: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> Path:
    """The SQLite file that `--db` means: the path itself when it is one path that is not data
    files (a SQLite file; opening it reports anything wrong), else the data files' cached import."""
    paths = [Path(db)] if isinstance(db, str | os.PathLike) else [Path(p) for p in db]
    paths = [expand_user(p) for p in paths]
    if not paths:
        raise UserError("no --db given", "pass a SQLite file, or data files, with --db")
    if len(paths) == 1 and not (paths[0].is_dir() or _is_data_file(_target(paths[0]))):
        _refuse_data_link(paths[0])
        return paths[0]
    files, skipped = _data_files(paths)
    label = clean(paths[0].name if paths[0].is_dir() else paths[0].stem) or "data"
    if len(paths) > 1:
        label += f"+{len(paths) - 1}"
    folders = [p for p in paths if p.is_dir()]
    return _cached_import(files, label, _Listing(folders, skipped) if folders else None)


# suffix → (the extra's package, what it reads): checked here, before the import worker starts
EXTRAS = {
    ".parquet": ("pyarrow", "Parquet files"),
    ".xlsx": ("openpyxl", "Excel files"),
    ".xlsm": ("openpyxl", "Excel files"),
}


def _require_extras(files: list[Path]) -> None:
    from slmsql_cli.files.extras import require

    for module, what in {EXTRAS[p.suffix.lower()] for p in files if p.suffix.lower() in EXTRAS}:
        require(module, what)


def expand_user(path: str | os.PathLike[str]) -> Path:
    """`Path(path).expanduser()`, with `~nosuchuser/…` a UserError rather than a RuntimeError."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise UserError(
            f"cannot find the home folder that {str(path).split('/', 1)[0]} names",
            "write the path out in full, or ./~name for a file whose name starts with ~",
        ) from None


def _is_data_file(path: Path) -> bool:
    return path.suffix.lower() in READERS


_DATABASE_SUFFIXES = (".sqlite", ".sqlite3", ".db", ".duckdb", ".ddb")


def _refuse_data_link(path: Path) -> None:
    """A link named like a data file (`x.csv`) whose target is neither data nor a database
    (`/etc/passwd`): say so, rather than reading the target as SQLite."""
    target = _target(path)
    if target != path and _is_data_file(path) and target.suffix.lower() not in _DATABASE_SUFFIXES:
        raise UserError(
            f"{path} is a link to {target}, which is not a data file ({KINDS}): the target's suffix decides",
            "link to the data file itself, or pass it with --db",
        )


def _target(path: Path) -> Path:
    """What a path names once symbolic links are followed (itself when it is none)."""
    try:
        return path.resolve() if path.is_symlink() else path
    except (OSError, RuntimeError):  # a loop of links: reported when the file is opened
        return path


def _data_files(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The data files that the --db paths name, resolved, each once, folders expanded; and what
    the folders held that was skipped ("name: why")."""
    files: list[Path] = []
    skipped: list[str] = []
    for path in paths:
        if path.is_dir():
            found, passed = _folder_files(path)
            if not found:
                databases = [name for name in passed if name.endswith(_A_DATABASE)]
                raise UserError(
                    f"{path} holds no data files ({KINDS})",
                    "pass the database inside it with --db"
                    if databases
                    else "pass a SQLite file or data files with --db",
                )
            files.extend(found)
            skipped.extend(passed)
        elif not _is_data_file(target := _target(path)):
            linked = f" (a link to {target})" if target != path else ""
            raise UserError(
                f"{path}{linked} is not a data file ({KINDS})",
                "--db takes one SQLite database, or any number of data files and folders of them",
            )
        elif not path.is_file():
            raise UserError(f"file not found: {path}", "pass existing data files with --db")
        else:
            files.append(path)
    resolved = list(dict.fromkeys(p.resolve() for p in files))
    for path in resolved:
        _check_readable(path)
    return resolved, skipped


_A_DATABASE = ": a database; pass it on its own with --db"


def _folder_files(folder: Path) -> tuple[list[Path], list[str]]:
    """The data files directly inside `folder`, in name order, and the other entries with why
    each was skipped. Hidden files are passed over in silence. A link is followed only to a file
    inside the folder (a link out of it, or to /proc, is not data the folder holds), and only a
    regular file is read (not a pipe, a socket or a device)."""
    inside = folder.resolve()
    found: list[Path] = []
    skipped: list[str] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        why = None
        try:
            target = entry.resolve(strict=True)
            mode = target.stat().st_mode
        except (OSError, RuntimeError):
            why = "a broken link" if entry.is_symlink() else "cannot be read"
        else:
            if entry.is_symlink() and not target.is_relative_to(inside):
                why = f"a link out of the folder (to {target}); pass the file itself with --db"
            elif stat.S_ISDIR(mode):
                why = "a folder (only the files directly inside are read)"
            elif not stat.S_ISREG(mode):
                why = "not a regular file"
            elif target.suffix.lower() in _DATABASE_SUFFIXES:
                why = _A_DATABASE.removeprefix(": ")
            elif not _is_data_file(target):
                why = f"not a data file ({KINDS})"
        if why is None:
            found.append(entry)
        else:
            skipped.append(f"{entry.name}: {why}")
    return found, skipped


def _check_readable(path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot read {path}: {exc.strerror or exc}", "check the file's permissions"
        ) from None


Made = tuple[str, str, int]  # an imported table: (name, source: the file and a workbook's sheet, rows)


@dataclass
class _Listing:
    """What `--db FOLDER` took and skipped, told on stderr when the folder is imported (so a
    database or a stray file beside the data is never passed over in silence)."""

    folders: list[Path]
    skipped: list[str]  # "name: why"

    def tell(self, files: list[Path], made: list[Made]) -> None:
        where = ", ".join(f"{f}{os.sep}" for f in self.folders)
        lines = [f"imported {where} ({len(made)} table(s), reused until a file changes):"]
        for table, source, rows in made:
            lines.append(
                f"  {_shown(source, files)} → table {table} ({rows:,} row{'' if rows == 1 else 's'})"
            )
        lines += [f"  skipped {line}" for line in self.skipped]
        print("\n".join(lines), file=sys.stderr)


def _shown(source: str, files: list[Path]) -> str:
    """A table's source as the person knows it: the file's name (and sheet), not its full path."""
    for path in files:
        if source == str(path) or source.startswith(f"{path} "):
            return path.name + source[len(str(path)) :]
    return source


_IMPORTED: dict[str, Path] = {}  # without a writable cache: this process's imports, by identity
_DIGEST_BYTES = 1024 * 1024  # a data file's digest covers its first and last MB
_HEAD_BYTES = 64 * 1024  # an import's fingerprint covers its header and first page(s)


def _identity(files: list[Path]) -> list[list[Any]]:
    """What the cached import was made from: each file's path, size, modification time and a
    digest of its first and last MB (an edit that keeps the size and time is still seen; a whole
    digest would read the file on every run: 0.1 s per 100 MB, against 15 ms for these two MB)."""
    found = []
    for path in files:
        st = path.stat()
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            digest.update(fh.read(_DIGEST_BYTES))
            if st.st_size > 2 * _DIGEST_BYTES:
                fh.seek(-_DIGEST_BYTES, os.SEEK_END)
            digest.update(fh.read(_DIGEST_BYTES))
        found.append([str(path), st.st_size, st.st_mtime_ns, digest.hexdigest()])
    return found


def _fingerprint(database: Path) -> dict[str, Any]:
    """What an import is, recorded when it is written: size, modification time, first 64 KB."""
    st = database.stat()
    with database.open("rb") as fh:
        head = hashlib.sha256(fh.read(_HEAD_BYTES)).hexdigest()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head": head}


def _unusable(database: Path, recorded: Any) -> str | None:
    """Why the cached import cannot be used as it stands (None: it can)."""
    try:
        st = os.lstat(database)
    except FileNotFoundError:
        return "was removed"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISLNK(st.st_mode):
        return "was replaced by a link"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    damage = sqlite_header.damage(database)
    if damage is not None:
        return f"was damaged ({damage})"
    try:
        same = _fingerprint(database) == recorded
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None if same else "was changed or replaced after it was written"


def _sweep(root: Path) -> None:
    """Remove the staging and output files of imports whose process died (a kill -9, a crash),
    in every import folder: a killed import's gigabytes do not wait for the same files' next run."""
    with contextlib.suppress(OSError):
        for folder in root.glob("*/*"):
            if folder.is_dir() and not folder.is_symlink():
                remove_orphans(folder)


def _cached_import(files: list[Path], label: str, listing: _Listing | None = None) -> Path:
    identity = _identity(files)
    folder = versioned_dir(
        "files", f"{label[:40]}-{short_hash('|'.join(map(str, files)))}", f"format-{_FORMAT}"
    )
    if folder is None:  # no cache: import into a private folder, once per process
        key = repr(identity)
        if key not in _IMPORTED:
            database = private_temp_dir("slmsql-files") / f"{label}.sqlite"
            made = _import(files, database)
            _IMPORTED[key] = database
            if listing is not None:
                listing.tell(files, made)
        return _IMPORTED[key]
    _sweep(folder.parents[1])
    database = folder / f"{label}.sqlite"
    source = folder / "source.json"
    with locked(folder / ".import.lock"):  # another process importing the same files: wait for it
        recorded = read_json(source) if not source.is_symlink() else None
        if isinstance(recorded, dict) and recorded.get("files") == identity:
            why = _unusable(database, recorded.get("database"))
            if why is None:
                return database
            what = files[0].name if len(files) == 1 else f"{label} ({len(files)} files)"
            warn(f"the cached import of {what} {why}; importing it again")
        for stale in (source, database):  # a link is removed, never what it points to
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        with atomic_path(database) as tmp:
            made = _import(files, tmp)
        write_json_atomic(source, {"files": identity, "database": _fingerprint(database)})
    if listing is not None:
        listing.tell(files, made)
    return database


def _import(files: list[Path], out: Path) -> list[Made]:
    """`import_files` in a worker process within BUDGET and `disk_limit` (a UserError when it
    runs past either); the progress bar of a large import is drawn here, from what the worker
    writes to a report file. The staging file is made and removed here, so that a killed worker
    leaves nothing behind; on failure `out` is removed too. The tables made (`Made`)."""
    from slmsql_cli.targets import worker

    _require_extras(files)
    what = files[0].name if len(files) == 1 else f"{len(files)} files"
    total = sum(p.stat().st_size for p in files)
    limit = disk_limit(total)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.stage.{os.getpid()}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    scratch = Path(name)
    pool = worker.WorkerPool(BUDGET.memory, preload=("slmsql_cli.files.writer",))
    try:
        if total < PROGRESS_MIN_BYTES:
            made: list[Made] = pool.call(
                import_files, files, out, None, scratch, limit, timeout=BUDGET.timeout
            )
        else:
            made = _import_with_progress(pool, files, out, total, scratch, limit)
    except worker.WorkerTimeout:
        out.unlink(missing_ok=True)
        raise UserError(
            f"importing {what} took longer than {BUDGET.timeout:g}s and was stopped",
            "pass a larger --import-timeout, or import fewer or smaller files",
        ) from None
    except worker.WorkerOutOfMemory:
        out.unlink(missing_ok=True)
        raise UserError(
            f"importing {what} needed more than {BUDGET.memory // 1024**2} MB of memory and was stopped",
            "set SLMSQL_IMPORT_MEMORY_MB higher, or split the file (a JSON array is read whole; JSON Lines streams)",
        ) from None
    except worker.WorkerDied as exc:
        out.unlink(missing_ok=True)
        raise UserError(
            f"importing {what} stopped: {exc}",
            f"it may need more than {BUDGET.memory // 1024**2} MB of memory (SLMSQL_IMPORT_MEMORY_MB)",
        ) from None
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    finally:
        pool.close()
        scratch.unlink(missing_ok=True)
    return made


def _import_with_progress(
    pool: Any, files: list[Path], out: Path, total: int, scratch: Path, limit: DiskLimit
) -> list[Made]:
    fd, report_name = tempfile.mkstemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    report = Path(report_name)
    pending = pool.submit(import_files, files, out, report, scratch, limit, timeout=BUDGET.timeout)
    outcome: list[BaseException | None] = []
    made: list[list[Made]] = []

    def wait() -> None:
        try:
            made.append(pending.result())
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    waiter = threading.Thread(target=wait, name="slmsql-import", daemon=True)
    waiter.start()
    try:
        with _progress(total, f"importing {files[0].name}") as (_advance, done, status):
            while waiter.is_alive():
                waiter.join(0.2)
                with contextlib.suppress(OSError, ValueError):
                    count, _, description = report.read_text(encoding="utf-8").partition("\t")
                    done(int(count))
                    status(description)
    except BaseException:  # Ctrl-C: stop the worker
        pending.cancel()
        raise
    finally:
        report.unlink(missing_ok=True)
    if outcome and outcome[0] is not None:
        raise outcome[0]
    return made[0]


def import_files(
    files: list[Path],
    out: Path,
    report: Path | None,
    scratch: Path | None = None,
    limit: DiskLimit | None = None,
) -> list[Made]:
    """Read every file and write the SQLite database `out` (an empty file): in the import worker.
    Progress (bytes read, what is happening) goes to the file `report`, for the parent to draw.
    `scratch`: the staging file (the parent's, which removes it); `limit`: the disk cap (None:
    none). The tables made, in order (`Made`)."""
    from slmsql_cli.files.writer import row_counts, write_database

    sizes = [p.stat().st_size for p in files]
    progress = _Report(report)
    table_names = TableNames()
    made: list[tuple[str, str]] = []  # (table, source)

    def tables() -> Iterator[TableData]:
        for i, path in enumerate(files):
            progress.status(f"importing {path.name}")
            for data in _read(path, progress.advance):
                table_names.claim(data.name, data.source)
                made.append((data.name, data.source))
                yield data
            progress.done(sum(sizes[: i + 1]))

    write_database(
        out,
        tables(),
        progress.status,
        scratch=scratch,
        max_bytes=None if limit is None else limit.max_bytes,
        cap_how="" if limit is None else limit.how,
    )
    return [
        (table, source, rows) for (table, source), rows in zip(made, row_counts(out, [t for t, _ in made]))
    ]


class _Report:
    """The import's progress, written (at most every REPORT_EVERY seconds) to a file, or nowhere."""

    REPORT_EVERY = 0.2

    def __init__(self, path: Path | None) -> None:
        self.path, self.count, self.description, self.written = path, 0, "importing", 0.0

    def advance(self, n: int) -> None:
        self.done(self.count + n)

    def done(self, n: int) -> None:
        self.count = n
        self._write()

    def status(self, description: str) -> None:
        self.description = description
        self._write(now=True)

    def _write(self, now: bool = False) -> None:
        if self.path is None or (not now and time.monotonic() - self.written < self.REPORT_EVERY):
            return
        self.written = time.monotonic()
        with contextlib.suppress(OSError):
            self.path.write_text(f"{self.count}\t{self.description}", encoding="utf-8")


@contextmanager
def _progress(
    total: int, description: str = "importing"
) -> Iterator[tuple[Advance, Advance, Callable[[str], None]]]:
    """(advance by bytes, set bytes done, describe): a rich progress bar on stderr for large imports."""
    if total < PROGRESS_MIN_BYTES:
        yield (lambda _: None), (lambda _: None), (lambda _: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield (
            lambda n: bar.advance(task, n),
            lambda n: bar.update(task, completed=n),
            # drawn at once: a phase shorter than the bar's refresh interval is still shown (the
            # progress test failed on fast machines, where a whole import fit between two frames)
            lambda text: bar.update(task, description=text, refresh=True),
        )
