"""Voting and the merge decision on recorded candidate sets, and the merge prompt byte for byte.

The completions below are hand-written in the shape SLM-SQL models produce
(`<think>…</think><answer>…</answer>`), executed for real on Spider's car_1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from slmsql_cli.extract import extract_sql
from slmsql_cli.merge import format_result, needs_merge, prune_ddl, referenced_columns, top_drafts
from slmsql_cli.prompt_builder import schema_block
from slmsql_cli.prompts import merge_prompt
from slmsql_cli.targets.executor import execute
from slmsql_cli.targets.result import ExecResult
from slmsql_cli.vote import Candidate, Group, vote

QUESTION = "How many car makers are there in each continents? List the continent name and the count."
BY_NAME = (
    "SELECT T1.Continent, COUNT(*) FROM continents AS T1 JOIN countries AS T2 ON T1.ContId = T2.Continent "
    "JOIN car_makers AS T3 ON T2.CountryId = T3.Country GROUP BY T1.Continent"
)
BY_ID = (
    "SELECT T1.ContId, COUNT(*) FROM continents AS T1 JOIN countries AS T2 ON T1.ContId = T2.Continent "
    "JOIN car_makers AS T3 ON T2.CountryId = T3.Country GROUP BY T1.ContId"
)
WITH_DRAFT = (
    "WITH m AS (SELECT T2.Continent AS c FROM countries AS T2 JOIN car_makers AS T3 ON T2.CountryId = T3.Country)\n"
    "SELECT T1.Continent, COUNT(*) FROM continents AS T1 JOIN m ON T1.ContId = m.c GROUP BY T1.Continent"
)


def _completion(sql: str, thought: str = "Join continents, countries and car makers, then group.") -> str:
    return f"<think>\n{thought}\n</think>\n<answer>\n{sql}\n</answer>"


@pytest.fixture(scope="module")
def car_1(data_dir: Path) -> Path:
    return data_dir / "spider_dev/database/car_1/car_1.sqlite"


def _candidates(db: Path, texts: list[str]) -> list[Candidate]:
    out = []
    for text in texts:
        sql = extract_sql(text)
        out.append(Candidate(text=text, sql=sql, result=execute(db, sql) if sql else None))
    return out


def test_majority_wins_and_keeps_first_sql(car_1: Path) -> None:
    reordered = BY_NAME.replace("GROUP BY T1.Continent", "GROUP BY T1.Continent ORDER BY COUNT(*) DESC")
    cands = _candidates(
        car_1,
        [
            _completion(BY_ID),
            _completion(BY_NAME),
            _completion(reordered),  # same rows, other order: same group
            "<think>I am not sure.</think>",  # no SQL: no vote
            _completion("SELECT Continent, COUNT(*) FROM car_makers GROUP BY Continent"),  # error: no vote
            _completion(BY_NAME + ";"),
        ],
    )
    groups = vote(cands)
    assert [g.members for g in groups] == [[1, 2, 5], [0]]
    assert groups[0].sql == BY_NAME and groups[0].votes == 3
    assert groups[0].result.rows == [("america", 4), ("asia", 7), ("europe", 11)]
    assert needs_merge(groups)


def test_tie_keeps_first_appearance_and_still_merges(car_1: Path) -> None:
    """The reference never merged an exact tie (both top-2 slots pointed at one group)."""
    cands = _candidates(
        car_1, [_completion(BY_ID), _completion(BY_NAME), _completion(BY_NAME), _completion(BY_ID)]
    )
    groups = vote(cands)
    assert [g.votes for g in groups] == [2, 2]
    assert groups[0].sql == BY_ID and groups[0].members == [0, 3]
    assert needs_merge(groups)


def test_with_draft_is_merged(car_1: Path, details: str) -> None:
    """The reference skipped drafts that start with WITH."""
    cands = _candidates(car_1, [_completion(WITH_DRAFT), _completion(WITH_DRAFT), _completion(BY_ID)])
    groups = vote(cands)
    assert groups[0].sql == WITH_DRAFT and groups[0].votes == 2
    assert groups[0].result.key() == frozenset({("america", 4), ("asia", 7), ("europe", 11)})
    assert needs_merge(groups)
    pruned = prune_ddl(details, [g.sql for g in groups[:2]])
    assert "CREATE TABLE continents" in pruned and "CREATE TABLE car_makers" in pruned
    assert "CREATE TABLE m" not in pruned and "cars_data" not in pruned and "CountryName" not in pruned


def test_unanimous_or_empty_votes_do_not_merge(car_1: Path) -> None:
    assert not needs_merge(vote(_candidates(car_1, [_completion(BY_NAME)] * 3)))
    assert not needs_merge(
        vote(_candidates(car_1, ["no sql here", _completion("SELECT nope FROM cars_data")]))
    )
    assert vote([]) == []


def test_timeouts_get_no_vote() -> None:
    slow = ExecResult(timed_out=True)
    fine = ExecResult(columns=["a"], rows=[(1,)])
    groups = vote(
        [Candidate("t", "SELECT 1", slow), Candidate("t", "SELECT 1", fine), Candidate("t", None, None)]
    )
    assert len(groups) == 1 and groups[0].members == [1]


def test_column_order_splits_groups() -> None:
    a = Candidate("", "SELECT a, b FROM t", ExecResult(rows=[(1, 2), (1, 2)]))
    b = Candidate("", "SELECT b, a FROM t", ExecResult(rows=[(2, 1)]))
    c = Candidate("", "SELECT DISTINCT a, b FROM t", ExecResult(rows=[(1, 2)]))
    assert [g.members for g in vote([a, b, c])] == [[0, 2], [1]]


def test_format_result_follows_normal_execute_result() -> None:
    assert format_result(ExecResult(rows=[("america", 4), ("asia", 7)])) == "[('america', 4), ('asia', 7)]"
    assert format_result(ExecResult(rows=[])) == "[]"
    assert (
        format_result(ExecResult(error="no such column: x")) == "execute sql error message: no such column: x"
    )
    assert format_result(ExecResult(timed_out=True)) == "execute sql timeout. "
    rows = [(i,) for i in range(25)]
    assert (
        format_result(ExecResult(rows=rows))
        == f"The execution results of the first twenty columns are: {rows[:20]}"
    )
    long_rows = [("x" * 100,) for _ in range(25)]
    text = format_result(ExecResult(rows=long_rows))
    assert (
        text
        == ("The execution results of the first twenty columns are: " + repr(long_rows[:20])[:1000] + "...]")[
            :1000
        ]
        + "..."
    )
    few_long = [("y" * 600,), ("z" * 600,)]
    assert format_result(ExecResult(rows=few_long)) == repr(few_long)[:1000] + "..."
    assert (
        format_result(ExecResult(error="e" * 2000))
        == ("execute sql error message: " + "e" * 2000)[:1000] + "..."
    )


@pytest.fixture(scope="module")
def details(reference_dir: Path) -> str:
    """car_1's full "Database Schema" block, cut out of the reference's generation prompt."""
    text = (reference_dir / "generation_prompt.example.txt").read_text()
    return text.split("Database Schema:\n", 1)[1].split("\nThis schema describes", 1)[0]


def test_merge_prompt_matches_reference_byte_for_byte(reference_dir: Path, car_1: Path, details: str) -> None:
    """Pruning + formatted drafts + prompts.merge_prompt give the reference's own merge prompt."""
    cands = _candidates(car_1, [_completion(BY_NAME), _completion(BY_NAME), _completion(BY_ID)])
    groups = vote(cands)
    assert needs_merge(groups)
    drafts = top_drafts(groups)
    pruned = prune_ddl(details, [sql for sql, _ in drafts])
    prompt = merge_prompt(pruned, QUESTION, "", drafts)
    assert prompt == (reference_dir / "merge_prompt.example.txt").read_text()


