"""`slmsql prompt`: the printed user message equals the reference code's prompt byte for byte."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
import sqlglot
from conftest import REFERENCE
from typer.testing import CliRunner

from slmsql_cli.cli import app

runner = CliRunner()
REFERENCE_CASES = json.loads((REFERENCE / "prompts_no_values.json").read_text(encoding="utf-8"))


def _prompt(*args: str) -> tuple[int, bytes, str]:
    result = runner.invoke(app, ["prompt", *args])
    return result.exit_code, result.stdout_bytes, result.stderr


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=lambda c: f"{c['db_id']}:{c['question'][:30]}")
def test_no_values_prompt_matches_reference(case: dict, data_dir: Path, isolated_cache: Path) -> None:
    args = [
        "--db",
        str(data_dir / case["db"]),
        "--tables",
        str(data_dir / case["tables"]),
        "--db-id",
        case["db_id"],
        "--no-values",
    ]
    if case["evidence"]:
        args += ["--evidence", case["evidence"]]
    code, out, err = _prompt(*args, case["question"])
    assert code == 0, err
    assert out == case["prompt"].encode("utf-8")


def test_reference_cases_were_loaded(reference_dir: Path) -> None:
    assert len(REFERENCE_CASES) == 60


def test_generation_example_file(data_dir: Path, reference_dir: Path, isolated_cache: Path) -> None:
    code, out, _ = _prompt(
        "--db",
        str(data_dir / "spider_dev/database/car_1/car_1.sqlite"),
        "--tables",
        str(data_dir / "spider_dev/tables.json"),
        "--no-values",
        "How many car makers are there in each continents? List the continent name and the count.",
    )
    assert code == 0
    assert out == (reference_dir / "generation_prompt.example.txt").read_bytes()


def test_unseen_spider_database_gives_a_well_formed_prompt(data_dir: Path, isolated_cache: Path) -> None:
    covered = {c["db_id"] for c in REFERENCE_CASES}
    tables = json.loads((data_dir / "spider_dev/tables.json").read_text(encoding="utf-8"))
    unseen = [
        t
        for t in tables
        if t["db_id"] not in covered
        and (data_dir / f"spider_dev/database/{t['db_id']}/{t['db_id']}.sqlite").exists()
    ]
    assert unseen, "every Spider database is covered by the reference prompts"
    info = unseen[0]
    db = data_dir / f"spider_dev/database/{info['db_id']}/{info['db_id']}.sqlite"
    code, out, _ = _prompt(
        "--db",
        str(db),
        "--tables",
        str(data_dir / "spider_dev/tables.json"),
        "What is the number of records?",
    )
    assert code == 0
    text = out.decode("utf-8")
    assert text.startswith("You first thinks about the reasoning process")
    assert text.endswith("Let me solve this step by step.")
    block = text.split("Database Schema:\n", 1)[1].split("\nThis schema describes", 1)[0]
    ddls = block.split("\n\n")
    assert len(ddls) == len(info["table_names_original"])
    for ddl in ddls:
        sqlglot.parse_one(ddl, read="sqlite")  # every CREATE TABLE parses
    # and it is real DDL: SQLite accepts it (comments and all)
    sqlite3.connect(":memory:").executescript(block)


def test_plain_sqlite_with_values(data_dir: Path, isolated_cache: Path) -> None:
    code, out, _ = _prompt(
        "--db", str(data_dir / "chinook/Chinook_Sqlite.sqlite"), "How many albums does AC/DC have?"
    )
    assert code == 0
    text = out.decode("utf-8")
    assert "    Name text, -- example: ['AC/DC', 'Accept']\n" in text
    assert "\nQuestion:\nHow many albums does AC/DC have?\n" in text
    assert len(re.findall(r"^CREATE TABLE ", text, flags=re.M)) == 11


def test_bad_inputs_fail_cleanly(tmp_path: Path, isolated_cache: Path) -> None:
    not_sqlite = tmp_path / "notes.sqlite"
    not_sqlite.write_text("just some text, not a database\n")
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    demo = Path(__file__).resolve().parents[1] / "slmsql_cli" / "data" / "bookshop.sqlite"
    cases = [
        (["--db", str(tmp_path / "missing.sqlite"), "q?"], "database not found"),
        (["--db", str(not_sqlite), "q?"], "is not a SQLite database"),
        (["--db", str(empty), "q?"], "database has no tables"),
        (["--db", str(demo), "   "], "question is empty"),
    ]
    for args, message in cases:
        code, out, err = _prompt(*args)
        assert code == 2, args
        assert out == b""
        first = err.splitlines()[0]
        assert first.startswith("error:") and message in first, err


def test_unknown_db_id(data_dir: Path, isolated_cache: Path) -> None:
    code, out, err = _prompt(
        "--db",
        str(data_dir / "spider_dev/database/car_1/car_1.sqlite"),
        "--tables",
        str(data_dir / "spider_dev/tables.json"),
        "--db-id",
        "car1",
        "q?",
    )
    assert code != 0 and out == b""
    assert "car_1" in err
