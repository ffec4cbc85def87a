"""`slmsql eval --format sparc|cosql`: follow-up questions scored turn by turn, by interaction and by
turn index, on the hand-checked SParC and CoSQL interactions in tests/data; resume; the earlier
turns a model is given (its own answers, or the gold)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slmsql_cli.cli import app
from slmsql_cli.conversation import Turn
from slmsql_cli.database import open_database
from slmsql_cli.eval import questions as qfile
from slmsql_cli.eval import results as resfile
from slmsql_cli.eval import run as evrun
from slmsql_cli.prompt_builder import generation_message
from slmsql_cli.prompts import SYSTEM_PROMPT, fallback_template, render_chat

runner = CliRunner()

# The 14 turns of tests/data/sparc_dev/dev.json, with a prediction for each and whether Spider's
# rule finds it right (checked by hand against the gold's rows).
HAND = [
    # interaction 0, world_1
    ("SELECT DISTINCT CountryCode FROM countrylanguage", True),
    ("SELECT DISTINCT CountryCode FROM countrylanguage WHERE Language = 'English'", False),  # negation lost
    # interaction 1, concert_singer
    ("SELECT * FROM singer", True),
    ("SELECT count(*) FROM singer", True),
    # interaction 2
    ("SELECT name FROM singer", True),
    ("SELECT name, country, age FROM singer", True),
    ("SELECT name, country, age FROM singer ORDER BY age", False),  # the gold orders DESC
    # interaction 3 (4 turns)
    ("SELECT song_name FROM singer", True),
    ("SELECT song_release_year, song_name FROM singer", True),  # columns permuted: Spider allows it
    ("", False),  # no answer
    ("SELECT song_name, song_release_year FROM singer ORDER BY age LIMIT 1", True),
    # interaction 4
    ("SELECT capacity FROM stadium", True),
    ("SELECT avg(capacity) FROM stadium", True),
    ("SELECT avg(capacity), max(capacity) FROM stadium", True),
]


@pytest.fixture()
def sparc(data_dir: Path) -> dict[str, Path]:
    return {
        "questions": data_dir / "sparc_dev/dev.json",
        "cosql": data_dir / "cosql_dev/dev.json",
        "db_dir": data_dir / "spider_dev/database",
        "tables": data_dir / "spider_dev/tables.json",
    }


def _lines(path: Path, sqls: list[str]) -> Path:
    path.write_text("".join(" ".join(sql.split()) + "\n" for sql in sqls), encoding="utf-8")
    return path


def _eval(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["eval", *map(str, args)])


def _summary(result) -> dict:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def said(sql: str) -> str:
    return f"<think>\n\n</think>\n<answer>\n{sql}\n</answer>"


def chat_text(user_message: str) -> str:
    """The scripted engine's prompt for a user message: the system prompt and it in Qwen2's ChatML."""
    template = fallback_template("qwen2")
    assert template is not None
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user_message}]
    return render_chat(template, messages, bos_token="", eos_token="", add_generation_prompt=True)


# --- reading the file ---------------------------------------------------------------------------


def test_each_turn_is_a_question_with_its_place_and_its_earlier_turns(sparc: dict[str, Path]) -> None:
    questions, fmt = qfile.load_questions(sparc["questions"])
    assert fmt == "sparc" and len(questions) == 14
    assert [q.index for q in questions] == list(range(14))
    assert [(q.place.interaction, q.place.turn) for q in questions if q.place][:4] == [
        (0, 1),
        (0, 2),
        (1, 1),
        (1, 2),
    ]
    assert [q.level for q in questions[7:11]] == ["1", "2", "3", "4+"]  # the 4-turn interaction
    fourth = questions[10]
    assert fourth.place is not None and fourth.place.turns == 4 and fourth.db_id == "concert_singer"
    assert fourth.question == "What is the result for the song by the yongest?"
    assert fourth.place.earlier == (
        Turn("Show the names of all songs.", "select song_name from singer"),
        Turn(
            "Also show the release year for each of them.",
            "SELECT song_name ,  song_release_year FROM singer",
        ),
        Turn(
            "Order the result by the age of their singers.",
            "SELECT song_name ,  song_release_year FROM singer ORDER BY age",
        ),
    )
    assert questions[0].place is not None and questions[0].place.earlier == ()
    cosql, fmt = qfile.load_questions(sparc["cosql"], "cosql")
    assert fmt == "cosql" and [q.place.turn for q in cosql if q.place] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([{"database_id": "pets_1", "interaction": []}], "interaction 0 in .* has no turns"),
        ([{"interaction": [{"utterance": "Hi?", "query": "SELECT 1"}]}], "has no database_id"),
        (
            [
                {
                    "database_id": "pets_1",
                    "interaction": [{"utterance": "Hi?", "query": "SELECT 1"}, {"utterance": "x"}],
                }
            ],
            "interaction 0 turn 2 in .* has no query",
        ),
        ([{"database_id": "pets_1", "interaction": ["Hi?"]}], "interaction 0 turn 1 in .* has no utterance"),
    ],
)
def test_a_malformed_interaction_is_named(tmp_path: Path, doc: list, message: str) -> None:
    from slmsql_cli.errors import UserError

    path = tmp_path / "dev.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match=message):
        qfile.load_questions(path)


# --- scoring ------------------------------------------------------------------------------------


def test_gold_predictions_score_every_turn_whose_gold_runs(sparc: dict[str, Path], tmp_path: Path) -> None:
    """SParC: every gold runs as Spider's evaluator rewrites it (interaction 0's `! =` included), so
    100%. CoSQL's interaction holds the one gold of CoSQL dev that does not run: that turn counts
    as wrong (in the total, never right), the summary says so, and the interaction is not right."""
    questions, _ = qfile.load_questions(sparc["questions"])
    gold = _lines(tmp_path / "gold.sql", [q.gold for q in questions])
    summary = _summary(_eval("-q", sparc["questions"], "--db-dir", sparc["db_dir"], "-p", gold, "--json"))
    assert (summary["correct"], summary["total"], summary["ex"], summary["gold_errors"]) == (14, 14, 100.0, 0)
    assert summary["interactions"] == {"ex": 100.0, "correct": 5, "total": 5, "partial": 0}
    assert summary["format"] == "sparc"

    cosql, _ = qfile.load_questions(sparc["cosql"])
    gold = _lines(tmp_path / "cosql.sql", [q.gold for q in cosql])
    result = _eval(
        "-q", sparc["cosql"], "--format", "cosql", "--db-dir", sparc["db_dir"], "-p", gold, "--json"
    )
    summary = _summary(result)
    assert (summary["correct"], summary["total"], summary["gold_errors"]) == (3, 4, 1)
    assert summary["by_level"]["2"] == {"ex": 0.0, "correct": 0, "total": 1}  # the turn whose gold fails
    assert summary["interactions"] == {"ex": 0.0, "correct": 0, "total": 1, "partial": 0}
    assert "1 gold query(ies) failed to execute and count as wrong" in result.stderr


def test_hand_checked_predictions_per_turn_interaction_and_turn_index(
    sparc: dict[str, Path], tmp_path: Path
) -> None:
    questions, _ = qfile.load_questions(sparc["questions"])
    out = tmp_path / "r.jsonl"
    preds = _lines(tmp_path / "p.sql", [sql for sql, _ in HAND])
    args = ["-q", sparc["questions"], "--db-dir", sparc["db_dir"], "-p", preds, "-o", out]
    summary = _summary(_eval(*args, "--json"))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["correct"] for r in records] == [right for _, right in HAND]
    assert (summary["correct"], summary["total"]) == (11, 14)
    assert {lv: (s["correct"], s["total"]) for lv, s in summary["by_level"].items()} == {
        "1": (5, 5),
        "2": (4, 5),  # world_1's second turn
        "3": (1, 3),  # only the stadiums' third turn
        "4+": (1, 1),
    }
    # every turn right: interactions 1 (singers counted) and 4 (stadiums)
    assert summary["interactions"] == {"ex": 40.0, "correct": 2, "total": 5, "partial": 0}
    assert [(r["interaction"], r["turn"], r["turns"]) for r in records[7:11]] == [
        (3, t, 4) for t in range(1, 5)
    ]
    assert records[9]["error"] == "no SQL" and records[0]["earlier"] is None  # given SQL: no model context
    # the summary table names the turns and adds the interactions' row
    table = _eval(*args)
    assert table.exit_code == 0 and "interactions" in table.stdout and "4+" in table.stdout


def test_resume_and_interactions_not_scored_whole(sparc: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    preds = _lines(tmp_path / "p.sql", [sql for sql, _ in HAND])
    args = ["-q", sparc["questions"], "--db-dir", sparc["db_dir"], "-p", preds, "-o", out, "--json"]
    first = _summary(_eval(*args, "--limit", 5))  # interactions 0 and 1 whole, 2's first turn
    assert (first["correct"], first["total"]) == (4, 5)
    assert first["interactions"] == {"ex": 50.0, "correct": 1, "total": 2, "partial": 1}
    again = _eval(*args)
    assert "resuming" in again.stderr and "5 of 14" in again.stderr
    whole = _summary(again)
    assert (whole["correct"], whole["total"], whole["interactions"]["correct"]) == (11, 14, 2)
    assert [json.loads(line)["index"] for line in out.read_text().splitlines()] == list(range(14))


def test_interaction_summary_from_records() -> None:
    """The rule alone: an interaction counts once all its turns are scored, and is right only if all are."""

    def rec(interaction: int, turn: int, turns: int, correct: bool) -> dict:
        return {"index": 0, "interaction": interaction, "turn": turn, "turns": turns, "correct": correct}

    records = [
        rec(0, 1, 2, True),
        rec(0, 2, 2, True),
        rec(1, 1, 3, True),
        rec(1, 2, 3, False),
        rec(1, 3, 3, True),
    ]
    records += [rec(2, 1, 2, True)]  # its second turn was not scored
    assert resfile.summarize_interactions(records) == {"ex": 50.0, "correct": 1, "total": 2, "partial": 1}
    assert resfile.summarize_interactions([{"index": 0, "correct": True}]) is None  # Spider records
    assert "interactions" not in resfile.summarize([{"index": 0, "correct": True, "level": "easy"}], "spider")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--earlier-turns", "evidence"], "--earlier-turns apply to follow-up questions"),
        (["--earlier-sql", "gold"], "--earlier-sql apply to follow-up questions"),
        (["--earlier-turns", "all"], "'all' is not one of"),
    ],
)
def test_earlier_turn_options_are_for_follow_ups(
    data_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    preds = _lines(tmp_path / "p.sql", ["SELECT count(*) FROM singer"])
    spider = data_dir / "spider_dev/dev.json"
    result = _eval("-q", spider, "--db-dir", data_dir / "spider_dev/database", "-p", preds, *args)
    assert result.exit_code == 2 and message in result.stderr


# --- a model answering follow-ups (scripted engine) ------------------------------------------------


def _model_eval(sparc: dict[str, Path], out: Path, *args: object):  # type: ignore[no-untyped-def]
    return _eval(
        "-q", sparc["questions"], "--db-dir", sparc["db_dir"], "--tables", sparc["tables"],
        "--model", "scripted", "-n", "1", "--no-merge", "-o", out, "--json", *args,
    )  # fmt: skip


def test_a_model_is_given_its_own_earlier_answers_and_resumes_with_them(
    sparc: dict[str, Path], scripted_engine, tmp_path: Path, isolated_cache: Path
) -> None:
    """--earlier-turns evidence: turn 2 is asked after turn 1's question and the SQL the model wrote
    for it (wrong here), not the gold; a resumed run takes that SQL from the results file."""
    out = tmp_path / "r.jsonl"
    engine = scripted_engine(
        [said("SELECT DISTINCT CountryCode FROM countrylanguage"), said("SELECT nothing FROM nowhere")]
        + [said("SELECT name FROM singer")]  # interaction 1, turn 1: wrong (the gold is SELECT *)
    )
    summary = _summary(_model_eval(sparc, out, "--earlier-turns", "evidence", "--limit", 3))
    assert (summary["correct"], summary["total"]) == (1, 3)
    assert "Previous question: What are the country codes of all the countries?\n" in engine.prompts[1]
    assert (
        "Its SQL: SELECT DISTINCT CountryCode FROM countrylanguage\nOf those, which do not"
        in engine.prompts[1]
    )
    assert "Previous question" not in engine.prompts[2]  # a new interaction starts afresh

    engine = scripted_engine([said("SELECT count(*) FROM singer")])
    resumed = _model_eval(sparc, out, "--earlier-turns", "evidence", "--limit", 4)
    summary = _summary(resumed)
    assert "resuming" in resumed.stderr and (summary["correct"], summary["total"]) == (2, 4)
    [prompt] = engine.prompts
    assert (
        "Previous question: Show information for all singers.\nIts SQL: SELECT name FROM singer\nHow many are there?"
        in prompt
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[3]["earlier"] == {"rendering": "evidence", "turns": 1, "dropped": 0}
    assert records[2]["earlier"] == {"rendering": "evidence", "turns": 0, "dropped": 0}
    # what the context cost: the scripted engine's prompt is a token a byte
    assert records[3]["prompt_tokens"] == len(prompt.encode("utf-8"))
    assert records[3]["run"]["rendering"] == "evidence" and records[3]["run"]["earlier_sql"] == "predicted"

    # the same file with another rendering is another run
    other = _model_eval(sparc, out, "--earlier-turns", "questions", "--limit", 4)
    assert other.exit_code == 2 and "another run" in other.stderr


def test_gold_earlier_sql_and_no_context(
    sparc: dict[str, Path], scripted_engine, tmp_path: Path, isolated_cache: Path
) -> None:
    """--earlier-sql gold shows the gold SQL of earlier turns; --earlier-turns none asks each turn
    alone, in exactly the single question's prompt; questions (the default) joins the questions."""
    skip_world = ["--limit", 4]
    engine = scripted_engine([said("SELECT 1")] * 4)
    _summary(
        _model_eval(
            sparc,
            tmp_path / "gold.jsonl",
            "--earlier-turns",
            "evidence",
            "--earlier-sql",
            "gold",
            *skip_world,
        )
    )
    assert (
        "Previous question: Show information for all singers.\nIts SQL: SELECT * FROM singer\n"
        in engine.prompts[3]
    )

    engine = scripted_engine([said("SELECT 1")] * 4)
    _summary(_model_eval(sparc, tmp_path / "none.jsonl", "--earlier-turns", "none", *skip_world))
    db = open_database(
        sparc["db_dir"] / "concert_singer/concert_singer.sqlite", sparc["tables"], "concert_singer"
    )
    assert engine.prompts[3] == chat_text(generation_message(db, "How many are there?").text)

    engine = scripted_engine([said("SELECT 1")] * 4)
    _summary(_model_eval(sparc, tmp_path / "default.jsonl", *skip_world))
    assert "Show information for all singers. How many are there?" in engine.prompts[3]
    record = json.loads((tmp_path / "default.jsonl").read_text().splitlines()[3])
    assert record["run"]["rendering"] == "questions"


