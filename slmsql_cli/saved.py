"""Saved answers: questions with the SQL a person kept for them, answered again without a model.

The store is one small SQLite file in the cache folder (`<cache>/saved/answers.sqlite`). Each
answer is keyed by the database's identity (`identity`): the resolved path of a SQLite file or
of a data-file import, or a live target's cache key. The identity does not include the data or
the schema, so a saved answer survives changes to the rows; a schema change that breaks its SQL
is found when it runs (`lookup` reports it and the model answers instead).

Only an exact repeat is answered from the store: the question (and its evidence) compared after
case folding, collapsing whitespace and dropping trailing punctuation. A merely similar saved
question (token overlap) is offered as a suggestion, never used: pandas-ai's maintainers chose
exact matching because a similarity match "could lead to wrong results", and so does this.

The saved SQL runs again on the current data, through the same guarded executor as the model's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmsql_cli.answer import Answer, SamplingRound
from slmsql_cli.cache import cache_dir, cache_path, private_mkdir, unwritable_message, warn
from slmsql_cli.engine_protocol import GenerationStats
from slmsql_cli.errors import UserError
from slmsql_cli.targets.sqlcheck import check_sql
from slmsql_cli.vote import Candidate, vote

if TYPE_CHECKING:
    from slmsql_cli.database import Database

SIMILAR = 0.5  # share of the two questions' words they have in common, to be offered as a suggestion
_TRAILING = re.compile(r"[\s.?!;:,。？！…]+$")
_WORDS = re.compile(r"\w+")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS saved (
    id INTEGER PRIMARY KEY,
    db_key TEXT NOT NULL,
    db_name TEXT NOT NULL,
    question TEXT NOT NULL,
    evidence TEXT NOT NULL DEFAULT '',
    normalized TEXT NOT NULL,
    sql TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (db_key, normalized)
)
"""


def normalize(question: str, evidence: str = "") -> str:
    """The form two questions must share to be the same: case folded, whitespace collapsed,
    trailing punctuation dropped (evidence likewise, after a separator)."""

    def one(text: str) -> str:
        return _TRAILING.sub("", " ".join(text.split()).casefold())

    return one(question) + ("\x1f" + one(evidence) if evidence.strip() else "")


def identity(db: Database) -> str:
    """What names a database across runs and data changes (not its schema or rows)."""
    if db.file is not None:  # a SQLite file (data files: their cached SQLite copy)
        return f"sqlite:{db.file.resolve()}"
    return f"target:{db.target.cache_key}"


@dataclass
class Saved:
    id: int
    database: str  # the name the database had when the answer was kept
    question: str
    evidence: str
    sql: str
    created: float  # seconds since the epoch

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "database": self.database,
            "question": self.question,
            "evidence": self.evidence,
            "sql": self.sql,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
        }


def store_path() -> Path:
    """Where the store is (created on the first save, never by a reader)."""
    return cache_path() / "saved" / "answers.sqlite"


def _open() -> sqlite3.Connection:
    """The store, created where missing: the folder 0700 and the file 0600 whatever the umask
    (saved questions and SQL say what the user asked of their data)."""
    path = store_path()
    cache_dir()  # the cache root, made private
    private_mkdir(path.parent)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # before SQLite would make it 0644
    os.chmod(path, 0o600)
    conn = sqlite3.connect(path, timeout=10)
    try:
        with conn:
            conn.execute(_SCHEMA)
    except sqlite3.Error:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def _writer() -> Iterator[sqlite3.Connection]:
    """The store to change; a UserError when it cannot be written (`--save` is refused)."""
    try:
        conn = _open()
    except (OSError, sqlite3.Error) as exc:
        raise UserError(
            f"cannot keep saved answers: {store_path()} cannot be written ({_reason(exc)})",
            "set SLMSQL_CACHE_DIR to a writable folder",
        ) from None
    try:
        with conn:
            yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def _reader() -> Iterator[sqlite3.Connection | None]:
    """The store to read, or None when there is nothing to read. A cache that cannot be written
    is one warning (what exists is still read, read-only), never an error."""
    try:
        conn: sqlite3.Connection | None = _open()
    except OSError as exc:
        warn(unwritable_message(exc))
        conn = _read_only(store_path())
    except sqlite3.Error as exc:
        warn(f"cannot read the saved answers at {store_path()} ({exc}): none are used")
        conn = None
    try:
        yield conn
    finally:
        if conn is not None:
            conn.close()


