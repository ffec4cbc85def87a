"""Follow-up questions (issue 29) in the prompt builder, `chat`, `ask --after` and `--json`, with the
scripted engine: it records the prompts it is given, so each test reads what the model was asked.

The real model answers a follow-up in test_chat.py::test_chat_follows_up_with_the_real_model.
"""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from slmsql_cli import history, saved
from slmsql_cli.cli import app
from slmsql_cli.config import AskConfig
from slmsql_cli.conversation import DEFAULT_RENDERING, MAX_TURNS, Turn
from slmsql_cli.database import open_database
from slmsql_cli.pipeline import Pipeline, chat_text
from slmsql_cli.prompt_builder import CONTEXT_SHARE, generation_message
from slmsql_cli.prompts import question_text
from slmsql_cli.scripted import ScriptedEngine

runner = CliRunner()
COUNT = "SELECT count(*) FROM pets"
CATS = "SELECT count(*) FROM pets WHERE kind = 'cat'"
NAMES = "SELECT name FROM pets"
FIRST = "How many pets are there?"
FOLLOW = "and how many of them are cats?"


def said(sql: str) -> str:
    return f"<think>\nWrite it.\n</think>\n<answer>\n{sql}\n</answer>"


# ---- the prompt ----------------------------------------------------------------------------------


def test_a_single_question_is_todays_prompt(pets_db: Path) -> None:
    db = open_database(pets_db)
    pipeline = Pipeline(ScriptedEngine([]), None, AskConfig())
    alone = pipeline.generation_message(db, FIRST)
    assert alone.text == generation_message(db, FIRST).text
    assert alone.context is not None and (alone.context.used, alone.context.dropped) == ((), 0)
    assert DEFAULT_RENDERING == "questions"


def test_a_follow_up_carries_the_earlier_questions_after_the_same_schema(pets_db: Path) -> None:
    db = open_database(pets_db)
    # without the question's values (which reorder a column's examples, follow-up or not)
    pipeline = Pipeline(ScriptedEngine([]), None, AskConfig(use_values=False))
    first = pipeline.generation_message(db, FIRST).text
    follow = pipeline.generation_message(db, FOLLOW, turns=[Turn(FIRST, COUNT)])
    assert follow.context is not None and follow.context.used == (Turn(FIRST, COUNT),)
    assert f"Question:\n{FIRST} {FOLLOW}\n" in follow.text
    # everything up to the question is the first prompt's: the prompt cache reads only the rest
    prefix = first.split("Question:\n")[0]
    assert follow.text.startswith(prefix + "Question:\n")


def test_the_oldest_turns_are_dropped_to_fit_before_any_table(pets_db: Path) -> None:
    db = open_database(pets_db)
    engine = ScriptedEngine([])  # one token per byte
    turns = [Turn(f"earlier question number {i} about the pets", NAMES) for i in range(3)]
    whole = len(engine.tokenize(chat_text(engine, generation_message(db, FOLLOW).text)))
    one_turn = len(question_text(f"{turns[-1].question} {FOLLOW}")) - len(FOLLOW)
    budget = whole + one_turn + 5  # the whole schema and one earlier question, not two
    built = Pipeline(engine, None, AskConfig(prompt_budget=budget)).generation_message(
        db, FOLLOW, turns=turns
    )
    assert built.pruned is None  # no table left out
    assert built.context is not None
    assert built.context.used == (turns[-1],) and built.context.dropped == 2
    assert built.tokens is not None and built.tokens <= budget
    # with no room for any turn beside the whole schema, the tables win: the question alone
    tight = Pipeline(engine, None, AskConfig(prompt_budget=whole + 10)).generation_message(
        db, FOLLOW, turns=turns
    )
    assert tight.pruned is None and tight.context is not None
    assert (tight.context.used, tight.context.dropped) == ((), 3)
    assert tight.text == generation_message(db, FOLLOW).text


