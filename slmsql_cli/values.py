"""Database values the question mentions, shown first in the schema's `example: [...]` lists.

The reference (OmniSQL `process_dataset.py`, reused by CSC-SQL) indexes every distinct short
string of the database with BM25 (pyserini/Lucene, which needs Java), queries it with the
question's word 1-8-grams and the whole question (10 hits each), and keeps a hit only if at
least 85% of the value appears verbatim in the question. BM25 only proposes candidates; the
85% rule decides. Here the BM25 index is SQLite's FTS5 (porter stemming like Lucene's English
analyzer, English stop words dropped from queries), stored in the database's cache folder and
rebuilt only when the database file changes.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from slmsql_cli.cache import atomic_path, db_cache_dir, short_hash
from slmsql_cli.schema import Schema, quote
from slmsql_cli.sqlite_open import open_readonly

MAX_VALUE_CHARS = 40  # only values of 1..40 characters are indexed
MAX_NGRAM = 8
HITS_PER_QUERY = 10
MIN_MATCH = 0.85  # share of the value that must appear verbatim in the question
MAX_VALUES = 20  # per question, over all columns
_INDEX_VERSION = "1"

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
    """The FTS5 index of one database's short string values, built once per database version."""

    builds = 0  # how many indexes this process has built (tests check reuse with it)

    def __init__(self, path: Path, built: bool) -> None:
        self.path = path
        self.built = built  # True when this open() had to build the index
        self._conn = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, check_same_thread=False)
        self._columns = dict(self._conn.execute("SELECT id, tbl || char(0) || col FROM columns").fetchall())

    @classmethod
    def open(cls, db_path: str | Path, schema: Schema) -> ValueIndex:
        """The index for `schema`'s tables in `db_path`, from the cache or built now (once)."""
        tables = [t.name for t in schema.tables]
        path = (
            db_cache_dir(db_path) / f"values-v{_INDEX_VERSION}-{short_hash(chr(0).join(tables))}.fts.sqlite"
        )
        built = False
        if not path.exists():
            _build(Path(db_path), tables, path)
            cls.builds += 1
            built = True
        return cls(path, built)

    def close(self) -> None:
        self._conn.close()

    def search(self, query: str, k: int = HITS_PER_QUERY) -> list[tuple[int, str, int]]:
        """BM25 top-k (rowid, value, column id) for a free-text query."""
        match = fts_query(query)
        if match is None:
            return []
        return self._conn.execute(
            "SELECT rowid, value, col_id FROM vals WHERE vals MATCH ? ORDER BY rank LIMIT ?", (match, k)
        ).fetchall()

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


def _column_values(conn: sqlite3.Connection, table: str, column: str) -> Iterator[str]:
    t, c = quote(table), quote(column)
    rows = conn.execute(
        f"SELECT DISTINCT {c} FROM {t} WHERE typeof({c}) = 'text' AND length({c}) BETWEEN 1 AND {MAX_VALUE_CHARS}"
    )
    for (value,) in rows:  # streamed: SQLite hands rows over one at a time
        if isinstance(value, str) and 0 < len(value) <= MAX_VALUE_CHARS and not _is_number(value):
            yield value


def _build(db_path: Path, tables: list[str], target: Path) -> None:
    source = open_readonly(db_path)
    try:
        with atomic_path(target) as tmp:
            index = sqlite3.connect(tmp)
            try:
                index.executescript(
                    "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
                    "CREATE TABLE columns (id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, col TEXT NOT NULL);"
                    "CREATE VIRTUAL TABLE vals USING fts5(value, col_id UNINDEXED, tokenize = 'porter unicode61');"
                )
                col_id = 0
                for table in tables:
                    try:
                        columns = [row[1] for row in source.execute(f"PRAGMA table_info({quote(table)})")]
                    except sqlite3.Error:
                        continue
                    for column in columns:
                        col_id += 1
                        index.execute("INSERT INTO columns VALUES (?, ?, ?)", (col_id, table, column))
                        try:
                            index.executemany(
                                "INSERT INTO vals (value, col_id) VALUES (?, ?)",
                                ((v, col_id) for v in _column_values(source, table, column)),
                            )
                        except sqlite3.Error:  # e.g. a virtual table whose module is missing
                            continue
                index.commit()
                index.execute("INSERT INTO vals(vals) VALUES ('optimize')")
                index.commit()
            finally:
                index.close()
    finally:
        source.close()
