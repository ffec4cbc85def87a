"""Database values the question mentions, shown first in the schema's `example: [...]` lists.

The reference (OmniSQL `process_dataset.py`, reused by CSC-SQL) indexes every distinct short
string of the database with BM25 (pyserini/Lucene, which needs Java), queries it with the
question's word 1-8-grams and the whole question (10 hits each), and keeps a hit only if at
least 85% of the value appears verbatim in the question. BM25 only proposes candidates; the
85% rule decides. Here the BM25 index is SQLite's FTS5 (porter stemming like Lucene's English
analyzer, English stop words dropped from queries), stored in the database's cache folder and
rebuilt only when the database file changes (or when the index file is found damaged).

Unlike the reference, the index is bounded (MAX_INDEXED_PER_COLUMN, MAX_INDEXED_VALUES): a
database's short strings otherwise make an index several times the database's size.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sqlite3
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path

from slmsql_cli import sqlite_header
from slmsql_cli.cache import atomic_path, private_temp_dir, short_hash, warn

MAX_VALUE_CHARS = 40  # only values of 1..40 characters are indexed
MAX_NGRAM = 8
HITS_PER_QUERY = 10
MIN_MATCH = 0.85  # share of the value that must appear verbatim in the question
MAX_VALUES = 20  # per question, over all columns
# The index's bound (the reference indexes every value; a 22 MB database made a 77 MB index):
MAX_INDEXED_PER_COLUMN = 20_000  # the first distinct values of a column, in SQLite's order
MAX_INDEXED_VALUES = 200_000  # over the whole database, columns in schema order (~80 bytes each)
_INDEX_VERSION = "2"

# Lucene's English stop words (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET): a Lucene query for
# them finds nothing, so neither does ours.
_STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split()
)
# An approximation of nltk.word_tokenize (Treebank): words keep inner - / . & ' (AC/DC, U.S.,
# O'Neil), other punctuation marks are tokens of their own. Only n-gram boundaries depend on it.
_TOKEN = re.compile(r"\w+(?:[-/.&'’]\w+)*|[^\w\s]")
_TERM = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def ngram_queries(question: str, max_n: int = MAX_NGRAM) -> list[str]:
    """The reference's queries: all word n-grams (n = 1..max_n) of the question, then the question itself."""
    tokens = tokenize(question)
    grams = [" ".join(tokens[i : i + n]) for n in range(1, max_n + 1) for i in range(len(tokens) - n + 1)]
    return list(dict.fromkeys(grams + [question]))


def fts_query(text: str) -> str | None:
    """A safe FTS5 query: every word quoted, OR-ed like Lucene's bag-of-words query; None if no words."""
    terms = [t for t in dict.fromkeys(_TERM.findall(text.lower())) if t not in _STOP_WORDS]
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms) or None


def substring_match(value: str, question: str) -> float:
    """Length of the longest substring of `value` found in `question` (both lower-cased) / len(value)."""
    v, q = value.lower(), question.lower()
    if not v:
        return 0.0
    best = 0
    for i in range(len(v)):
        j = i + best + 1  # only a longer match can change `best`
        while j <= len(v) and v[i:j] in q:
            best = j - i
            j += 1
    return best / len(v)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


