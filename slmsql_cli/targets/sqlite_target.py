"""A SQLite file as a `--db` target: the guarded executor behind the same `Target` protocol.

SQLite is the models' own dialect, so a candidate runs as written (`dialect.for_target` leaves
SQLite SQL alone); the executor applies its own checks (`sqlcheck.check_sql`, the authorizer,
a read-only connection in a worker process that is killed at the deadline). Identical SQL on
an unchanged file runs once (`executor.execute_many` remembers recent results).

The target is made from a checked path (`database.check_database_file`): it never opens a
file by a name it was not given, and the name it shows (`name`) is only a label.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from slmsql_cli.cache import db_cache_dir, file_version
from slmsql_cli.errors import UserError
from slmsql_cli.schema import Schema
from slmsql_cli.targets import executor, sqlite_catalog
from slmsql_cli.targets.result import ExecResult
from slmsql_cli.values import ValueIndex


class SQLiteTarget:
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path  # resolved, checked: an existing SQLite file
        self.name = path.name
        self.cache_key = str(path)
        try:
            self.version = file_version(path)
        except OSError:  # gone: its queries say so (a UserError)
            self.version = ""
        self.views: set[str] = set()

    def schema(self) -> Schema:
        with self._reading():
            return sqlite_catalog.schema_from_sqlite(self.path)

    def samples(self, schema: Schema) -> dict[tuple[str, str], list[Any]]:
        """Two values per column by OmniSQL's own query (DISTINCT over the whole column)."""
        with self._reading():
            return sqlite_catalog.sample_values(self.path, schema)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A file SQLite cannot read (locked, damaged, encrypted) as a UserError."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            hint = (
                "another program is writing it; try again when it is done"
                if "locked" in str(exc)
                else "is the file a complete, unencrypted SQLite database?"
            )
            raise UserError(f"cannot read database {self.path}: {exc}", hint) from None

    def value_index(self, schema: Schema, folder: Path | None) -> ValueIndex:
        """The value index of the file's tables, in the file's own cache folder (`folder`, the
        live targets' schema-keyed folder, is not used: the file's version keys its folder)."""
        tables = [t.name for t in schema.tables]
        return ValueIndex.in_folder(
            db_cache_dir(self.path),
            chr(0).join(tables),
            str(self.path),
            partial(sqlite_catalog.write_value_index, self.path, tables),
        )

    def run(self, sql: str, timeout: float, max_rows: int) -> ExecResult:
        return self.run_many([sql], timeout, max_rows)[0]

    def run_many(self, sqls: Sequence[str], timeout: float, max_rows: int) -> list[ExecResult]:
        """Each statement through the executor, up to `executor.PARALLEL` at once."""
        results = executor.execute_many(self.path, sqls, timeout=timeout, max_rows=max_rows)
        return [r for r in results if r is not None]

    def prepare(self) -> None:
        """Start a query worker in the background, so that the first query need not wait for one."""
        executor.start_worker()

    def close(self) -> None:
        pass
