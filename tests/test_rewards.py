"""GRPO rewards on a small hand-made database: every expected value below is worked out by hand."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from slmsql_cli.training.atomic import shaped
from slmsql_cli.training.rewards import (
    RewardFunctions,
    SqlJudge,
    atomic_reward,
    execution_reward,
    format_reward,
    result_digest,
)

GOLD = "SELECT name FROM singer WHERE country = 'France'"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("rewards") / "singers.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, age INTEGER, country TEXT);
        INSERT INTO singer VALUES (1, 'Joe', 52, 'France'), (2, 'Ann', 30, 'France'),
                                  (3, 'Tom', 41, 'Spain'), (4, 'Eve', 25, 'Italy');
        """
    )
    conn.commit()
    conn.close()
    return str(path)


@pytest.fixture()
def judge() -> SqlJudge:
    with SqlJudge(workers=0, timeout=2.0) as j:
        yield j


def answer(sql: str, think: str = "Look at singer.") -> str:
    return f"<think>\n{think}\n</think>\n<answer>\n{sql}\n</answer>"


# ---- format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (answer(GOLD), 1.0),
        ("  <think>x</think><answer>SELECT 1</answer>\n", 1.0),  # whitespace around is fine
        ("<think></think>\n<answer>SELECT 1</answer>", 1.0),  # an empty thought is still the format
        ("<think>x</think><answer>```sql\nSELECT 1;\n```</answer>", 1.0),  # a fenced SQL inside the answer
        ("<answer>SELECT 1</answer>", 0.0),  # no think block
        ("<think>x</think>SELECT 1", 0.0),  # no answer block
        ("<think>x</think><answer>SELECT 1", 0.0),  # unclosed answer (cut by the token limit)
        ("<answer>SELECT 1</answer><think>x</think>", 0.0),  # wrong order
        ("<think>x</think><answer>SELECT 1</answer><answer>SELECT 2</answer>", 0.0),  # two answers
        ("<think>x <think> y</think><answer>SELECT 1</answer>", 0.0),  # nested think
        ("Sure! <think>x</think><answer>SELECT 1</answer>", 0.0),  # text before
        ("<think>x</think><answer>SELECT 1</answer> Hope this helps.", 0.0),  # text after
        ("<think>x</think><answer>SELECT 1; SELECT 2</answer>", 0.0),  # two statements
        ("<think>x</think><answer>DROP TABLE singer</answer>", 0.0),  # not a query
        ("<think>x</think><answer>The answer is France.</answer>", 0.0),  # no SQL at all
        ("", 0.0),
    ],
)
def test_format_reward(text: str, expected: float) -> None:
    assert format_reward(text) == expected


# ---- execution ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql, expected",
    [
        (GOLD, 1.0),
        ("select NAME from SINGER where country='France' order by age", 1.0),  # row order does not count
        ("SELECT DISTINCT name FROM singer WHERE country IN ('France')", 1.0),  # duplicates do not count
        (
            "SELECT name FROM singer WHERE age > 28 AND country != 'Spain' AND country != 'Italy'",
            1.0,
        ),  # other SQL, same rows
        ("SELECT name FROM singer WHERE country = 'Spain'", 0.0),  # wrong rows
        ("SELECT name, age FROM singer WHERE country = 'France'", 0.0),  # an extra column
        ("SELECT nme FROM singer", 0.0),  # error
        ("DELETE FROM singer", 0.0),  # refused by the read-only executor
    ],
)
def test_execution_reward(db: str, judge: SqlJudge, sql: str, expected: float) -> None:
    assert execution_reward(answer(sql), db, GOLD, judge) == expected


def test_execution_reward_column_order_counts(db: str, judge: SqlJudge) -> None:
    gold = "SELECT name, age FROM singer"
    assert execution_reward(answer("SELECT age, name FROM singer"), db, gold, judge) == 0.0
    assert execution_reward(answer("SELECT name, age FROM singer ORDER BY age"), db, gold, judge) == 1.0


def test_execution_reward_without_sql_or_after_timeout(db: str) -> None:
    with SqlJudge(workers=0, timeout=0.2) as judge:
        assert execution_reward("I don't know.", db, GOLD, judge) == 0.0
        endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        assert execution_reward(answer(endless), db, GOLD, judge) == 0.0
        assert judge.outcome(db, endless).timed_out