def _read_only(path: Path) -> sqlite3.Connection | None:
    """The store opened read-only (a read-only home), or None when there is none to read."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'saved'").fetchone():
            return conn
        conn.close()
    except (OSError, sqlite3.Error):
        pass
    return None


def _reason(exc: Exception) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def check_writable() -> None:
    """A UserError now, rather than after the model has answered, when `--save` cannot keep it."""
    with _writer():
        pass


_COLUMNS = "id, db_name, question, evidence, sql, created"


def _row(row: tuple) -> Saved:
    return Saved(*row)


def save(db: Database, question: str, sql: str, evidence: str = "") -> Saved:
    """Keep `sql` as the answer to `question` on `db` (replacing an earlier one for the same
    question), after the read-only check every SQL gets."""
    rejection = check_sql(sql)
    if rejection:
        raise UserError(f"this SQL cannot be saved: {rejection}", "save one read-only query")
    if not question.strip():
        raise UserError("the question to save is empty", "give the question the SQL answers")
    with _writer() as conn:
        row = conn.execute(
            "INSERT INTO saved (db_key, db_name, question, evidence, normalized, sql, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (db_key, normalized) DO UPDATE SET "
            "question = excluded.question, sql = excluded.sql, created = excluded.created, "
            f"db_name = excluded.db_name RETURNING {_COLUMNS}",
            (
                identity(db),
                db.name,
                question,
                evidence,
                normalize(question, evidence),
                sql.strip(),
                time.time(),
            ),
        ).fetchone()
    return _row(row)


def find(db: Database, question: str, evidence: str = "") -> Saved | None:
    """The saved answer to exactly this question (after `normalize`), or None."""
    with _reader() as conn:
        if conn is None:
            return None
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM saved WHERE db_key = ? AND normalized = ?",
            (identity(db), normalize(question, evidence)),
        ).fetchone()
    return _row(row) if row else None


def similar(db: Database, question: str) -> Saved | None:
    """The saved question of `db` sharing the most words with `question` (at least SIMILAR of
    the two questions' words together), or None. A suggestion only, never an answer."""
    words = set(_WORDS.findall(question.casefold()))
    best: tuple[float, Saved] | None = None
    for entry in entries(db):
        theirs = set(_WORDS.findall(entry.question.casefold()))
        overlap = len(words & theirs) / max(len(words | theirs), 1)
        if overlap >= SIMILAR and (best is None or overlap > best[0]):
            best = (overlap, entry)
    return best[1] if best else None


def entries(db: Database | None = None) -> list[Saved]:
    """The saved answers of `db` (all databases when None), oldest first."""
    with _reader() as conn:
        if conn is None:
            return []
        if db is None:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM saved ORDER BY id").fetchall()
        else:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM saved WHERE db_key = ? ORDER BY id", (identity(db),)
            ).fetchall()
    return [_row(r) for r in rows]


def get(entry_id: int) -> Saved:
    with _reader() as conn:
        row = (
            None
            if conn is None
            else conn.execute(f"SELECT {_COLUMNS} FROM saved WHERE id = ?", (entry_id,)).fetchone()
        )
    if row is None:
        raise UserError(f"there is no saved answer #{entry_id}", "see `slmsql saved list`")
    return _row(row)


def remove(entry_id: int) -> Saved:
    entry = get(entry_id)
    with _writer() as conn:
        conn.execute("DELETE FROM saved WHERE id = ?", (entry_id,))
    return entry


