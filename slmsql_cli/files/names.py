"""Table and column names for imported data: kept as the file wrote them, made unique.

A name keeps its spelling, case, spaces and punctuation (the prompt quotes it where SQL needs
it); only surrounding whitespace is dropped and inner runs of whitespace (a wrapped Excel header)
become one space. An empty header cell becomes `column_N` (N its 1-based position). SQLite names
are case-insensitive, so a column whose name repeats one before it, in any case, gets `_2`, `_3`,
… (the first `_N` not taken). Table names are never renamed: two sources that would make the
same table are refused, naming both.
"""

from __future__ import annotations

import re
from typing import Any

from slmsql_cli.errors import UserError

_SPACES = re.compile(r"\s+")


def clean(raw: Any) -> str:
    """A header cell or file stem as a name: text, trimmed, inner whitespace runs as one space, NUL
    characters (which no SQL text can hold) dropped."""
    text = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
    text = text.replace("\x00", "")
    return _SPACES.sub(" ", text).strip()


class ColumnNames:
    """A table's column names in order; `add` returns the name a new header got."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._taken: set[str] = set()

    def add(self, raw: Any) -> str:
        base = clean(raw) or f"column_{len(self.names) + 1}"
        name, n = base, 1
        while name.lower() in self._taken:
            n += 1
            name = f"{base}_{n}"
        self.names.append(name)
        self._taken.add(name.lower())
        return name


class TableNames:
    """The tables made so far, to refuse a second source that would make the same one."""

    def __init__(self) -> None:
        self._sources: dict[str, str] = {}

    def claim(self, name: str, source: str) -> None:
        if not name:
            raise UserError(f"{source} has no name to make a table from", "rename it")
        if name.lower().startswith("sqlite_"):
            raise UserError(
                f"{source} would make a table named {name!r}, a name SQLite reserves",
                "rename it so that it does not start with sqlite_",
            )
        earlier = self._sources.get(name.lower())
        if earlier is not None:
            raise UserError(
                f"{earlier} and {source} would both become the table {name!r}",
                "rename one of them (table names ignore case), or pass them in separate runs",
            )
        self._sources[name.lower()] = source