class ValueIndex:
    """The FTS5 index of one database's short string values, built once per database version.

    A damaged index file (truncated, zeroed, or failing a read) is rebuilt with one warning.
    Without a writable cache the index lives in a private temporary folder for this process.
    """

    builds = 0  # how many indexes this process has built (tests check reuse with it)

    def __init__(
        self, path: Path, label: str, build: Callable[[Path], None], *, private: bool = False
    ) -> None:
        """The index at `path`; `build(path)` writes it when it is missing or damaged. `label`
        names the database in warnings."""
        self.path = path
        self.built = False  # True when this open() had to build the index
        self._label = label
        self._write = build
        self._healed = False
        if private:
            weakref.finalize(self, shutil.rmtree, path.parent, ignore_errors=True)
        damage = sqlite_header.damage(path) if path.exists() else None
        if damage or not path.exists():
            self._build(damage)
        try:
            self._conn, self._columns = _open_index(path)
        except sqlite3.DatabaseError as exc:
            self._heal(exc)

    @classmethod
    def in_folder(
        cls, folder: Path | None, key: str, label: str, build: Callable[[Path], None]
    ) -> ValueIndex:
        """The index named by `key` in a cache `folder` (None: a private temporary folder)."""
        if folder is None:
            private = private_temp_dir("slmsql-values")
            return cls(private / "values.fts.sqlite", label, build, private=True)
        return cls(folder / f"values-v{_INDEX_VERSION}-{short_hash(key)}.fts.sqlite", label, build)

    def _build(self, damage: str | None = None) -> None:
        if damage:
            warn(f"the value index of {self._label} was damaged ({damage}); rebuilt it")
        self._write(self.path)
        ValueIndex.builds += 1
        self.built = True

    def _heal(self, exc: sqlite3.DatabaseError) -> None:
        """Rebuild an index that failed a read, once; a second failure is a real error."""
        if self._healed:
            raise exc
        self._healed = True
        with contextlib.suppress(AttributeError, sqlite3.Error):
            self._conn.close()
        self._build(str(exc))
        self._conn, self._columns = _open_index(self.path)

    def close(self) -> None:
        self._conn.close()

    def search(self, query: str, k: int = HITS_PER_QUERY) -> list[tuple[int, str, int]]:
        """BM25 top-k (rowid, value, column id) for a free-text query."""
        match = fts_query(query)
        if match is None:
            return []
        sql = "SELECT rowid, value, col_id FROM vals WHERE vals MATCH ? ORDER BY rank LIMIT ?"
        try:
            return self._conn.execute(sql, (match, k)).fetchall()
        except sqlite3.DatabaseError as exc:
            self._heal(exc)
            return self._conn.execute(sql, (match, k)).fetchall()

    def retrieve(self, question: str) -> dict[tuple[str, str], list[str]]:
        """Values the question mentions, grouped by (table, column), best first (at most 20 in all)."""
        hits: list[tuple[str, int]] = []
        seen: set[int] = set()
        for query in ngram_queries(question):
            for rowid, value, col_id in self.search(query):
                if rowid not in seen:
                    seen.add(rowid)
                    hits.append((value, col_id))
        scored = []
        for index, (value, col_id) in enumerate(hits):
            score = substring_match(value, question)
            if score > MIN_MATCH:
                scored.append((score, len(value), index, value, col_id))
        scored.sort(key=lambda h: h[:3], reverse=True)  # ties: the later hit first, as the reference
        out: dict[tuple[str, str], list[str]] = {}
        for _score, _len, _index, value, col_id in scored[:MAX_VALUES]:
            table, column = self._columns[col_id].split("\0", 1)
            out.setdefault((table, column), []).append(value)
        return out


def _open_index(path: Path) -> tuple[sqlite3.Connection, dict[int, str]]:
    """A read-only connection to an index file. The index is slmsql's own file, published whole
    by a rename and written without a journal, so plain `mode=ro` reads all of it and creates
    nothing beside it (the user's databases need `targets/sqlite_open`'s care; this file does not)."""
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
    )
    conn.text_factory = lambda raw: raw.decode("utf-8", errors="replace")
    try:
        columns = dict(conn.execute("SELECT id, tbl || char(0) || col FROM columns").fetchall())
    except BaseException:
        conn.close()
        raise
    return conn, columns


def is_indexable(value: object) -> bool:
    """A value the index keeps: a string of 1-MAX_VALUE_CHARS characters that is not a number."""
    return isinstance(value, str) and 0 < len(value) <= MAX_VALUE_CHARS and not _is_number(value)


ColumnValues = Callable[[str, str, int], Iterable[str]]  # (table, column, limit) -> distinct strings


def write_index(target: Path, columns: Iterable[tuple[str, str]], values: ColumnValues) -> None:
    """Write the index of `columns` (in order) at `target`: `values(table, column, limit)` gives a
    column's first distinct indexable strings, at most `limit` (the bound left for it)."""
    with atomic_path(target) as tmp:
        index = sqlite3.connect(tmp)
        try:
            index.executescript(
                "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
                "CREATE TABLE columns (id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, col TEXT NOT NULL);"
                "CREATE VIRTUAL TABLE vals USING fts5(value, col_id UNINDEXED, tokenize = 'porter unicode61');"
            )
            room = MAX_INDEXED_VALUES
            for col_id, (table, column) in enumerate(columns, start=1):
                index.execute("INSERT INTO columns VALUES (?, ?, ?)", (col_id, table, column))
                if room <= 0:
                    continue
                found = list(values(table, column, min(MAX_INDEXED_PER_COLUMN, room)))
                room -= len(found)
                index.executemany(
                    "INSERT INTO vals (value, col_id) VALUES (?, ?)", ((v, col_id) for v in found)
                )
            index.commit()
            index.execute("INSERT INTO vals(vals) VALUES ('optimize')")
            index.commit()
        finally:
            index.close()
