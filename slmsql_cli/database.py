"""A database ready for prompting: checked, its schema and sample values read once and cached.

It answers questions about the data (schema, samples, the values a question mentions, `run`);
the prompt text is written by `prompt_builder` from them.

Reading the schema and sampling two values per column touches every column, and the value index
touches every string, so both are cached in the database's cache folder (and in memory): the
second question about the same file pays nothing. The value index is built on first use, so
`--no-values` never builds it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from slmsql_cli import files, prompts, targets
from slmsql_cli.cache import db_cache_dir, file_version, read_json, short_hash, warn, write_json_atomic
from slmsql_cli.errors import UserError
from slmsql_cli.schema import Schema, schema_from_tables_json
from slmsql_cli.sqlite_header import SQLITE_HEADER
from slmsql_cli.targets import Target, pipe_copy
from slmsql_cli.targets.result import MAX_ROWS, ExecResult
from slmsql_cli.targets.sqlite_target import SQLiteTarget
from slmsql_cli.values import ValueIndex

_CACHE_VERSION = 2  # 2: views and generated columns

Values = dict[tuple[str, str], list[Any]]


@dataclass
class Database:
    """What the pipeline knows of a database, and the one way to run SQL on it (`run`, `run_many`)."""

    schema: Schema
    samples: Values  # (table, column) -> first distinct values, as OmniSQL samples them
    target: Target  # where its SQL runs: a SQLite file, a DuckDB file or a PostgreSQL server
    db_id: str = ""
    cache: Path | None = None  # a live target's cache folder (None: no cache, or a SQLite file's own)
    label: str = ""  # data files imported into a SQLite file: the names the user gave
    _index: ValueIndex | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        """How the user knows the database: its file name(s), or host:port/dbname."""
        return self.label or self.target.name

    @property
    def index(self) -> ValueIndex:
        """The question-value index, built (once per database version) on first use."""
        if self._index is None:
            self._index = self.target.value_index(self.schema, self.cache)
        return self._index

    @property
    def file(self) -> Path | None:
        """The SQLite file this database is (training reads it in other processes); None for a
        DuckDB or PostgreSQL database."""
        return self.target.path if isinstance(self.target, SQLiteTarget) else None

    def run(self, sql: str, *, timeout: float, max_rows: int = MAX_ROWS) -> ExecResult:
        """SQLite `sql`'s result on the database: checked, transpiled for a live target, run
        read-only within `timeout` seconds and cut at `max_rows` rows (`ExecResult.error` says
        why it did not run)."""
        [result] = self.run_many([sql], timeout=timeout, max_rows=max_rows)
        assert result is not None
        return result

    def run_many(
        self, sqls: Iterable[str | None], *, timeout: float, max_rows: int = MAX_ROWS
    ) -> list[ExecResult | None]:
        """`run` for each SQL (None stays None); identical SQL runs once."""
        return targets.run_many(self.target, sqls, timeout=timeout, max_rows=max_rows, schema=self.schema)

    def close(self) -> None:
        """Close the target's connection (a live database); the Database is not used after."""
        self.target.close()

    def table_names(self) -> list[str]:
        return [t.name for t in self.schema.tables]

    def relevant_values(self, question: str, evidence: str = "") -> Values:
        """Values of the database that the question (with its evidence) mentions, best first. The
        question was checked where it came in (`check_question`, at each front end)."""
        return self.index.retrieve(prompts.question_text(question, evidence))


def check_question(question: str, evidence: str = "") -> str:
    """The question, or a UserError when it is empty or not text (bytes that are not UTF-8): called
    once, where a question comes in (ask, chat, prompt, serve, eval's and training's rows)."""
    if not question or not question.strip():
        raise UserError("the question is empty", 'ask something, e.g. "How many customers are there?"')
    for what, text in (("question", question), ("evidence", evidence)):
        if not _is_utf8(text):
            raise UserError(
                f"the {what} is not valid UTF-8 text",
                "it came in another encoding: use a UTF-8 locale (e.g. LANG=C.UTF-8) or convert it with iconv -t UTF-8",
            )
    return question


