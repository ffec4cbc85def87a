"""The databases a server may touch: only those named on its command line, looked up by name.

Requests carry a name, never a path, so a client cannot reach any other file (no traversal: the
name is a key in a dict, not a piece of a path).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from slmsql_cli.database import Database, open_database
from slmsql_cli.errors import UserError

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


def parse_spec(spec: str) -> tuple[str, Path]:
    """`name=path` or `path` (named after the file's stem)."""
    name, sep, path = spec.partition("=")
    if not sep:
        name, path = Path(spec).stem, spec
    if not _NAME.fullmatch(name):
        raise UserError(
            f"--db {spec}: '{name}' cannot be a database name",
            "use letters, digits, '_', '.' or '-' (at most 64), e.g. --db sales=shop.sqlite",
        )
    return name, Path(path)


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
            name, path = parse_spec(spec)
            if any(e.name == name for e in entries):
                raise UserError(
                    f"two databases are named '{name}'",
                    "name them apart: --db a=one.sqlite --db b=two.sqlite",
                )
            entries.append(Entry(name, open_database(path)))
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
