"""`slmsql eval`: the BIRD and Spider metrics, scoring the benchmark subset in tests/data, resuming, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sys
import time
from collections import defaultdict
from itertools import product
from pathlib import Path

import pytest
from conftest import Slmsql
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from slmsql_cli.benchmark_data import resolve_db
from slmsql_cli.cli import app
from slmsql_cli.errors import UserError
from slmsql_cli.eval import chart, metrics
from slmsql_cli.eval import questions as qfile
from slmsql_cli.eval import results as resfile
from slmsql_cli.eval import run as evrun

runner = CliRunner()


def _sets(data: Path) -> dict[str, tuple[Path, Path]]:
    return {
        "spider": (data / "spider_dev/dev.json", data / "spider_dev/database"),
        "bird": (data / "bird_dev/dev.json", data / "bird_dev/dev_databases"),
        "chinook": (data / "chinook/questions.json", data / "chinook"),
    }


def _score_all(
    questions: list[qfile.Question], db_dir: Path, fmt: str, preds: list[str | None]
) -> list[bool]:
    return [
        evrun.score(resolve_db(db_dir, q.db_id), q.gold, p, fmt).correct for q, p in zip(questions, preds)
    ]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the benchmark subset -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["spider", "bird", "chinook"])
def test_gold_as_prediction_scores_100(data_dir: Path, name: str) -> None:
    questions_file, db_dir = _sets(data_dir)[name]
    questions, fmt = qfile.load_questions(questions_file)
    assert fmt == ("bird" if name == "bird" else "spider")
    correct = _score_all(questions, db_dir, fmt, [q.gold for q in questions])
    assert all(correct), [q.index for q, c in zip(questions, correct) if not c][:10]


def test_levels_come_from_the_data(data_dir: Path) -> None:
    spider, _ = qfile.load_questions(data_dir / "spider_dev/dev.json")
    bird, _ = qfile.load_questions(data_dir / "bird_dev/dev.json")
    chinook, _ = qfile.load_questions(data_dir / "chinook/questions.json")
    assert {q.level for q in spider} == {"easy", "medium", "hard", "extra"}
    assert {q.level for q in bird} == {"simple", "moderate", "challenging"}
    assert {q.level for q in chinook} == {None}  # no parsed sql, no difficulty: no breakdown
    assert spider[0].level == "easy"  # SELECT count(*) FROM singer
    by_sql = {q.gold: q.level for q in spider}
    # WHERE + GROUP BY + ORDER BY + LIMIT + 1 join = 5 components -> extra
    extra = next(
        g
        for g in by_sql
        if g.lower().count(" join ") == 1
        and "group by" in g.lower()
        and "order by" in g.lower()
        and "limit" in g.lower()
        and "where" in g.lower()
    )
    assert by_sql[extra] == "extra"


# Hand-counted: the first 12 Spider dev questions (all on concert_singer).
HAND = [
    ("SELECT count(*) FROM singer", True, True),
    ("SELECT count(Singer_ID) FROM singer", True, True),
    ("SELECT name, country, age FROM singer ORDER BY age", False, True),  # gold orders DESC
    ("SELECT age, name, country FROM singer ORDER BY age DESC", True, False),  # columns permuted
    ("SELECT avg(age), min(age), max(age) FROM singer", False, False),  # no WHERE
    ("DROP TABLE singer", False, False),
    ("SELECT song_name, song_release_year FROM singer ORDER BY age DESC LIMIT 1", False, False),
    ("", False, False),  # no answer
    ("SELECT country FROM singer WHERE age > 20", True, True),  # Spider drops the gold's DISTINCT
    ("SELECT country FROM singer WHERE age > 20 GROUP BY country", False, True),  # duplicates lost
    ("SELECT count(*), country FROM singer GROUP BY country", True, False),  # columns permuted
    (
        "SELECT country, count(*) FROM singer GROUP BY country ORDER BY count(*) DESC",
        True,
        True,
    ),  # gold has no ORDER BY
]


def test_known_wrong_predictions_score_the_hand_count(data_dir: Path) -> None:
    questions, _ = qfile.load_questions(data_dir / "spider_dev/dev.json")
    questions = questions[: len(HAND)]
    db_dir = data_dir / "spider_dev/database"
    preds = [p or None for p, _, _ in HAND]
    assert _score_all(questions, db_dir, "spider", preds) == [s for _, s, _ in HAND]
    assert _score_all(questions, db_dir, "bird", preds) == [b for _, _, b in HAND]
    records = [
        {"index": i, "correct": s, "level": q.level} for i, (q, (_, s, _)) in enumerate(zip(questions, HAND))
    ]
    assert resfile.summarize(records, "spider")["ex"] == 50.0  # 6 of 12


def test_bird_hand_count(data_dir: Path) -> None:
    questions, fmt = qfile.load_questions(data_dir / "bird_dev/dev.json")
    db_dir = data_dir / "bird_dev/dev_databases"
    broken = {
        3: "SELEC nothing",
        10: "DROP TABLE member",
        20: "",
        30: "UPDATE member SET first_name = 'x'",
        40: "SELECT * FROM no_such_table",
        50: "ATTACH 'x.db' AS x",
    }
    preds = [broken.get(q.index, q.gold) or None for q in questions]
    correct = _score_all(questions, db_dir, fmt, preds)
    assert sum(correct) == len(questions) - len(broken) == 54


# --- where the metrics differ ------------------------------------------------------------------

ROWS = [("a", 1), ("b", 2), ("c", 3)]


def test_order_by_matters_only_for_spider_and_only_when_gold_orders() -> None:
    reversed_rows = ROWS[::-1]
    assert not metrics.spider_match(ROWS, reversed_rows, order_matters=True)
    assert metrics.spider_match(ROWS, reversed_rows, order_matters=False)
    assert metrics.bird_match(ROWS, reversed_rows)
    assert metrics.spider_order_matters("SELECT a FROM t ORDER BY a")
    assert not metrics.spider_order_matters("SELECT a FROM t")
    # upstream tests the text: an ORDER BY in a subquery makes order matter too
    assert metrics.spider_order_matters("SELECT a FROM t WHERE b = (SELECT b FROM u ORDER BY c LIMIT 1)")


def test_duplicates_count_for_spider_not_for_bird() -> None:
    doubled = ROWS + [ROWS[0]]
    assert not metrics.spider_match(ROWS, doubled, order_matters=False)
    assert metrics.bird_match(ROWS, doubled)
    assert not metrics.spider_match(
        ROWS + [ROWS[1]], ROWS + [ROWS[0]], order_matters=False
    )  # same length, other bag


def test_column_order_counts_for_bird_not_for_spider() -> None:
    swapped = [(n, s) for s, n in ROWS]
    assert metrics.spider_match(ROWS, swapped, order_matters=True)
    assert not metrics.bird_match(ROWS, swapped)
    assert not metrics.spider_match(ROWS, [(s,) for s, _ in ROWS], order_matters=False)  # fewer columns


def test_spider_quirks() -> None:
    assert metrics.spider_match([(1,)], [(1.0,)], order_matters=False)  # Python equality: 1 == 1.0
    assert metrics.bird_match([(1,)], [(1.0,)])
    assert not metrics.spider_match([(1,)], [("1",)], order_matters=False)
    assert metrics.spider_match([], [], order_matters=True)
    assert (
        metrics.spider_sql("SELECT DISTINCT a, COUNT(DISTINCT b) FROM t WHERE c = 'distinct'")
        == "SELECT  a, COUNT( b) FROM t WHERE c = 'distinct'"
    )
    assert metrics.spider_sql("SELECT a FROM t WHERE b > = 1") == "SELECT a FROM t WHERE b >= 1"


def _upstream_result_eq(result1: list[tuple], result2: list[tuple], order_matters: bool) -> bool:
    """taoyds/test-suite-sql-eval exec_eval.result_eq, as published (the oracle)."""

    def unorder_row(row):  # type: ignore[no-untyped-def]
        return tuple(sorted(row, key=lambda x: str(x) + str(type(x))))

    def multiset_eq(l1, l2):  # type: ignore[no-untyped-def]
        if len(l1) != len(l2):
            return False
        d = defaultdict(int)
        for e in l1:
            d[e] += 1
        for e in l2:
            d[e] -= 1
            if d[e] < 0:
                return False
        return True

    if len(result1) == 0 and len(result2) == 0:
        return True
    if len(result1) != len(result2):
        return False
    num_cols = len(result1[0])
    if len(result2[0]) != num_cols:
        return False
    s1, s2 = [unorder_row(r) for r in result1], [unorder_row(r) for r in result2]
    if not (s1 == s2 if order_matters else set(s1) == set(s2)):
        return False
    tab1_sets = [{row[i] for row in result1} for i in range(num_cols)]
    constraints = [set(range(num_cols)) for _ in range(num_cols)]
    if num_cols > 3:
        for _ in range(20):
            row2 = random.choice(result2)
            for c1 in range(num_cols):
                for c2 in set(constraints[c1]):
                    if row2[c2] not in tab1_sets[c1]:
                        constraints[c1].remove(c2)
    for perm in product(*constraints):
        if len(perm) != len(set(perm)):
            continue
        r2 = result2 if num_cols == 1 else [tuple(e[i] for i in perm) for e in result2]
        if order_matters:
            if result1 == r2:
                return True
        elif set(result1) == set(r2) and multiset_eq(result1, r2):
            return True
    return False


_values = st.sampled_from([0, 1, 2, 1.0, "1", "a", "b", None])


@settings(max_examples=300, deadline=None)
@given(data=st.data(), ncols=st.integers(1, 5), nrows=st.integers(0, 5), order=st.booleans())
def test_spider_match_agrees_with_upstream(data: st.DataObject, ncols: int, nrows: int, order: bool) -> None:
    gold = [tuple(data.draw(_values) for _ in range(ncols)) for _ in range(nrows)]
    perm = data.draw(st.permutations(range(ncols)))
    mode = data.draw(st.sampled_from(["permuted", "shuffled", "random"]))
    if mode == "random":
        pred = [tuple(data.draw(_values) for _ in range(ncols)) for _ in range(data.draw(st.integers(0, 5)))]
    else:
        pred = [tuple(row[i] for i in perm) for row in gold]
        if mode == "shuffled":
            pred = data.draw(st.permutations(pred))
    assert metrics.spider_match(gold, pred, order) == _upstream_result_eq(gold, pred, order)


# --- safety ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pred",
    [
        "DROP TABLE singer",
        "ATTACH '{dir}/evil.db' AS evil",
        "UPDATE singer SET age = 0",
        "SELECT 1; DELETE FROM singer",
        "PRAGMA writable_schema=ON",
    ],
)
@pytest.mark.parametrize("fmt", ["spider", "bird"])
def test_writing_prediction_scores_zero_and_changes_nothing(
    data_dir: Path, tmp_path: Path, pred: str, fmt: str
) -> None:
    db = tmp_path / "concert_singer.sqlite"
    shutil.copyfile(data_dir / "spider_dev/database/concert_singer/concert_singer.sqlite", db)
    db.chmod(0o644)
    before = (_sha(db), sorted(os.listdir(tmp_path)))
    result = evrun.score(db, "SELECT count(*) FROM singer", pred.replace("{dir}", str(tmp_path)), fmt)
    assert not result.correct and result.pred is not None and not result.pred.ok
    assert (_sha(db), sorted(os.listdir(tmp_path))) == before


# --- files, resume, CLI ------------------------------------------------------------------------


def _gold_file(questions: list[qfile.Question], path: Path) -> Path:
    path.write_text(
        "".join(q.gold.replace("\n", " ") + f"\t{q.db_id}\n" for q in questions), encoding="utf-8"
    )
    return path


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["eval", *map(str, args)])


def test_cli_predictions_json_and_resume(data_dir: Path, tmp_path: Path) -> None:
    questions_file, db_dir = _sets(data_dir)["spider"]
    questions, _ = qfile.load_questions(questions_file)
    preds = _gold_file(questions, tmp_path / "pred.sql")
    out = tmp_path / "results.jsonl"
    first = _invoke(
        "-q", questions_file, "--db-dir", db_dir, "--predictions", preds, "--out", out, "--limit", 5, "--json"
    )
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert (summary["ex"], summary["correct"], summary["total"]) == (100.0, 5, 5)
    assert summary["by_level"]["easy"]["total"] >= 1
    lines = out.read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 1, 2, 3, 4]
    rec = json.loads(lines[0])
    assert {"question", "gold", "pred", "correct", "latency", "candidates", "level", "run"} <= rec.keys()

    # a torn last line (a crash mid-write) is dropped; the done questions are skipped
    with out.open("a") as fh:
        fh.write('{"index": 5, "quest')
    second = _invoke(
        "-q", questions_file, "--db-dir", db_dir, "--predictions", preds, "--out", out, "--limit", 8, "--json"
    )
    assert second.exit_code == 0, second.output
    assert "resuming" in second.stderr
    assert [json.loads(line)["index"] for line in out.read_text().splitlines()] == list(range(8))
    assert json.loads(second.stdout.strip().splitlines()[-1])["total"] == 8

    # another run's results are not mixed in
    other = tmp_path / "other.sql"
    other.write_text(preds.read_text())
    clash = _invoke(
        "-q", questions_file, "--db-dir", db_dir, "--predictions", other, "--out", out, "--limit", 8
    )
    assert clash.exit_code == 2 and "another run" in clash.stderr

    # a file from a slmsql whose run record had other fields is named as such, and still compares
    old = tmp_path / "old.jsonl"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    for record in records:
        record["run"] = {**record["run"], "a_setting_since_removed": 1}
    old.write_text("".join(json.dumps(r) + "\n" for r in records))
    upgraded = _invoke("-q", questions_file, "--db-dir", db_dir, "--predictions", preds, "--out", old)
    assert upgraded.exit_code == 2 and "another version of slmsql" in upgraded.stderr
    assert _invoke("compare", old, out).exit_code == 0


def test_cli_bird_json_predictions(data_dir: Path, tmp_path: Path) -> None:
    questions_file, db_dir = _sets(data_dir)["bird"]
    questions, _ = qfile.load_questions(questions_file)
    pred = tmp_path / "predict_dev.json"
    pred.write_text(json.dumps({str(q.index): f"{q.gold}\t----- bird -----\t{q.db_id}" for q in questions}))
    result = _invoke("-q", questions_file, "--db-dir", db_dir, "--predictions", pred, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["ex"] == 100.0 and doc["total"] == 60 and doc["format"] == "bird"
    assert list(doc["by_level"]) == ["simple", "moderate", "challenging"]
    assert sum(v["total"] for v in doc["by_level"].values()) == 60


def test_cli_compare_and_plot(data_dir: Path, tmp_path: Path) -> None:
    questions_file, db_dir = _sets(data_dir)["chinook"]
    questions, _ = qfile.load_questions(questions_file)
    good = _gold_file(questions, tmp_path / "good.sql")
    bad = tmp_path / "bad.sql"
    bad.write_text(
        "".join(
            ("SELECT 'nope'" if q.index % 4 == 0 else q.gold.replace("\n", " ")) + "\n" for q in questions
        )
    )
    for name, preds in (("a", good), ("b", bad)):
        assert (
            _invoke(
                "-q",
                questions_file,
                "--db-dir",
                db_dir,
                "--predictions",
                preds,
                "--out",
                tmp_path / f"{name}.jsonl",
            ).exit_code
            == 0
        )
    png = tmp_path / "chart.png"
    result = _invoke("compare", tmp_path / "a.jsonl", tmp_path / "b.jsonl", "--plot", png, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    wrong = len([q for q in questions if q.index % 4 == 0])
    assert (doc["only_a"], doc["only_b"], doc["both_correct"]) == (wrong, 0, len(questions) - wrong)
    assert {d["index"] for d in doc["differ"]} == {q.index for q in questions if q.index % 4 == 0}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # for people: each differing question says which run got it right; a question only one run
    # scored is "not compared", in other words than the list's
    (tmp_path / "b_partial.jsonl").write_text(
        "".join((tmp_path / "b.jsonl").read_text().splitlines(True)[:-2])
    )
    text = _invoke("compare", tmp_path / "a.jsonl", tmp_path / "b_partial.jsonl").stdout
    assert f"#{questions[0].index} right in a, wrong in b:" in " ".join(text.split())
    assert "not compared: 2 question(s) scored only in a, 0 only in b" in " ".join(text.split())
    assert "only in b:" not in text and "only a right" not in text


def test_predictions_for_some_questions_score_those_and_say_how_many_are_missing(
    data_dir: Path, tmp_path: Path
) -> None:
    questions_file, db_dir = _sets(data_dir)["chinook"]
    from slmsql_cli.eval.questions import load_questions

    questions, _ = load_questions(questions_file)
    preds = tmp_path / "first5.sql"
    preds.write_text("".join(q.gold.replace("\n", " ") + "\n" for q in questions[:5]))
    result = _invoke("-q", questions_file, "--db-dir", db_dir, "--predictions", preds, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert (doc["total"], doc["correct"], doc["unscored"]) == (5, 5, len(questions) - 5)
    said = " ".join(result.stderr.split())
    assert (
        f"has predictions for the first 5 of {len(questions)} questions: {len(questions) - 5} without one are not scored"
        in said
    )


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "--questions and --db-dir are required"),
        (["-q", "{q}", "--db-dir", "{d}"], "either --model"),
        (["-q", "{q}", "--db-dir", "{d}", "--predictions", "{p}", "--model", "x"], "either --model"),
        (["-q", "nope.json", "--db-dir", "{d}", "--predictions", "{p}"], "questions file not found"),
        (["-q", "{q}", "--db-dir", "{d}", "--predictions", "{long}"], "90 predictions for 84 questions"),
        (["-q", "{q}", "--db-dir", "{tmp}", "--predictions", "{p}"], "no database for db_id 'chinook'"),
        (
            ["-q", "{q}", "--db-dir", "{d}", "--predictions", "{p}", "--format", "bird"],
            "expects question, db_id and SQL",
        ),
        (["compare", "x.jsonl", "y.jsonl"], "results file not found"),
    ],
)
def test_cli_user_errors(data_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    questions_file, db_dir = _sets(data_dir)["chinook"]
    questions, _ = qfile.load_questions(questions_file)
    preds = _gold_file(questions, tmp_path / "p.sql")
    (tmp_path / "long.sql").write_text("SELECT 1\n" * 90)
    subst = {
        "{q}": str(questions_file),
        "{d}": str(db_dir),
        "{p}": str(preds),
        "{long}": str(tmp_path / "long.sql"),
        "{tmp}": str(tmp_path),
    }
    result = _invoke(*[subst.get(a, a) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_cli_short_predictions_file_with_limit(data_dir: Path, tmp_path: Path) -> None:
    questions_file, db_dir = _sets(data_dir)["chinook"]
    (tmp_path / "one.sql").write_text("SELECT count(*) FROM Album\n")
    result = _invoke(
        "-q",
        questions_file,
        "--db-dir",
        db_dir,
        "--predictions",
        tmp_path / "one.sql",
        "--limit",
        1,
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["correct"] == 1


def test_plot_without_matplotlib_says_which_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(UserError) as info:
        chart.plot([("a", [{"index": 0, "correct": True}])], tmp_path / "x.png")
    assert "[train]" in str(info.value)


@pytest.mark.slow  # waits for queries to be under way, then interrupts
def test_ctrl_c_leaves_whole_lines_and_resumes(slmsql: Slmsql, data_dir: Path, tmp_path: Path) -> None:
    """SIGINT a real run mid-way: exit 130, every line is a whole record, a rerun finishes the rest."""
    questions_file, db_dir = _sets(data_dir)["chinook"]
    # ~0.5 s each; each text its own, since identical SQL on the same file runs once (executor's cache)
    slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT {}) SELECT count(*) FROM c"
    preds = tmp_path / "slow.sql"
    preds.write_text("".join(slow.format(2_000_000 + i) + "\n" for i in range(84)))
    out = tmp_path / "r.jsonl"
    args = [
        "eval",
        "-q",
        questions_file,
        "--db-dir",
        db_dir,
        "--predictions",
        preds,
        "--out",
        out,
        "--limit",
        "8",
    ]
    # SIG_DFL in the child, as from a terminal, even when these tests run as a background job (SIGINT ignored).
    proc = slmsql.start(*args, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(out.read_bytes().splitlines()) < 2):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    done = [json.loads(line)["index"] for line in out.read_text().splitlines()]
    assert done == list(range(len(done))) and 2 <= len(done) < 8
    assert "resume" in stderr and "Traceback" not in stderr
    rerun = slmsql(*args, "--json", timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert [json.loads(line)["index"] for line in out.read_text().splitlines()] == list(range(8))
    assert json.loads(rerun.stdout.strip().splitlines()[-1])["total"] == 8


@pytest.mark.slow
def test_cli_with_a_real_model(slmsql: Slmsql, data_dir: Path, gemma_gguf: Path, tmp_path: Path) -> None:
    """The --model path end to end with the Gemma test GGUF (a base model: its SQL may well be wrong)."""
    questions_file, db_dir = _sets(data_dir)["spider"]
    out = tmp_path / "gemma.jsonl"
    proc = slmsql(
        "eval", "-q", questions_file, "--db-dir", db_dir, "--model", gemma_gguf, "-n", "2", "--max-tokens", "32",
        "--no-merge", "--no-values", "--limit", "2", "--out", out, "--json",
        cache=tmp_path / "cache", timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["total"] == 2 and 0 <= doc["correct"] <= 2
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1]
    assert all(len(r["candidates"]) == 2 and r["latency"] > 0 and "generate" in r["timings"] for r in records)
    assert records[0]["run"]["model"] == str(gemma_gguf) and records[0]["run"]["n"] == 2
