"""`ask`, `chat` and `eval` through the real CLI with a scripted engine (fixed completions).

Everything but the model is real: the Spider database and tables.json, the prompt builder, the
chat template, SQL extraction, execution, voting and the corrective merge. The model's answers
are written in each test, so the answers the commands print are known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slmsql_cli.cli import app
from slmsql_cli.database import open_database
from slmsql_cli.merge import merge_message
from slmsql_cli.prompt_builder import generation_message, matched_values, schema_block
from slmsql_cli.prompts import SYSTEM_PROMPT, fallback_template, render_chat
from slmsql_cli.vote import Candidate, vote

runner = CliRunner()
QUESTION = "How many singers do we have?"
COUNT = "SELECT count(*) FROM singer"
COUNT_IDS = "SELECT count(Singer_ID) FROM singer"  # other text, same result: same vote group
STADIUMS = "SELECT count(*) FROM stadium"  # 9 rows: a different result


def said(sql: str) -> str:
    """A completion in the shape SLM-SQL models write."""
    return f"<think>\nCount the rows.\n</think>\n<answer>\n{sql}\n</answer>"


@pytest.fixture()
def spider(data_dir: Path, isolated_cache: Path) -> dict[str, Path]:
    root = data_dir / "spider_dev"
    return {
        "db": root / "database/concert_singer/concert_singer.sqlite",
        "tables": root / "tables.json",
        "questions": root / "dev.json",
        "db_dir": root / "database",
    }


def chat_text(user_message: str) -> str:
    """What the engine must be given: the system prompt and the message in Qwen2's ChatML."""
    template = fallback_template("qwen2")
    assert template is not None
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user_message}]
    return render_chat(template, messages, bos_token="", eos_token="", add_generation_prompt=True)


def ask(spider: dict[str, Path], *args: str) -> tuple[int, dict, str]:
    result = runner.invoke(
        app,
        ["ask", "--db", str(spider["db"]), "--tables", str(spider["tables"]), "--json", *args, QUESTION],
    )
    doc = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {}
    return result.exit_code, doc, result.stderr


def test_ask_majority_wins_without_merge(spider: dict[str, Path], scripted_engine) -> None:
    engine = scripted_engine([said(COUNT), said(STADIUMS), said(COUNT_IDS), said(COUNT)])
    code, doc, err = ask(spider, "--model", "scripted", "--no-merge", "-n", "4")
    assert code == 0, err
    assert (doc["sql"], doc["rows"], doc["columns"]) == (COUNT, [[6]], ["count(*)"])
    assert (doc["votes"], doc["candidates_sampled"], doc["merged"]) == (3, 4, False)
    assert [c["group"] for c in doc["candidates"]] == [0, 1, 0, 0]
    assert [c["votes"] for c in doc["candidates"]] == [3, 1, 3, 3]
    # the model was given exactly the generation prompt of `slmsql prompt`, in the chat template
    db = open_database(spider["db"], spider["tables"], "concert_singer")
    assert engine.prompts == [chat_text(generation_message(db, QUESTION).text)]


def test_ask_agreement_needs_no_merge(spider: dict[str, Path], scripted_engine) -> None:
    engine = scripted_engine([said(COUNT), said(COUNT_IDS)])
    code, doc, _ = ask(spider, "--model", "scripted", "-n", "2")  # merge on, the generator revises
    assert code == 0 and doc["sql"] == COUNT and not doc["merged"] and doc["merge_candidates"] == []
    assert len(engine.prompts) == 1


