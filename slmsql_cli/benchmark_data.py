"""Spider/BIRD-style benchmark data, read one way by `eval`, `train` and `training.sample`.

Three questions every reader of such data asks, answered once:

* which SQLite file a `db_id` means (`find_database`, `resolve_db`, `BenchmarkDatabases`);
* which tables.json describes the databases when none is given (`sibling_tables_json`);
* what a question row's question, gold SQL, `db_id` and evidence are (`question_row`), and the
  turns of a SParC/CoSQL interaction row (`interaction_rows`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmsql_cli.errors import UserError

if TYPE_CHECKING:
    from slmsql_cli.database import Database

GOLD_COLUMNS = ("SQL", "query", "gold_sql", "sql")  # BIRD, Spider, then other datasets' names
DB_SUFFIXES = (".sqlite", ".db")


def first_value(row: Mapping[str, Any], names: Iterable[str]) -> Any:
    """The first of `names` that the row holds a non-empty value for."""
    for name in names:
        value = row.get(name)
        if value is not None and value != "":
            return value
    return None


@dataclass
class QuestionRow:
    question: str
    gold: str  # "" when the row has none
    db_id: str
    evidence: str = ""


def question_row(row: Mapping[str, Any], gold_columns: Sequence[str] = GOLD_COLUMNS) -> QuestionRow:
    """The fields of a Spider (`query`) or BIRD (`SQL`, `evidence`) question row."""
    gold = first_value(row, gold_columns)
    return QuestionRow(
        question=str(row.get("question") or "").strip(),
        gold=gold.strip() if isinstance(gold, str) else "",
        db_id=str(row.get("db_id") or ""),
        evidence=str(row.get("evidence") or ""),
    )


def is_interaction(row: Mapping[str, Any]) -> bool:
    """Whether a row is a SParC/CoSQL interaction: `{database_id, interaction: [{utterance, query}]}`."""
    return "interaction" in row


def interaction_rows(row: Mapping[str, Any]) -> list[QuestionRow]:
    """The turns of a SParC/CoSQL interaction row as question rows, oldest first (a turn that is not
    an object becomes an empty row, so that a reader counts or refuses it without renumbering the
    turns after it). SParC has no evidence; a CoSQL turn's question is its SQL-grounded utterance."""
    db_id = str(row.get("database_id") or row.get("db_id") or "")
    turns = row.get("interaction")
    rows = []
    for turn in turns if isinstance(turns, list) else []:
        if isinstance(turn, Mapping):
            gold = first_value(turn, GOLD_COLUMNS)
            question = str(turn.get("utterance") or "").strip()
            rows.append(QuestionRow(question, gold.strip() if isinstance(gold, str) else "", db_id))
        else:
            rows.append(QuestionRow("", "", db_id))
    return rows


def _named_database(db_dir: Path, db_id: str) -> Path | None:
    """`DIR/<db_id>/<db_id>.sqlite` (the Spider/BIRD layout) or a flat `DIR/<db_id>.sqlite` (or .db)."""
    for folder in (db_dir / db_id, db_dir):
        for suffix in DB_SUFFIXES:
            path = folder / f"{db_id}{suffix}"
            if path.is_file():
                return path
    return None


def _only_database(db_dir: Path) -> Path | None:
    """The one database in DIR when it holds exactly one (Chinook's folder)."""
    if not db_dir.is_dir():
        return None
    found = [p for p in db_dir.iterdir() if p.suffix in DB_SUFFIXES and p.is_file()]
    return found[0] if len(found) == 1 else None


def find_database(db_dir: Path, db_id: str) -> Path | None:
    """The SQLite file of `db_id`: Spider/BIRD layout `DIR/<db_id>/<db_id>.sqlite`, a flat
    `DIR/<db_id>.sqlite` (or `.db`), or, for every `db_id`, DIR itself when it is a file or the
    one database in DIR when it holds only one. None when there is none. A data file as DIR (CSV,
    Parquet, ...) is its cached SQLite import, as for `--db`."""
    from slmsql_cli import files

    db_dir = Path(db_dir).expanduser()
    if db_dir.is_file():
        return files.as_sqlite(db_dir)
    return _named_database(db_dir, db_id) or _only_database(db_dir)


def resolve_db(db_dir: Path, db_id: str) -> Path:
    """`find_database`, checked to be a SQLite file, or a UserError saying where it was expected."""
    from slmsql_cli.database import check_database_file

    path = find_database(db_dir, db_id)
    if path is None:
        raise UserError(
            f"no database for db_id {db_id!r} in {db_dir}",
            f"expected {Path(db_dir) / db_id / (db_id + '.sqlite')} (Spider/BIRD layout) or a folder holding one .sqlite file",
        )
    check_database_file(path)  # a text file there would otherwise score 0% without a word
    return path


def sibling_tables_json(data_file: Path) -> Path | None:
    """The tables.json that describes a questions file's databases: `tables.json` beside it, else
    the one `*tables.json` there (BIRD's `dev_tables.json`, `train_tables.json`)."""
    folder = Path(data_file).expanduser().parent
    exact = folder / "tables.json"
    if exact.is_file():
        return exact
    found = sorted(p for p in folder.glob("*tables.json") if p.is_file())
    return found[0] if len(found) == 1 else None


class BenchmarkDatabases:
    """The databases of a benchmark: a folder (or one file for every row) and an optional tables.json.

    The tables.json (keyed by `db_id`) names the schema only for files found by their `db_id`; a
    file used for every row (DIR itself, or the one database in DIR) is described by itself.
    """

    def __init__(self, db_dir: Path, tables: Path | None = None) -> None:
        self.db_dir = Path(db_dir).expanduser()
        self.tables = tables

    def path(self, db_id: str) -> Path | None:
        return find_database(self.db_dir, db_id)

    def resolve(self, db_id: str) -> Path:
        return resolve_db(self.db_dir, db_id)

    def open(self, db_id: str) -> Database:
        """The database of `db_id`, ready for prompting (cached per file by `open_database`)."""
        from slmsql_cli.database import open_database

        named = None if self.db_dir.is_file() else _named_database(self.db_dir, db_id)
        if named is not None and self.tables is not None:
            return open_database(named, self.tables, db_id)
        return open_database(self.resolve(db_id))
