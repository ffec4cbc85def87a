"""The databases a server may touch: only those named on its command line, looked up by name.

Requests carry a name, never a path, so a client cannot reach any other file (no traversal: the
name is a key in a dict, not a piece of a path).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from slmsql_cli.database import Database, open_database
from slmsql_cli.errors import UserError
from slmsql_cli.targets.postgres_target import is_url

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class UnknownDatabase(UserError):
    """A request named a database the server was not started with."""


@dataclass
class Entry:
    name: str
    database: Database

    def summary(self) -> dict[str, object]:
        """What a client may know about a database: its name and tables, not where it lives."""
        return {"name": self.name, "tables": self.database.table_names()}


def parse_spec(spec: str) -> tuple[str, str]:
    """`name=db` or `db`, where `db` is anything `ask --db` takes (a file, a folder of data files,
    a postgresql:// URL), kept as text: a Path would fold a URL's `//`. Unnamed, a file or folder
    is named after its stem, a URL after its database."""
    name, sep, db = spec.partition("=")
    if not sep or "/" in name or ":" in name:  # no name: `path`, or a URL with `=` in its query
        name, db = _default_name(spec), spec
    if not _NAME.fullmatch(name):
        raise UserError(
            f"--db {spec}: '{name}' cannot be a database name",
            "use letters, digits, '_', '.' or '-' (at most 64), e.g. --db sales=shop.sqlite",
        )
    return name, db


def _default_name(db: str) -> str:
    if is_url(db):
        return urlsplit(db).path.strip("/").rsplit("/", 1)[-1] or "postgres"
    return Path(db).stem


class Registry:
    """Name → opened Database, in command-line order."""

    def __init__(self, entries: list[Entry]) -> None:
        self._entries = {e.name: e for e in entries}

    @classmethod
    def open(cls, specs: list[str]) -> Registry:
        """Open every `--db` (schema and samples read now, so a bad file fails at start)."""
        if not specs:
            raise UserError("name at least one database to serve", "e.g. --db sales=shop.sqlite")
        entries: list[Entry] = []
        for spec in specs:
            name, db = parse_spec(spec)
            if any(e.name == name for e in entries):
                raise UserError(
                    f"two databases are named '{name}'",
                    "name them apart: --db a=one.sqlite --db b=two.sqlite",
                )
            entries.append(Entry(name, open_database(db)))
        return cls(entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def get(self, name: str | None) -> Entry:
        """The named database; with no name, the only one (or a UserError listing the names)."""
        if name is None or name == "":
            if len(self._entries) == 1:
                return next(iter(self._entries.values()))
            raise UserError("name the database to ask about", f"one of: {', '.join(self._entries)}")
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownDatabase(
                f"no database named '{name}' on this server", f"one of: {', '.join(self._entries)}"
            )
        return entry