def _is_utf8(text: str) -> bool:
    # Python turns undecodable argv and stdin bytes into lone surrogates (PEP 383).
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_MEMO: dict[tuple[Any, ...], Database] = {}


def open_database(
    path: str | Path | Sequence[str | Path], tables_json: str | Path | None = None, db_id: str | None = None
) -> Database:
    """Check a database and load its schema (from the database, or from a Spider/BIRD tables.json).

    `path` is a SQLite file, a DuckDB file, or a postgresql:// URL (pass URLs as str: a Path
    folds their `//`); or data files (CSV, JSON, Parquet, Excel…) or folders of them, one or
    several, imported into a cached SQLite file first (`files.as_sqlite`).
    """
    specs = [path] if isinstance(path, (str, Path)) else list(path)
    targets_named = [t for t in (open_target(spec) for spec in specs) if t is not None]
    if targets_named:
        if len(specs) > 1:
            raise UserError(
                "a DuckDB file or a PostgreSQL URL must be the only --db",
                "several --db are for data files (CSV, Parquet, ...) that become one SQLite database",
            )
        return _load_live(targets_named[0], tables_json, db_id)
    imported = files.as_sqlite(path)
    db_path = check_database_file(imported)
    if [Path(spec) for spec in specs] != [imported]:  # data files: named as the user named them
        return replace(
            _open_sqlite(db_path, tables_json, db_id), label=", ".join(Path(s).name for s in specs)
        )
    return _open_sqlite(db_path, tables_json, db_id)


def _open_sqlite(db_path: Path, tables_json: str | Path | None, db_id: str | None) -> Database:
    # A file name that is not UTF-8 (lone surrogates in Python) still names a readable file;
    # only the id written into the schema and its cache must be text.
    db_id = db_id or os.fsencode(db_path.stem).decode("utf-8", "replace")
    source = "sqlite"
    if tables_json is not None:
        tj = Path(tables_json).expanduser()
        if not tj.is_file():
            raise UserError(
                f"{tables_json} is a folder, not a tables.json"
                if tj.is_dir()
                else f"tables file not found: {tables_json}",
                "pass the Spider/BIRD tables.json with --tables",
            )
        tj = tj.resolve()
        source = f"{tj}|{tj.stat().st_mtime_ns}|{db_id}"
    key = (str(db_path), file_version(db_path), source)
    if key not in _MEMO:
        _MEMO[key] = _load(db_path, source, tables_json, db_id)
    return _MEMO[key]


def open_target(spec: str | Path) -> Target | None:
    """The live target `spec` names (a postgresql:// URL, a DuckDB file), or None for SQLite."""
    from slmsql_cli.targets.duckdb_target import DuckDBTarget, is_duckdb_file
    from slmsql_cli.targets.postgres_target import PostgresTarget, is_url

    if isinstance(spec, str) and is_url(spec):
        return PostgresTarget(spec)
    file = files.expand_user(spec)
    if not file.is_file():
        return None
    if is_duckdb_file(file) or (file.suffix.lower() in (".duckdb", ".ddb") and not _has_sqlite_header(file)):
        return DuckDBTarget(file.resolve())  # a damaged .duckdb file gets DuckDB's own error
    return None