def test_prune_ddl_with_schema_dataclass(car_1: Path, details: str) -> None:
    from slmsql_cli.targets.sqlite_catalog import schema_from_sqlite

    assert prune_ddl(details, [BY_NAME, BY_ID], schema_from_sqlite(car_1)) == prune_ddl(
        details, [BY_NAME, BY_ID]
    )


def test_prune_ddl_edge_cases(details: str) -> None:
    # nothing resolvable: the full schema
    assert prune_ddl(details, ["SELECT nonsense FROM nowhere", "not sql at all ((("]) == details
    # the last table of the block keeps no trailing blank line
    pruned = prune_ddl(details, ["SELECT `Year` FROM cars_data"])
    assert pruned == (
        "CREATE TABLE cars_data (\n    `Year` number, -- example: [1970, 1971]\n    PRIMARY KEY (Id),\n"
        "    CONSTRAINT fk_cars_data_id FOREIGN KEY (Id) REFERENCES car_names (MakeId)\n);"
    )
    # a table read without naming a column is kept whole
    whole = prune_ddl(details, ["SELECT count(*) FROM model_list"])
    assert whole == "CREATE TABLE model_list" + details.split("CREATE TABLE model_list", 1)[1].split(
        "CREATE TABLE car_names"
    )[0].removesuffix("\n")
    # SELECT * reads every column
    assert "CountryName" in prune_ddl(details, ["SELECT * FROM countries"])


def test_referenced_columns_resolves_aliases_and_subqueries() -> None:
    columns = {"continents": ["ContId", "Continent"], "countries": ["CountryId", "CountryName", "Continent"]}
    got = referenced_columns(
        "SELECT Continent FROM continents WHERE ContId IN (SELECT Continent FROM countries WHERE CountryName = 'usa')",
        columns,
    )
    assert got == {"continents": {"continent", "contid"}, "countries": {"continent", "countryname"}}


def test_group_votes_property() -> None:
    assert Group(sql="SELECT 1", result=ExecResult(rows=[(1,)]), members=[0, 4, 5]).votes == 3


def test_merge_prompt_from_the_real_database(
    data_dir: Path, reference_dir: Path, isolated_cache: Path
) -> None:
    """The same bytes when the schema block comes from database.py instead of the reference file."""
    from slmsql_cli.database import open_database

    db = open_database(
        data_dir / "spider_dev/database/car_1/car_1.sqlite",
        data_dir / "spider_dev/tables.json",
        "car_1",
    )
    groups = vote(_candidates(db.file, [_completion(BY_NAME), _completion(BY_ID), _completion(BY_NAME)]))
    drafts = top_drafts(groups)
    pruned = prune_ddl(schema_block(db, {}), [sql for sql, _ in drafts], db.schema)
    assert (
        merge_prompt(pruned, QUESTION, "", drafts) == (reference_dir / "merge_prompt.example.txt").read_text()
    )