def test_missing_database_is_a_failed_query_not_a_crash(tmp_path: Path, judge: SqlJudge) -> None:
    assert execution_reward(answer(GOLD), str(tmp_path / "gone.sqlite"), GOLD, judge) == 0.0


def test_result_digest_matches_the_vote_key() -> None:
    assert result_digest([(1, "a"), (2, "b")]) == result_digest([(2, "b"), (1, "a"), (1, "a")])
    assert result_digest([(1,)]) == result_digest([(1.0,)])  # frozenset({(1,)}) == frozenset({(1.0,)})
    assert result_digest([(1, "a")]) != result_digest([("a", 1)])
    assert result_digest([]) != result_digest([(None,)])


# ---- atomic ---------------------------------------------------------------------------------


def test_atomic_reward_values(db: str, judge: SqlJudge) -> None:
    # Correct (even written differently): full credit, above any wrong query.
    assert atomic_reward(answer("SELECT name FROM singer WHERE 'France' = country"), db, GOLD, judge) == 1.0
    # Runs, wrong value: ops {FROM(singer), SELECT_COL(name), WHERE(country='Spain')} vs gold's → 2 of 4.
    near = atomic_reward(answer("SELECT name FROM singer WHERE country = 'Spain'"), db, GOLD, judge)
    assert near == pytest.approx(shaped(0.5)) == pytest.approx(0.678348, abs=1e-6)
    # Runs, further off: only FROM(singer) shared out of {FROM, SELECT_COL(age), SELECT_COL(name), WHERE} → 1/4.
    far = atomic_reward(answer("SELECT age FROM singer"), db, GOLD, judge)
    assert far == pytest.approx(shaped(0.25))
    assert 1.0 > near > far > 0.0
    # Does not run: nothing, however close it looks.
    assert atomic_reward(answer("SELECT nme FROM singer WHERE country = 'France'"), db, GOLD, judge) == 0.0
    assert atomic_reward("no sql here", db, GOLD, judge) == 0.0


# ---- the judge and TRL's signature ----------------------------------------------------------


def test_judge_caches_by_database_and_sql(db: str) -> None:
    with SqlJudge(workers=0) as judge:
        for _ in range(3):
            execution_reward(answer(GOLD), db, GOLD, judge)
        assert judge.executed == 1  # candidate and gold are the same (database, SQL) pair
        execution_reward(answer("SELECT 1"), db, GOLD, judge)
        assert judge.executed == 2


def test_worker_processes_agree_with_in_process(db: str) -> None:
    sqls = [GOLD, "SELECT name FROM singer", "SELECT nme FROM singer", "SELECT count(*) FROM singer", GOLD]
    pairs = [(db, s) for s in sqls]
    with SqlJudge(workers=0) as inline, SqlJudge(workers=2) as pool:
        assert pool.outcomes(pairs) == inline.outcomes(pairs)
        assert pool.executed == 4


def test_reward_functions_in_trl_signature(db: str) -> None:
    with SqlJudge(workers=0) as judge:
        rewards = RewardFunctions({"execution": 1.0, "format": 0.1, "atomic": 0.5}, judge)
        funcs, weights = rewards.functions()
        assert [f.__name__ for f in funcs] == ["execution", "format", "atomic"]
        assert weights == [1.0, 0.1, 0.5]
        completions = [
            answer(GOLD),
            "SELECT name FROM singer WHERE country = 'Spain'",
            [{"role": "assistant", "content": answer("SELECT nme")}],
        ]
        columns = {"db_path": [db] * 3, "gold_sql": [GOLD] * 3, "completion_ids": None, "trainer_state": None}
        scores = {f.__name__: f(prompts=["p"] * 3, completions=completions, **columns) for f in funcs}
        assert scores["execution"] == [1.0, 0.0, 0.0]
        assert scores["format"] == [1.0, 0.0, 1.0]  # "SELECT nme" is well-formed; it just fails to run
        assert scores["atomic"] == [1.0, pytest.approx(shaped(0.5)), 0.0]
        # A weight of zero drops the reward entirely (SLM-SQL's recipe has no atomic reward).
        funcs, _ = RewardFunctions({"execution": 1.0, "format": 0.1, "atomic": 0.0}, judge).functions()
        assert [f.__name__ for f in funcs] == ["execution", "format"]
