"""Saved answers (`slmsql_cli/saved.py`, `ask --save`, `slmsql saved ...`) through the real CLI.

The scripted engine stands for the model: a test that expects an answer from the store gives it no
completions, so a model call would fail the test. The store, the database and the executor are real.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from slmsql_cli.cli import app

runner = CliRunner()
COUNT = "SELECT count(*) FROM pets"
AGES = "SELECT avg(age) FROM pets"


def said(sql: str) -> str:
    return f"<think>\nWrite it.\n</think>\n<answer>\n{sql}\n</answer>"


def ask(db: Path, question: str, *args: str) -> tuple[int, dict, str]:
    argv = ["ask", "--db", str(db), "-m", "scripted", "-n", "2", "--no-merge", "--json", *args, question]
    result = runner.invoke(app, argv)
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {}, result.stderr


def test_a_saved_question_is_answered_again_from_the_store(pets_db: Path, scripted_engine) -> None:
    scripted_engine([said(COUNT)] * 2)
    code, doc, err = ask(pets_db, "How many pets are there?", "--save")
    assert code == 0 and doc["saved_answer"] is None and doc["rows"] == [[2]]
    assert "saved as answer #1" in err

    # the same question up to case, whitespace and trailing punctuation: no model (no script left)
    code, doc, err = ask(pets_db, "  how many PETS   are there ?! ")
    assert code == 0, err
    assert (doc["saved_answer"], doc["sql"], doc["rows"]) == (1, COUNT, [[2]])
    assert doc["confidence"]["saved_answer"] == 1 and doc["confidence"]["flags"] == []

    with sqlite3.connect(pets_db) as con:  # new rows, same schema: the saved SQL runs on them
        con.execute("INSERT INTO pets VALUES ('Kit', 'cat', 1)")
    con.close()
    table = runner.invoke(app, ["ask", "--db", str(pets_db), "-m", "scripted", "How many pets are there"])
    # the summary goes to stderr, beside the vote summary of a model's answer
    assert table.exit_code == 0 and "saved answer #1: its SQL ran again on the current data" in table.stderr
    assert "│ 3 " in table.stdout or " 3 " in table.stdout

    scripted_engine([said(AGES)] * 2)  # --fresh asks the model anyway
    code, doc, _ = ask(pets_db, "How many pets are there?", "--fresh")
    assert code == 0 and doc["saved_answer"] is None and doc["sql"] == AGES


def test_a_similar_question_is_only_suggested(pets_db: Path, scripted_engine) -> None:
    scripted_engine([said(COUNT)] * 4)
    assert ask(pets_db, "How many pets are there?", "--save")[0] == 0
    code, doc, err = ask(pets_db, "How many pets are there in total?")
    assert code == 0 and doc["saved_answer"] is None  # the model answered
    assert 'a saved question is similar: "How many pets are there?" (saved answer #1)' in err
    assert len(doc["notes"]) == 1 and doc["notes"][0] in err.splitlines()  # the same line in --json


def test_a_saved_sql_broken_by_a_schema_change_is_reported_and_skipped(
    pets_db: Path, scripted_engine
) -> None:
    scripted_engine([said(AGES)] * 2)
    assert ask(pets_db, "What is the average age?", "--save")[0] == 0
    with sqlite3.connect(pets_db) as con:
        con.execute("ALTER TABLE pets RENAME COLUMN age TO years")
    con.close()
    scripted_engine([said("SELECT avg(years) FROM pets")] * 2)
    code, doc, err = ask(pets_db, "What is the average age?")
    assert code == 0 and doc["saved_answer"] is None and doc["rows"] == [[4.0]]
    assert "saved answer #1 no longer runs (no such column: age); it was skipped" in err


def test_list_show_rm_export_import_round_trip(pets_db: Path, tmp_path: Path, scripted_engine) -> None:
    scripted_engine([said(COUNT)] * 2 + [said(AGES)] * 2)
    ask(pets_db, "How many pets are there?", "--save")
    ask(pets_db, "What is the average age?", "--evidence", "age is in years", "--save")
    listed = runner.invoke(app, ["saved", "list", "--json"])
    assert [json.loads(line)["question"] for line in listed.stdout.splitlines()] == [
        "How many pets are there?",
        "What is the average age?",
    ]
    shown = json.loads(runner.invoke(app, ["saved", "show", "2", "--json"]).stdout)
    assert (shown["sql"], shown["evidence"], shown["database"]) == (AGES, "age is in years", "pets.sqlite")

    exported = tmp_path / "saved.jsonl"
    assert runner.invoke(app, ["saved", "export", "--db", str(pets_db), "-o", str(exported)]).exit_code == 0
    for entry_id in ("1", "2"):
        assert runner.invoke(app, ["saved", "rm", entry_id]).exit_code == 0
    assert runner.invoke(app, ["saved", "list", "--json"]).stdout == ""
    gone = runner.invoke(app, ["saved", "show", "1"])
    assert gone.exit_code == 2 and "there is no saved answer #1" in gone.stderr

    imported = runner.invoke(app, ["saved", "import", str(exported), "--db", str(pets_db)])
    assert imported.exit_code == 0 and "imported 2 saved answer(s) for pets.sqlite" in imported.stderr
    again = [json.loads(line) for line in runner.invoke(app, ["saved", "export"]).stdout.splitlines()]
    before = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [{k: d[k] for k in ("question", "evidence", "sql")} for d in again] == [
        {k: d[k] for k in ("question", "evidence", "sql")} for d in before
    ]
    code, doc, _ = ask(pets_db, "what is the average age", "--evidence", "Age is in years.")
    assert code == 0 and doc["saved_answer"] is not None and doc["rows"] == [[4.0]]


def test_import_checks_every_sql_and_skips_what_fails(
    pets_db: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    lines = [
        json.dumps({"question": "How many pets?", "sql": COUNT}),
        json.dumps({"question": "Remove them", "sql": "DELETE FROM pets"}),
        json.dumps({"question": "Owners?", "sql": "SELECT * FROM owners"}),
        "{not json",
        json.dumps({"question": "No SQL"}),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["saved", "import", str(source), "--db", str(pets_db)])
    assert result.exit_code == 1
    assert "imported 1 saved answer(s)" in result.stderr
    assert "line 2: this SQL is refused:" in result.stderr and "DELETE" in result.stderr
    assert "line 3: pets.sqlite has no table named owners" in result.stderr
    assert (
        "line 4: not a saved answer" in result.stderr
        and "line 5: not a saved answer (no 'sql')" in result.stderr
    )
    assert [json.loads(x)["sql"] for x in runner.invoke(app, ["saved", "export"]).stdout.splitlines()] == [
        COUNT
    ]


def test_serve_saves_answers_from_repeats_and_refuses_writes(pets_db: Path, scripted_engine) -> None:
    import asyncio

    import pytest

    pytest.importorskip("fastapi", reason="needs the [serve] extra")
    from mcp import Client
    from starlette.testclient import TestClient

    from slmsql_cli.pipeline import AskConfig, Pipeline
    from slmsql_cli.serve.http import create_app
    from slmsql_cli.serve.mcp_server import build
    from slmsql_cli.serve.registry import Registry
    from slmsql_cli.serve.requestlog import RequestLog
    from slmsql_cli.serve.service import Service

    scripted_engine([said(COUNT)] * 2 + [said(AGES)] * 2)
    pipeline = Pipeline.load("scripted", config=AskConfig(n=2, merge=False))
    service = Service(pipeline, Registry.open([f"pets={pets_db}"]), model_name="scripted", load_seconds=0.0)
    try:

        async def mcp_ask(arguments: dict) -> dict:
            async with Client(build(service, RequestLog())) as client:
                result = await client.call_tool("ask", arguments)
                assert not result.is_error, result.content
                return result.structured_content

        kept = asyncio.run(mcp_ask({"question": "How many pets?", "save": True}))
        assert kept["saved_answer"] is None and kept["notes"][-1].startswith("saved as answer #1")
        again = asyncio.run(mcp_ask({"question": "how many pets"}))
        assert again["saved_answer"] == 1 and again["rows"] == [[2]]

        client = TestClient(create_app(service))
        refused = client.post("/v1/saved", json={"question": "Gone?", "sql": "DELETE FROM pets"})
        assert refused.status_code == 400 and "refused" in refused.json()["error"]
        saved = client.post("/v1/saved", json={"question": "Mean age?", "sql": AGES}).json()
        assert (saved["id"], saved["sql"], saved["database"]) == (2, AGES, "pets")
        assert client.post("/v1/ask", json={"question": "mean age?"}).json()["saved_answer"] == 2
        fresh = client.post("/v1/ask", json={"question": "mean age?", "fresh": True}).json()
        assert fresh["saved_answer"] is None and fresh["sql"] == AGES  # the model's own answer
    finally:
        service.close()