def test_interactions_in_flight_each_see_their_own_earlier_answers(sparc: dict[str, Path]) -> None:
    """With several interactions in flight (a model server), each turn still follows the answers to
    its own interaction's earlier turns, in order."""
    questions, fmt = qfile.load_questions(sparc["questions"])
    seen: dict[int, tuple] = {}

    def predict(q: qfile.Question, _db: Path) -> evrun.Prediction:
        assert q.place is not None
        seen[q.index] = q.place.earlier
        return evrun.Prediction(sql=f"SELECT {q.index}")

    db_paths = {q.db_id: sparc["db_dir"] / q.db_id / f"{q.db_id}.sqlite" for q in questions}
    records = evrun.evaluate(questions, db_paths, predict, fmt, 10.0, {}, records=[], concurrency=3)
    assert sorted(r["index"] for r in records) == list(range(14))
    for q in questions:
        assert q.place is not None
        first = q.index - q.place.turn + 1
        expected = tuple(Turn(t.question, f"SELECT {first + k}") for k, t in enumerate(q.place.earlier))
        assert seen[q.index] == expected


def test_compare_shows_turns_and_interactions(sparc: dict[str, Path], tmp_path: Path) -> None:
    questions, _ = qfile.load_questions(sparc["questions"])
    runs = {}
    for name, sqls in (("gold", [q.gold for q in questions]), ("hand", [sql for sql, _ in HAND])):
        runs[name] = tmp_path / f"{name}.jsonl"
        preds = _lines(tmp_path / f"{name}.sql", sqls)
        _summary(
            _eval(
                "-q", sparc["questions"], "--db-dir", sparc["db_dir"], "-p", preds, "-o", runs[name], "--json"
            )
        )
    result = runner.invoke(app, ["eval", "compare", str(runs["hand"]), str(runs["gold"]), "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert (doc["only_a"], doc["only_b"], doc["both_correct"]) == (0, 3, 11)
    assert (doc["a"]["interactions"]["correct"], doc["b"]["interactions"]["correct"]) == (2, 5)
    assert "turn 4+" in result.stderr and "interactions % (5)" in result.stderr
    png = tmp_path / "c.png"
    plotted = runner.invoke(
        app, ["eval", "compare", str(runs["hand"]), str(runs["gold"]), "--plot", str(png)]
    )
    assert plotted.exit_code == 0 and png.stat().st_size > 1000