def export_lines(db: Database | None = None) -> Iterator[str]:
    """JSON Lines: one {"question", "evidence", "sql", "database", "created"} per saved answer."""
    for entry in entries(db):
        doc = entry.as_dict()
        doc.pop("id")
        yield json.dumps(doc, ensure_ascii=False)


@dataclass
class ImportReport:
    imported: list[Saved]
    skipped: list[str]  # "line N: why"


def import_lines(db: Database, lines: Iterable[str]) -> ImportReport:
    """Save each JSON Lines record's question and SQL for `db`; a record that is not JSON (or
    nested too deeply to read), lacks a question or SQL, or whose SQL fails the read-only check
    (nesting included) or names a table `db` lacks is skipped and reported. A store that cannot be written is one UserError, before any line."""
    from slmsql_cli.explain import check_query

    check_writable()
    report = ImportReport([], [])
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            question, sql = doc["question"], doc["sql"]
            evidence = doc.get("evidence") or ""
            if not all(isinstance(v, str) for v in (question, sql, evidence)):
                raise TypeError("question, evidence and sql must be text")
            check_query(db, sql)  # the read-only check and the database's tables
            report.imported.append(save(db, question, sql, evidence))
        except UserError as exc:
            report.skipped.append(f"line {number}: {exc.message}")
        except RecursionError:  # JSON nested deeper than the parser's stack: that line only
            report.skipped.append(f"line {number}: not a saved answer (nested too deeply to read)")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            why = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
            report.skipped.append(f"line {number}: not a saved answer ({why})")
    return report


@dataclass
class Lookup:
    """What the store says about a question before the model is asked."""

    answer: Answer | None = None  # an exact repeat whose SQL ran again
    broken: str | None = None  # an exact repeat whose SQL no longer runs: why
    suggestion: Saved | None = None  # a similar saved question, to mention only

    @property
    def notes(self) -> list[str]:
        """What to tell the person before the model answers (nothing for an exact repeat)."""
        notes = [self.broken] if self.broken else []
        if self.suggestion is not None:
            notes.append(
                f'a saved question is similar: "{self.suggestion.question}" (saved answer '
                f"#{self.suggestion.id}); only the same question is answered from it"
            )
        return notes


def lookup(db: Database, question: str, evidence: str = "", *, timeout: float = 10.0) -> Lookup:
    """An answer from the store for an exact repeat (its SQL run on the current data), or why
    the saved SQL failed, or a similar saved question to suggest."""
    entry = find(db, question, evidence)  # a cache that cannot be written: one warning, read-only
    if entry is None:
        return Lookup(suggestion=similar(db, question))
    start = time.perf_counter()
    db.target.prepare()  # a SQLite query worker boots while this process checks the SQL (sqlglot)
    result = db.run(entry.sql, timeout=timeout)
    if result is None or not result.ok:
        why = "it timed out" if result is None or result.timed_out else result.error
        return Lookup(broken=f"saved answer #{entry.id} no longer runs ({why}); it was skipped")
    return Lookup(answer=as_answer(entry, question, result, time.perf_counter() - start))


def keep(db: Database, question: str, evidence: str, answer: Answer) -> str:
    """`ask --save`: keep the answer's SQL for this question; the line that says what happened."""
    if answer.sql is None or answer.result is None or not answer.result.ok:
        return "not saved: the answer's SQL did not run"
    if answer.follows:  # its SQL answers the question with the earlier turns, not alone
        return "not saved: a follow-up's SQL answers it together with the earlier questions"
    entry = save(db, question, answer.sql, evidence)
    return f"saved as answer #{entry.id}: asked again, this question is answered from it (--fresh asks the model)"


def as_answer(entry: Saved, question: str, result: Any, seconds: float) -> Answer:
    """A saved answer in the Answer shape every surface renders: one candidate, its own vote."""
    candidates = [Candidate(text="", sql=entry.sql, result=result)]
    generation = SamplingRound(candidates, vote(candidates), GenerationStats())
    return Answer(
        question=question,
        sql=entry.sql,
        result=result,
        generation=generation,
        timings={"execute": seconds, "total": seconds},
        saved_id=entry.id,
    )
