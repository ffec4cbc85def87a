"""extract_sql: the reference's rule, minus its two defects (newline flattening, semicolon deletion)."""

from __future__ import annotations

import pytest

from slmsql_cli.extract import extract_sql, strip_comments


@pytest.mark.parametrize(
    ("text", "sql"),
    [
        # the trained format; the engine keeps the stop string </answer>
        (
            "<think>\ncount rows\n</think>\n<answer>\nSELECT count(*) FROM singer;\n</answer>",
            "SELECT count(*) FROM singer",
        ),
        # an <answer> inside the reasoning does not count, the one after </think> does
        ("<think>maybe <answer>SELECT 1</answer>?</think><answer>SELECT 2</answer>", "SELECT 2"),
        ("<answer>SELECT 1</answer> then <answer>SELECT 2</answer>", "SELECT 2"),
        # cut off by the token limit: no closing tag
        ("<think>x</think><answer>SELECT name FROM singer WHERE", "SELECT name FROM singer WHERE"),
        ("<answer>```sql\nSELECT 1\n```</answer>", "SELECT 1"),
        ("<answer>```sql SELECT 1 ```</answer>", "SELECT 1"),
        # no answer tags: last ```sql block (OmniSQL style)
        ("reasoning\n```sql\nSELECT 1\n```\nbetter:\n```sql\nSELECT 2;\n```\nDone.", "SELECT 2"),
        ("Here:\n```\nSELECT a FROM t\n```", "SELECT a FROM t"),
        # fallback: the text after </think>
        ("<think>hmm</think>\nSELECT a FROM t;", "SELECT a FROM t"),
        ("  with x as (select 1) select * from x ", "with x as (select 1) select * from x"),
        ("<answer>SELECT 1</s></answer>", "SELECT 1"),
    ],
)
def test_reference_rule(text: str, sql: str) -> None:
    assert extract_sql(text) == sql


def test_comment_does_not_swallow_the_rest() -> None:
    text = "<answer>SELECT name -- the singer's name\nFROM singer\nWHERE age > 30</answer>"
    sql = extract_sql(text)
    assert sql is not None and "FROM singer" in sql and "WHERE age > 30" in sql and "--" not in sql
    # the reference would have produced "SELECT name -- the singer's name FROM singer WHERE age > 30"
    assert "\n" in sql


def test_semicolons_inside_strings_survive() -> None:
    assert (
        extract_sql("<answer>SELECT * FROM t WHERE a = 'x;y';</answer>") == "SELECT * FROM t WHERE a = 'x;y'"
    )
    assert extract_sql("<answer>SELECT 1;;</answer>") == "SELECT 1"


def test_comment_markers_inside_literals_are_text() -> None:
    sql = "SELECT '--not a comment', \"a/*b\", `c--d` FROM t WHERE x = 'it''s -- fine'"
    assert strip_comments(sql) == sql
    assert strip_comments("SELECT a/* x */FROM t") == "SELECT a FROM t"
    assert strip_comments("SELECT 1 -- tail") == "SELECT 1 "


def test_multi_statement_is_returned_for_the_executor_to_refuse() -> None:
    assert extract_sql("<answer>SELECT 1; DROP TABLE t;</answer>") == "SELECT 1; DROP TABLE t"


@pytest.mark.parametrize(
    "text",
    [
        "",
        None,
        "I cannot answer that.",
        "<think>no idea</think>",
        "<answer></answer>",
        "<answer>-- nothing</answer>",
        "<think>x</think><answer>The answer is 42.</answer>",
        "```python\nprint(1)\n```",
    ],
)
def test_nothing_sql_like_gives_none(text: str | None) -> None:
    assert extract_sql(text) is None