def test_with_a_pruned_schema_the_turns_take_a_bounded_share(data_dir: Path, isolated_cache: Path) -> None:
    root = data_dir / "spider_dev"
    db = open_database(
        root / "database/concert_singer/concert_singer.sqlite", root / "tables.json", "concert_singer"
    )
    engine = ScriptedEngine([])
    budget = 3000  # under the whole schema (~3,150 byte tokens): pruned whatever the turns
    long_turns = [
        Turn(f"Which singer sang in concert number {i}, in which stadium was it held, and in what year?")
        for i in range(10)
    ]
    pipeline = Pipeline(engine, None, AskConfig(prompt_budget=budget))
    built = pipeline.generation_message(db, "and their ages?", turns=long_turns)
    assert built.pruned is not None and built.context is not None
    kept = len(question_text(built.context.question)) - len("and their ages?")
    assert 0 < kept <= budget * CONTEXT_SHARE
    assert built.context.dropped >= 3 and built.context.dropped + len(built.context.used) == 10
    assert built.tokens is not None and built.tokens <= budget


# ---- chat ----------------------------------------------------------------------------------------


def chat(db: Path, questions: str, *args: str) -> Result:
    argv = ["chat", "--db", str(db), "-m", "scripted", "-n", "2", "--no-merge", *args]
    return runner.invoke(app, argv, input=questions)


def user_message(prompt: str) -> str:
    """The question field of a prompt the engine was given."""
    return prompt.split("Question:\n", 1)[1].split("\n\nInstructions:", 1)[0]


def test_chat_follows_up_and_new_forgets(pets_db: Path, scripted_engine) -> None:
    engine = scripted_engine([said(COUNT)] * 2 + [said(CATS)] * 2 + [said(NAMES)] * 2)
    result = chat(pets_db, f"{FIRST}\n{FOLLOW}\n/history\n/new\nWhat are their names?\n")
    assert result.exit_code == 0, result.stderr
    asked = [user_message(p) for p in engine.prompts]
    assert asked == [FIRST, f"{FIRST} {FOLLOW}", "What are their names?"]
    assert "follow-up of 1 earlier question(s)" in result.stderr
    assert result.stderr.count("follow-up of") == 2  # the summary line and the timings, once
    assert f"1. {FIRST}\n   {COUNT}\n2. {FOLLOW}\n   {CATS}\n" in result.stdout  # /history
    assert "new conversation" in result.stderr


def test_chat_no_context_asks_each_question_alone(pets_db: Path, scripted_engine) -> None:
    engine = scripted_engine([said(COUNT)] * 2 + [said(CATS)] * 2)
    result = chat(pets_db, f"{FIRST}\n{FOLLOW}\n/history\n", "--no-context")
    assert result.exit_code == 0, result.stderr
    assert [user_message(p) for p in engine.prompts] == [FIRST, FOLLOW]
    assert "follow-up" not in result.stderr and "each question is asked alone" in result.stderr


def test_chat_keeps_a_failed_turn_without_sql_and_at_most_max_turns(pets_db: Path, scripted_engine) -> None:
    bad = said("SELECT nothing FROM nowhere")
    engine = scripted_engine([bad] * 2 + [said(COUNT)] * 2 * (MAX_TURNS + 1))
    questions = [f"question {i}" for i in range(MAX_TURNS + 2)]
    result = chat(pets_db, "\n".join(questions) + "\n/history\n")
    assert result.exit_code == 1  # the first one failed
    assert f"{MAX_TURNS + 2}. question {MAX_TURNS + 1}\n   {COUNT}\n" in result.stdout  # /history
    assert "1. question 0\n   (no answer)\n" in result.stdout
    assert user_message(engine.prompts[1]) == "question 0 question 1"
    assert user_message(engine.prompts[-1]) == " ".join(questions[1:])  # 8 earlier, the oldest gone
    assert "the oldest 1 left out to fit the prompt" in result.stderr


def test_a_follow_up_is_not_answered_from_a_saved_answer(pets_db: Path, scripted_engine) -> None:
    scripted_engine([said(CATS)] * 2)
    kept = chat(pets_db, "How many cats?\n", "--save")
    assert kept.exit_code == 0 and "saved as answer #1" in kept.stderr
    engine = scripted_engine([said(COUNT)] * 2 + [said(NAMES)] * 2)
    result = chat(pets_db, f"{FIRST}\nHow many cats?\n", "--save")
    assert result.exit_code == 0, result.stderr
    assert len(engine.prompts) == 2  # the second, a follow-up, went to the model
    assert "not saved: a follow-up's SQL answers it together with the earlier questions" in result.stderr


# ---- ask --after and --json ---------------------------------------------------------------------


