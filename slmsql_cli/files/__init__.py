"""Data files as a SQLite database: `--db sales.csv`, `--db orders.csv --db customers.parquet`, or
`--db exports/` (the data files directly inside a folder, in name order).

The files become one SQLite file with one table per file (per sheet for an Excel workbook with
several), written once into slmsql's cache and reused while the files are unchanged (same paths,
sizes and modification times; a file added to a folder counts as a change). Everything after that
is the ordinary SQLite path: `database.open_database` receives the cached file from `as_sqlite`.

Formats, by file name: .csv, .tsv/.tab, .json, .jsonl/.ndjson (text.py, no extra), .parquet
(parquet.py) and .xlsx/.xlsm (excel.py), the last two with the `files` extra. A table is named
after its file (or sheet) as written, and two sources that would make the same table are refused
(names.py). Column types are inferred from every value (writer.py). An import of more than
PROGRESS_MIN_BYTES shows a progress bar on stderr.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from slmsql_cli.cache import (
    atomic_path,
    private_temp_dir,
    read_json,
    short_hash,
    versioned_dir,
    write_json_atomic,
)
from slmsql_cli.errors import UserError
from slmsql_cli.files.names import TableNames, clean

if TYPE_CHECKING:
    from slmsql_cli.files.rows import Advance, TableData

_FORMAT = 1  # the layout of imported databases; a new one re-imports everything
PROGRESS_MIN_BYTES = 32 * 1024 * 1024
KINDS = "CSV, TSV, JSON, JSON Lines, Parquet or Excel (.xlsx)"

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
    paths = [p.expanduser() for p in paths]
    if not paths:
        raise UserError("no --db given", "pass a SQLite file, or data files, with --db")
    if len(paths) == 1 and not (paths[0].is_dir() or _is_data_file(paths[0])):
        return paths[0]
    files = _data_files(paths)
    label = clean(paths[0].name if paths[0].is_dir() else paths[0].stem) or "data"
    if len(paths) > 1:
        label += f"+{len(paths) - 1}"
    return _cached_import(files, label)


def _is_data_file(path: Path) -> bool:
    return path.suffix.lower() in READERS


def _data_files(paths: list[Path]) -> list[Path]:
    """The data files that the --db paths name, resolved, each once, folders expanded."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if _is_data_file(p) and p.is_file() and not p.name.startswith(".")
            )
            if not found:
                sqlite = any(p.suffix.lower() in (".sqlite", ".db", ".sqlite3") for p in path.iterdir())
                raise UserError(
                    f"{path} holds no data files ({KINDS})",
                    "pass the SQLite file inside it with --db"
                    if sqlite
                    else "pass a SQLite file or data files with --db",
                )
            files.extend(found)
        elif not _is_data_file(path):
            raise UserError(
                f"{path} is not a data file ({KINDS})",
                "--db takes one SQLite database, or any number of data files and folders of them",
            )
        elif not path.is_file():
            raise UserError(f"file not found: {path}", "pass existing data files with --db")
        else:
            files.append(path)
    return list(dict.fromkeys(p.resolve() for p in files))


_IMPORTED: dict[str, Path] = {}  # without a writable cache: this process's imports, by identity


def _cached_import(files: list[Path], label: str) -> Path:
    identity = [[str(p), (st := p.stat()).st_size, st.st_mtime_ns] for p in files]
    folder = versioned_dir(
        "files", f"{label[:40]}-{short_hash('|'.join(map(str, files)))}", f"format-{_FORMAT}"
    )
    if folder is None:  # no cache: import into a private folder, once per process
        key = repr(identity)
        if key not in _IMPORTED:
            _IMPORTED[key] = private_temp_dir("slmsql-files") / f"{label}.sqlite"
            _import(files, _IMPORTED[key])
        return _IMPORTED[key]
    database = folder / f"{label}.sqlite"
    source = folder / "source.json"
    if database.is_file() and read_json(source) == {"files": identity}:
        return database
    with atomic_path(database) as tmp:
        tmp.unlink()
        _import(files, tmp)
    write_json_atomic(source, {"files": identity})
    return database


def _import(files: list[Path], out: Path) -> None:
    from slmsql_cli.files.writer import write_database

    sizes = [p.stat().st_size for p in files]
    with _progress(sum(sizes)) as (advance, done, status):
        table_names = TableNames()

        def tables() -> Iterator[TableData]:
            for i, path in enumerate(files):
                status(f"importing {path.name}")
                for data in _read(path, advance):
                    table_names.claim(data.name, data.source)
                    yield data
                done(sum(sizes[: i + 1]))

        write_database(out, tables(), status)


@contextmanager
def _progress(total: int) -> Iterator[tuple[Advance, Advance, Callable[[str], None]]]:
    """(advance by bytes, set bytes done, describe): a rich progress bar on stderr for large imports."""
    if total < PROGRESS_MIN_BYTES:
        yield (lambda _: None), (lambda _: None), (lambda _: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("importing", total=total)
        yield (
            lambda n: bar.advance(task, n),
            lambda n: bar.update(task, completed=n),
            # drawn at once: a phase shorter than the bar's refresh interval is still shown (the
            # progress test failed on fast machines, where a whole import fit between two frames)
            lambda text: bar.update(task, description=text, refresh=True),
        )
