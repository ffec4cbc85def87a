"""A benchmark's questions and a run's predictions, read from their files.

Spider files (dev.json, the Chinook questions.json) carry the gold SQL under "query", BIRD's under
"SQL". Breakdowns: BIRD's `difficulty`; Spider's hardness computed from the parsed `sql` field
(`hardness.py`). Question files without either get no breakdown.

SParC and CoSQL files hold interactions (`[{database_id, interaction: [{utterance, query}]}]`):
each turn becomes one Question, in file order, numbered like any question (the resume key and the
predictions file's line), with its `Place` in the interaction; its level is its turn index (1, 2,
3, 4+).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmsql_cli.benchmark_data import interaction_rows, is_interaction, question_row
from slmsql_cli.conversation import Turn
from slmsql_cli.database import check_question
from slmsql_cli.errors import UserError
from slmsql_cli.eval.hardness import spider_level

INTERACTION_FORMATS = ("sparc", "cosql")  # the same file format, scored by the same rules
FORMATS = ("spider", "bird", *INTERACTION_FORMATS)
TURN_LEVELS = ("1", "2", "3", "4+")  # a turn's level: its index in the interaction


@dataclass(frozen=True)
class Place:
    """Where a turn of a SParC/CoSQL interaction sits, and what came before it."""

    interaction: int  # the interaction's position in the file
    turn: int  # 1 for the interaction's first question
    turns: int  # the interaction's length: it is scored once all of them are
    earlier: tuple[Turn, ...] = ()  # the earlier questions, oldest first, with their gold SQL


@dataclass
class Question:
    index: int  # position in the questions file (a turn's among all turns): the resume key
    question: str
    gold: str
    db_id: str
    evidence: str = ""
    level: str | None = None  # BIRD difficulty / Spider hardness / a turn's index
    question_id: Any = None  # BIRD's question_id, when there is one
    place: Place | None = None  # a SParC/CoSQL turn's place in its interaction


def turn_level(turn: int) -> str:
    """A turn's level: "1", "2", "3", or "4+" for every later turn (few interactions are longer)."""
    return str(turn) if turn < 4 else "4+"


def detect_format(items: Sequence[dict]) -> str:
    """BIRD files carry the gold SQL under "SQL", Spider files under "query"; SParC and CoSQL files
    hold interactions (both read as "sparc": pass --format cosql to label a CoSQL run)."""
    if items and is_interaction(items[0]):
        return "sparc"
    return "bird" if items and "SQL" in items[0] else "spider"


def load_questions(path: Path, fmt: str | None = None) -> tuple[list[Question], str]:
    """Questions from a Spider (dev.json, Chinook questions.json) or BIRD (dev.json) file."""
    text = read_text(path, "questions file", "pass Spider's or BIRD's dev.json with --questions")
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise UserError(
            f"cannot read questions file {path}: {exc}", "it must be a JSON list of questions"
        ) from None
    if items == []:
        raise UserError(f"{path} holds no questions", "pass Spider's or BIRD's dev.json with --questions")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise UserError(
            f"{path} is not a list of questions",
            'expected Spider/BIRD dev.json: [{"question": …, "db_id": …}, …]',
        )
    fmt = fmt or detect_format(items)
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}", f"use --format {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
    if fmt in INTERACTION_FORMATS:
        return load_turns(path, items, fmt), fmt
    gold_key = "SQL" if fmt == "bird" else "query"
    questions = []
    for i, item in enumerate(items):
        missing = [k for k in ("question", "db_id", gold_key) if k not in item]
        if missing:
            raise UserError(
                f"question {i} in {path} has no {', '.join(missing)}",
                f"--format {fmt} expects question, db_id and {gold_key}",
            )
        wrong = next((k for k in ("question", "db_id", gold_key) if not isinstance(item[k], str)), None)
        if wrong:
            raise UserError(
                f"question {i} in {path}: {wrong} is {item[wrong]!r}, not text",
                f"each question needs question, db_id and {gold_key} as JSON strings",
            )
        row = question_row(item, (gold_key,))
        if not row.question:
            raise UserError(f"question {i} in {path} is empty", "every question needs its text")
        try:
            check_question(row.question, row.evidence)  # once, here: `pipeline.ask` does not check again
        except UserError as exc:
            raise UserError(f"question {i} in {path}: {exc.message}", exc.hint) from None
        level = item.get("difficulty") if fmt == "bird" else spider_level(item.get("sql"))
        questions.append(
            Question(i, row.question, row.gold, row.db_id, row.evidence, level, item.get("question_id"))
        )
    return questions, fmt


def load_turns(path: Path, items: list[dict], fmt: str) -> list[Question]:
    """Every turn of a SParC/CoSQL file's interactions, in file order, as a Question."""
    expected = f"--format {fmt} expects [{{database_id, interaction: [{{utterance, query}}, …]}}, …]"
    questions: list[Question] = []
    for i, item in enumerate(items):
        rows = interaction_rows(item)
        if not rows:
            raise UserError(f"interaction {i} in {path} has no turns", expected)
        if not rows[0].db_id:
            raise UserError(f"interaction {i} in {path} has no database_id", expected)
        earlier: list[Turn] = []
        for t, row in enumerate(rows, 1):
            where = f"interaction {i} turn {t} in {path}"
            if not row.question or not row.gold:
                raise UserError(f"{where} has no {'utterance' if not row.question else 'query'}", expected)
            try:
                check_question(row.question)
            except UserError as exc:
                raise UserError(f"{where}: {exc.message}", exc.hint) from None
            place = Place(i, t, len(rows), tuple(earlier))
            questions.append(
                Question(len(questions), row.question, row.gold, row.db_id, level=turn_level(t), place=place)
            )
            earlier.append(Turn(row.question, row.gold))
    return questions


def read_predictions(path: Path) -> list[str]:
    """One SQL per question, in question order: a text file with one SQL per line (Spider's
    `SQL<TAB>db_id` lines are fine), or BIRD's JSON {"0": "SQL\\t----- bird -----\\tdb_id", …}."""
    text = read_text(path, "predictions file", "one SQL per line, in the order of the questions")
    if Path(path).suffix == ".json":
        bird = 'BIRD predictions are a JSON object {"0": "SQL\\t----- bird -----\\tdb_id", …} keyed by question number'
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UserError(f"cannot parse {path}: {exc}", bird) from None
        if isinstance(data, dict):
            bad = next((k for k in data if not k.strip().isdigit()), None)
            if bad is not None:
                raise UserError(f"{path}: the key {bad!r} is not a question number", bird)
            values = [data[k] for k in sorted(data, key=int)]
        elif isinstance(data, list):
            values = data
        else:
            raise UserError(f"{path} holds neither an object nor a list of predictions", bird)
        return [str(v).split("\t", 1)[0].strip() for v in values]
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.split("\t", 1)[0].strip() for line in lines]


def read_text(path: Path, what: str, hint: str) -> str:
    """A UTF-8 text file's contents, or a UserError saying what is wrong with it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}", hint) from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder", hint) from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not text (it is not UTF-8)", hint) from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}", hint) from None