def ask(db: Path, question: str, *args: str) -> tuple[Result, dict]:
    argv = ["ask", "--db", str(db), "-m", "scripted", "-n", "2", "--no-merge", "--json", *args, question]
    result = runner.invoke(app, argv)
    doc = json.loads(result.stdout) if result.stdout.strip() else {}
    return result, doc


def test_ask_after_the_last_answer(pets_db: Path, isolated_cache: Path, scripted_engine) -> None:
    engine = scripted_engine([said(COUNT)] * 2 + [said(CATS)] * 2 + [said(NAMES)] * 2)
    first, doc = ask(pets_db, FIRST)
    assert first.exit_code == 0, first.stderr
    assert doc["context"] == {"rendering": DEFAULT_RENDERING, "turns": [], "dropped": 0}
    second, doc = ask(pets_db, FOLLOW, "--after", "-")
    assert second.exit_code == 0, second.stderr
    assert doc["context"]["turns"] == [{"question": FIRST, "sql": COUNT}]
    third, doc = ask(pets_db, "and their names?", "--after", "-")  # follows the whole thread
    assert [t["question"] for t in doc["context"]["turns"]] == [FIRST, FOLLOW]
    assert user_message(engine.prompts[-1]) == f"{FIRST} {FOLLOW} and their names?"
    path = history.history_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_ask_after_a_saved_answer(pets_db: Path, scripted_engine) -> None:
    saved.save(open_database(pets_db), "How many dogs?", "SELECT count(*) FROM pets WHERE kind = 'dog'")
    engine = scripted_engine([said(NAMES)] * 2)
    result, doc = ask(pets_db, "and their names?", "--after", "1")
    assert result.exit_code == 0, result.stderr
    assert doc["context"]["turns"] == [
        {"question": "How many dogs?", "sql": "SELECT count(*) FROM pets WHERE kind = 'dog'"}
    ]
    assert user_message(engine.prompts[0]) == "How many dogs? and their names?"


def test_ask_after_says_what_is_wrong(pets_db: Path, tmp_path: Path, scripted_engine) -> None:
    scripted_engine([])
    result, _ = ask(pets_db, FOLLOW, "--after", "-")
    assert result.exit_code == 2 and "no earlier answer on pets.sqlite to follow" in result.stderr
    result, _ = ask(pets_db, FOLLOW, "--after", "last")
    assert result.exit_code == 2 and "--after takes a saved answer's number or '-'" in result.stderr
    result, _ = ask(pets_db, FOLLOW, "--after", "7")
    assert result.exit_code == 2 and "no saved answer #7" in result.stderr
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    saved.save(open_database(other), "How many?", "SELECT count(*) FROM t")
    result, _ = ask(pets_db, FOLLOW, "--after", "1")
    assert result.exit_code == 2 and "is about another database" in result.stderr, result.stderr


def test_history_keeps_the_last_answers_of_each_database(pets_db: Path, isolated_cache: Path) -> None:
    db = open_database(pets_db)
    for i in range(history.KEPT_ANSWERS + 5):
        history.record(db, Turn(f"q{i}", None), [Turn(f"earlier {i}", "SELECT 1")])
    doc = json.loads(history.history_path().read_text())
    (kept,) = doc["databases"].values()
    assert len(kept["answers"]) == history.KEPT_ANSWERS
    assert history.after(db, "-") == [
        Turn(f"earlier {history.KEPT_ANSWERS + 4}", "SELECT 1"),
        Turn(f"q{history.KEPT_ANSWERS + 4}", None),
    ]


def test_an_unwritable_cache_is_one_warning_and_no_history(
    pets_db: Path, tmp_path: Path, monkeypatch, scripted_engine
) -> None:
    blocker = tmp_path / "a-file"  # a cache under a plain file: ENOTDIR, for root too
    blocker.write_text("not a folder")
    monkeypatch.setenv("SLMSQL_CACHE_DIR", str(blocker / "cache"))
    scripted_engine([said(COUNT)] * 2)
    result, doc = ask(pets_db, FIRST)
    assert result.exit_code == 0 and doc["sql"] == COUNT, result.stderr
    assert result.stderr.count("warning: cannot write the cache folder") == 1
    result, _ = ask(pets_db, FOLLOW, "--after", "-")
    assert result.exit_code == 2 and "no earlier answer" in result.stderr
