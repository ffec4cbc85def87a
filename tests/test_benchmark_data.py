"""Benchmark data read one way: `eval` and `train` find the same database and tables.json for a row."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slmsql_cli.benchmark_data import (
    BenchmarkDatabases,
    find_database,
    question_row,
    resolve_db,
    sibling_tables_json,
)
from slmsql_cli.cli import app
from slmsql_cli.errors import UserError
from slmsql_cli.prompt_builder import generation_message
from slmsql_cli.training.config import build_config
from slmsql_cli.training.data import load_examples

QUESTION = "How many singers are there?"
GOLD = "SELECT count(*) FROM singer"


def _make_db(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO singer (name) VALUES (?)", [("Ann",), ("Bo",), ("Cy",)])
    conn.close()
    return path


def _questions(folder: Path, db_id: str) -> Path:
    path = folder / "dev.json"
    path.write_text(json.dumps([{"question": QUESTION, "query": GOLD, "db_id": db_id}]))
    return path


def test_layouts(tmp_path: Path) -> None:
    nested = _make_db(tmp_path / "nested" / "concert" / "concert.sqlite")
    flat = _make_db(tmp_path / "flat" / "concert.db")
    assert find_database(tmp_path / "nested", "concert") == nested
    assert find_database(tmp_path / "flat", "concert") == flat
    assert find_database(nested, "anything") == nested  # a file serves every row
    _make_db(tmp_path / "flat" / "other.sqlite")
    assert find_database(tmp_path / "flat", "missing") is None  # two files: no guessing
    with pytest.raises(UserError, match="no database for db_id 'missing'"):
        resolve_db(tmp_path / "flat", "missing")


def test_a_folder_holding_one_database_works_in_eval_and_train(tmp_path: Path) -> None:
    db = _make_db(tmp_path / "dbs" / "Chinook_Sqlite.sqlite")  # not named after the db_id
    questions = _questions(tmp_path, "chinook")
    assert find_database(tmp_path / "dbs", "chinook") == db

    preds = tmp_path / "pred.sql"
    preds.write_text(GOLD + "\n")
    result = CliRunner().invoke(
        app,
        ["eval", "-q", str(questions), "--db-dir", str(tmp_path / "dbs"), "-p", str(preds), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["correct"] == 1

    cfg = build_config({"stage": "sft", "base": "m", "data": str(questions), "db_dir": str(tmp_path / "dbs")})
    examples, report, fmt = load_examples(cfg)
    assert fmt == "spider" and report.kept == 1 and examples[0].db_path == str(db.resolve())
    assert "CREATE TABLE singer" in examples[0].prompt


def test_tables_json_beside_the_data(tmp_path: Path) -> None:
    questions = _questions(tmp_path, "concert")
    assert sibling_tables_json(questions) is None
    (tmp_path / "dev_tables.json").write_text("[]")
    assert sibling_tables_json(questions) == tmp_path / "dev_tables.json"  # BIRD's name
    (tmp_path / "train_tables.json").write_text("[]")
    assert sibling_tables_json(questions) is None  # two candidates: no guessing
    (tmp_path / "tables.json").write_text("[]")
    assert sibling_tables_json(questions) == tmp_path / "tables.json"  # Spider's name wins


def test_tables_json_names_the_schema_of_databases_found_by_db_id(tmp_path: Path) -> None:
    _make_db(tmp_path / "dbs" / "concert" / "concert.sqlite")
    tables = tmp_path / "tables.json"
    tables.write_text(
        json.dumps(
            [
                {
                    "db_id": "concert",
                    "table_names_original": ["singer"],
                    "table_names": ["singer"],
                    "column_names_original": [[-1, "*"], [0, "singer_id"], [0, "name"]],
                    "column_names": [[-1, "*"], [0, "singer id"], [0, "stage name"]],
                    "column_types": ["text", "number", "text"],
                    "primary_keys": [1],
                    "foreign_keys": [],
                }
            ]
        )
    )
    db = BenchmarkDatabases(tmp_path / "dbs", tables).open("concert")
    assert "stage name" in generation_message(db, QUESTION).text
    single = BenchmarkDatabases(tmp_path / "dbs" / "concert" / "concert.sqlite", tables).open("x")
    # a file for every row describes itself
    assert "stage name" not in generation_message(single, QUESTION).text


def test_question_rows() -> None:
    bird = question_row({"question": " Q? ", "SQL": " SELECT 1 ", "db_id": "d", "evidence": "e"})
    assert (bird.question, bird.gold, bird.db_id, bird.evidence) == ("Q?", "SELECT 1", "d", "e")
    spider = question_row({"question": "Q?", "query": "SELECT 2", "db_id": "d", "evidence": None})
    assert (spider.gold, spider.evidence) == ("SELECT 2", "")
    assert question_row({"question": "Q?", "query": "SELECT 2"}, ("SQL",)).gold == ""
