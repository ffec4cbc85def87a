"""How sure an answer is (`slmsql_cli/confidence.py`): each flag through the real `ask` command
with a scripted engine, in the table view and in --json, and the same fields from the HTTP API and
the MCP `ask` tool. The model's completions are written in each test; the database, execution,
vote, merge and value index are real."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slmsql_cli.cli import app

runner = CliRunner()
MANY = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100005) SELECT n FROM c"


def said(sql: str) -> str:
    return f"<think>\nWrite it.\n</think>\n<answer>\n{sql}\n</answer>"


def ask(db: Path, question: str, *args: str) -> tuple[int, dict, str]:
    result = runner.invoke(app, ["ask", "--db", str(db), "-m", "scripted", "--json", *args, question])
    doc = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.exit_code, doc, result.stderr


def codes(doc: dict) -> list[str]:
    return [f["code"] for f in doc["confidence"]["flags"]]


def test_a_clean_answer_has_no_flags(pets_db: Path, scripted_engine) -> None:
    scripted_engine([said("SELECT count(*) FROM pets")] * 2)
    code, doc, err = ask(pets_db, "How many pets are there?", "-n", "2", "--no-merge")
    assert code == 0, err
    assert doc["confidence"] == {
        "votes": 2,
        "sampled": 2,
        "merged": False,
        "merge_changed": False,
        "flags": [],
        "saved_answer": None,
        "summary": "confidence: no warning signs",
    }
    assert doc["explanation"] == "It reads the table pets.\nIt returns the number of rows."


def test_empty_result_is_flagged_and_shown_in_the_table_view(pets_db: Path, scripted_engine) -> None:
    sql = "SELECT name FROM pets WHERE age > 10"
    scripted_engine([said(sql)] * 4)
    code, doc, _ = ask(pets_db, "Which pets are older than ten?", "-n", "2", "--no-merge")
    assert code == 0 and doc["rows"] == [] and codes(doc) == ["empty"]
    table = runner.invoke(
        app, ["ask", "--db", str(pets_db), "-m", "scripted", "-n", "2", "--no-merge", "Which pets are old?"]
    )
    assert table.exit_code == 0  # exit codes do not change with a flag
    assert "check this answer: the result is empty" in table.stderr  # beside the vote summary


def test_all_null_result_is_flagged(pets_db: Path, scripted_engine) -> None:
    scripted_engine([said("SELECT NULL AS owner FROM pets")] * 2)
    code, doc, _ = ask(pets_db, "Who owns each pet?", "-n", "2", "--no-merge")
    assert code == 0 and doc["rows"] == [[None], [None]] and codes(doc) == ["all_null"]


def test_no_limit_and_the_row_cap_reached_is_flagged_but_a_limit_is_not(
    pets_db: Path, scripted_engine
) -> None:
    scripted_engine([said(MANY)] * 2 + [said(MANY + " LIMIT 100002")] * 2)
    code, doc, _ = ask(pets_db, "Count to a lot", "-n", "2", "--no-merge")
    assert code == 0 and doc["truncated"] and codes(doc) == ["row_cap"]
    assert "100,000 rows" in doc["confidence"]["flags"][0]["reason"]
    code, doc, _ = ask(pets_db, "Count to a lot", "-n", "2", "--no-merge")
    assert code == 0 and doc["truncated"] and codes(doc) == []


def test_a_split_vote_is_flagged(pets_db: Path, scripted_engine) -> None:
    count, names = "SELECT count(*) FROM pets", "SELECT name FROM pets"
    scripted_engine([said(count), said(names), said(count), said(names)])
    code, doc, _ = ask(pets_db, "How many pets are there?", "-n", "4", "--no-merge")
    assert code == 0 and doc["votes"] == 2 and codes(doc) == ["split_vote"]
    assert doc["confidence"]["flags"][0]["reason"] == "the vote was split: only 2 of 4 agreed"


def test_question_values_the_database_lacks_are_flagged(pets_db: Path, scripted_engine) -> None:
    scripted_engine([said("SELECT count(*) FROM pets WHERE name = 'Fido'")] * 2)
    code, doc, _ = ask(pets_db, 'How many pets are named "Fido"?', "-n", "2", "--no-merge")
    assert code == 0 and doc["rows"] == [[0]] and codes(doc) == ["unmatched_values"]
    assert "'Fido'" in doc["confidence"]["flags"][0]["reason"]

    scripted_engine([said("SELECT count(*) FROM pets WHERE name = 'Rex'")] * 2)
    code, doc, _ = ask(pets_db, "How many pets are named Rex?", "-n", "2", "--no-merge")
    assert code == 0 and codes(doc) == []  # Rex is in the database
    scripted_engine([said("SELECT count(*) FROM pets WHERE name = 'Fido'")] * 2)
    code, doc, _ = ask(pets_db, 'How many pets are named "Fido"?', "-n", "2", "--no-merge", "--no-values")
    assert code == 0 and codes(doc) == []  # no value lookup, no claim about values


def test_no_usable_sql_is_flagged_not_called_safe(pets_db: Path, scripted_engine) -> None:
    scripted_engine(["I am not sure.", said("SELECT nope FROM pets")])
    code, doc, _ = ask(pets_db, "How many pets are there?", "-n", "2", "--no-merge")
    assert code == 1 and codes(doc) == ["no_result"]  # exit code as before
    assert doc["confidence"]["flags"][0]["reason"].startswith("none of the 2 candidate(s) wrote SQL that ran")
    assert doc["confidence"]["summary"].startswith("check this answer: none of the 2")


def test_whether_the_merge_changed_the_answer(pets_db: Path, scripted_engine) -> None:
    count, names = "SELECT count(*) FROM pets", "SELECT name FROM pets"
    scripted_engine([said(count), said(names), said(names), said(names)])
    code, doc, _ = ask(pets_db, "How many pets are there?", "-n", "2", "--merge-n", "2")
    assert code == 0 and doc["merged"] and doc["sql"] == names
    assert doc["confidence"]["merged"] and doc["confidence"]["merge_changed"]
    assert doc["confidence"]["summary"].endswith("the merge model changed the voted answer")

    scripted_engine([said(count), said(names), said(count), said(count)])
    code, doc, _ = ask(pets_db, "How many pets are there?", "-n", "2", "--merge-n", "2")
    assert code == 0 and doc["merged"] and not doc["confidence"]["merge_changed"]


def test_ask_explain_prints_the_sentences_under_the_sql(pets_db: Path, scripted_engine) -> None:
    scripted_engine([said("SELECT name FROM pets WHERE kind = 'dog'")] * 2)
    result = runner.invoke(
        app,
        ["ask", "--db", str(pets_db), "-m", "scripted", "-n", "2", "--no-merge", "--explain", "Which dogs?"],
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    where = lines.index("It keeps only the rows where kind equals 'dog'.")
    assert lines[where - 1] == "It reads the table pets." and lines[where + 1] == "It returns name."
    assert "confidence: no warning signs" in result.stderr


@pytest.fixture()
def service(pets_db: Path, scripted_engine):
    pytest.importorskip("fastapi", reason="needs the [serve] extra")
    from slmsql_cli.pipeline import AskConfig, Pipeline
    from slmsql_cli.serve.registry import Registry
    from slmsql_cli.serve.service import Service

    scripted_engine([said("SELECT name FROM pets WHERE age > 10")] * 4)
    pipeline = Pipeline.load("scripted", config=AskConfig(n=2, merge=False))
    svc = Service(pipeline, Registry.open([f"pets={pets_db}"]), model_name="scripted", load_seconds=0.0)
    yield svc
    svc.close()


def test_http_and_mcp_answers_carry_explanation_and_confidence(service) -> None:
    from mcp import Client
    from starlette.testclient import TestClient

    from slmsql_cli.serve.http import create_app
    from slmsql_cli.serve.mcp_server import build
    from slmsql_cli.serve.requestlog import RequestLog

    doc = TestClient(create_app(service)).post("/v1/ask", json={"question": "Old pets?"}).json()
    assert codes(doc) == ["empty"] and doc["explanation"].startswith("It reads the table pets.")

    async def call() -> dict:
        async with Client(build(service, RequestLog())) as client:
            result = await client.call_tool("ask", {"question": "Old pets?"})
            assert not result.is_error
            return result.structured_content

    answer = asyncio.run(call())
    assert codes(answer) == ["empty"] and answer["explanation"] == doc["explanation"]


@pytest.mark.parametrize(
    "db, question, expected",
    [
        (
            "spider_dev/database/world_1/world_1.sqlite",
            "How much surface area do the countires in the Carribean cover together?",
            ["Carribean"],
        ),  # fmt: skip
        (
            "spider_dev/database/world_1/world_1.sqlite",
            "How much surface area do the countries in the Caribbean cover?",
            [],
        ),  # fmt: skip
        (
            "spider_dev/database/tvshow/tvshow.sqlite",
            "Which country has the most of TV Channels?",
            [],
        ),  # a table's name
        (
            "bird_dev/dev_databases/student_club/student_club.sqlite",
            "How many students in the Student_Club are from the College of Engineering?",
            [],
        ),  # fmt: skip
        (
            "chinook/Chinook_Sqlite.sqlite",
            'Find the artists that have "a" in their names.',
            [],
        ),  # one letter: a pattern
        ("chinook/Chinook_Sqlite.sqlite", "How many albums did AC/DC release?", []),
    ],
)
def test_unmatched_values_on_real_databases(
    data_dir: Path, isolated_cache: Path, db: str, question: str, expected: list
) -> None:
    from slmsql_cli.database import open_database
    from slmsql_cli.unmatched import unmatched_values

    database = open_database(data_dir / db)
    assert unmatched_values(database, question, database.relevant_values(question)) == expected