def test_ask_split_vote_is_merged_by_the_merge_model(spider: dict[str, Path], scripted_engine) -> None:
    generator = scripted_engine([said(STADIUMS), said(COUNT), said(COUNT_IDS), said(STADIUMS)])
    merger = scripted_engine(
        [said(COUNT_IDS), said("SELECT nonsense FROM nowhere"), said(COUNT_IDS)], "scripted:merger"
    )
    code, doc, err = ask(
        spider, "--model", "scripted", "--merge-model", "scripted:merger", "-n", "4", "--merge-n", "3"
    )
    assert code == 0, err
    assert (doc["sql"], doc["rows"], doc["merged"]) == (COUNT_IDS, [[6]], True)
    assert (doc["votes"], doc["candidates_sampled"]) == (2, 3)  # the revision round's agreement
    assert [c["error"] is not None for c in doc["merge_candidates"]] == [False, True, False]
    # the merge model saw the two largest groups, the first-voted draft first, with their results
    db = open_database(spider["db"], spider["tables"], "concert_singer")
    candidates = [
        Candidate(said(s), s, db.run(s, timeout=10)) for s in (STADIUMS, COUNT, COUNT_IDS, STADIUMS)
    ]
    details = schema_block(db, matched_values(db, QUESTION))
    assert merger.prompts == [chat_text(merge_message(details, db.schema, QUESTION, "", vote(candidates)))]
    assert len(generator.prompts) == 1


def test_ask_nothing_runs_exit_1_with_the_first_sql(spider: dict[str, Path], scripted_engine) -> None:
    scripted_engine(["I do not know.", said("SELECT age FROM singers"), said("DROP TABLE singer")])
    code, doc, _ = ask(spider, "--model", "scripted", "--no-merge", "--no-constrain", "-n", "3")
    assert code == 1
    assert doc["sql"] == "SELECT age FROM singers" and "no such table" in doc["error"]
    assert doc["votes"] == 0 and [c["sql"] for c in doc["candidates"]] == [
        None,
        "SELECT age FROM singers",
        "DROP TABLE singer",
    ]


def test_ask_sql_only_and_csv(spider: dict[str, Path], scripted_engine) -> None:
    scripted_engine([said(COUNT)] * 2)
    base = ["ask", "--db", str(spider["db"]), "--model", "scripted", "--no-merge", "-n", "1"]
    assert runner.invoke(app, [*base, "--sql-only", QUESTION]).stdout == COUNT + "\n"
    assert runner.invoke(app, [*base, "--csv", QUESTION]).stdout.splitlines() == ["count(*)", "6"]


def test_chat_answers_each_question_with_one_loaded_model(spider: dict[str, Path], scripted_engine) -> None:
    engine = scripted_engine([said(COUNT), said(COUNT), said(STADIUMS), said(STADIUMS)])
    result = runner.invoke(
        app,
        ["chat", "--db", str(spider["db"]), "--model", "scripted", "--no-merge", "-n", "2"],
        input=f"{QUESTION}\n\nHow many stadiums are there?\nexit\n",
    )
    assert result.exit_code == 0, result.stderr
    assert len(engine.prompts) == 2 and "How many stadiums are there?" in engine.prompts[1]
    assert COUNT in result.stdout and STADIUMS in result.stdout
    # piped questions are echoed before their answers; the vote summary is a diagnostic (stderr)
    lines = result.stdout.splitlines()
    assert lines.index(f"> {QUESTION}") < lines.index(COUNT) < lines.index("> How many stadiums are there?")
    assert "2/2 candidates agreed" in result.stderr and "agreed" not in result.stdout
    assert engine.closed


def test_eval_with_a_scripted_model_scores_exactly(
    spider: dict[str, Path], scripted_engine, tmp_path: Path
) -> None:
    questions = json.loads(spider["questions"].read_text())[:3]
    wrong = "SELECT name FROM singer"
    scripted_engine(
        [said(questions[0]["query"])] * 2  # right
        + [said(wrong)] * 2  # wrong
        + ["no SQL here", said(questions[2]["query"])]  # the one that runs wins
    )
    out = tmp_path / "results.jsonl"
    args = ["eval", "-q", str(spider["questions"]), "--db-dir", str(spider["db_dir"])]
    result = runner.invoke(
        app,
        [*args, "--model", "scripted", "--no-merge", "-n", "2", "--limit", "3", "--out", str(out), "--json"],
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["correct"], summary["total"], summary["ex"]) == (2, 3, 66.67)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["correct"] for r in records] == [True, False, True]
    assert [r["pred"] for r in records] == [questions[0]["query"], wrong, questions[2]["query"]]
    assert records[2]["candidates"][0] == {
        "sql": None,
        "group": None,
        "votes": 0,
        "error": "no SQL",
        "finish_reason": "eog",
    }
    assert records[0]["run"]["model"] == "scripted" and records[0]["run"]["n"] == 2