def _has_sqlite_header(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


_LIVE: dict[tuple[str, str, str], Database] = {}


def _load_live(target: Target, tables_json: str | Path | None, db_id: str | None) -> Database:
    """A live target's Database: its catalog read now (cheap), its samples cached by schema fingerprint."""
    try:
        schema = target.schema()
        if tables_json is not None:
            schema = schema_from_tables_json(tables_json, db_id or schema.db_id)
    except Exception:
        target.close()
        raise
    if db_id:
        schema.db_id = db_id
    if not schema.tables:
        target.close()
        raise UserError(f"database has no tables: {target.name}", "is this the right database (and schema)?")
    key = (target.cache_key, target.version, json.dumps(schema.to_dict(), sort_keys=True))
    if key in _LIVE:
        target.close()
        return _LIVE[key]
    folder = targets.cache_folder(target, schema)
    cache_file = folder / "samples.json" if folder else None
    cached = read_json(cache_file) if cache_file else None
    if isinstance(cached, list):
        samples = {(t, c): [_decode(v) for v in vals] for t, c, vals in cached}
    else:
        samples = target.samples(schema)
        if cache_file is not None:
            with contextlib.suppress(OSError):
                write_json_atomic(
                    cache_file, [[t, c, [_encode(v) for v in vals]] for (t, c), vals in samples.items()]
                )
    database = Database(schema, samples, target, schema.db_id, cache=folder)
    _LIVE[key] = database
    return database


def check_database_file(path: Path) -> Path:
    """The resolved path of a readable SQLite file (a pipe is copied first), or a UserError."""
    if not path.exists():
        raise UserError(f"database not found: {path}", "pass the path of a SQLite file with --db")
    if path.is_dir():
        raise UserError(
            f"{path} is a folder, not a database file", "pass the .sqlite file inside it with --db"
        )
    if pipe_copy.is_stream(path):  # a FIFO or <(process substitution): SQLite needs a real file
        return pipe_copy.copy_stream(path, SQLITE_HEADER)
    try:
        with path.open("rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise UserError(f"cannot read database {path}: {exc.strerror or exc}") from None
    if header and header != SQLITE_HEADER:  # a 0-byte file is an empty SQLite database
        raise UserError(f"{path} is not a SQLite database", "slmsql reads SQLite 3 files (.sqlite, .db)")
    return path.resolve()


def _load(db_path: Path, source: str, tables_json: str | Path | None, db_id: str) -> Database:
    folder = db_cache_dir(db_path)
    cache_file = folder / f"schema-{short_hash(source)}.json" if folder else None
    if cache_file is not None and cache_file.exists():
        cached = _from_cache(cache_file, db_path, db_id)
        if cached is not None:
            return cached

    target = SQLiteTarget(db_path)
    schema = schema_from_tables_json(tables_json, db_id) if tables_json else target.schema()
    schema.db_id = db_id
    if not schema.tables:
        raise UserError(f"database has no tables: {db_path}", "is this the right file?")
    samples = target.samples(schema)
    if cache_file is not None:
        data = {
            "version": _CACHE_VERSION,
            "schema": schema.to_dict(),
            "samples": [[t, c, [_encode(v) for v in vals]] for (t, c), vals in samples.items()],
        }
        try:
            write_json_atomic(cache_file, data)
        except OSError as exc:
            warn(
                f"cannot write the schema cache {cache_file} ({exc.strerror or exc}); it is rebuilt next time"
            )
    return Database(schema, samples, target, db_id)


def _from_cache(cache_file: Path, db_path: Path, db_id: str) -> Database | None:
    """The cached schema and samples; None (a miss) for an older version or a damaged file (one warning)."""
    cached = read_json(cache_file)
    if isinstance(cached, dict) and cached.get("version") != _CACHE_VERSION:
        return None  # written by another slmsql version: silently replaced
    try:
        if not isinstance(cached, dict):
            raise ValueError("not a JSON object")
        schema = Schema.from_dict(cached["schema"])
        samples = {(t, c): [_decode(v) for v in vals] for t, c, vals in cached["samples"]}
        if not schema.tables:
            raise ValueError("no tables")  # never written: a database without tables is refused
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        warn(f"the schema cache of {db_path} was damaged ({type(exc).__name__}: {exc}); rebuilt it")
        return None
    return Database(schema, samples, SQLiteTarget(db_path), db_id)


# JSON has no bytes: BLOB samples are stored tagged and restored, so the prompt is the same either way.
def _encode(value: Any) -> Any:
    return {"$bytes": value.hex()} if isinstance(value, bytes) else value


def _decode(value: Any) -> Any:
    return bytes.fromhex(value["$bytes"]) if isinstance(value, dict) else value
