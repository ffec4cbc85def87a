"""The SQL explained in plain sentences (`slmsql_cli/explain.py`), checked against the parse.

The coverage test reads every gold query of the Spider and BIRD subsets in tests/data (and the
Chinook questions) and checks, from sqlglot's own parse of each, that its explanation names every
table, every literal of a filter (WHERE, HAVING, JOIN ... ON) and every aggregate, and that it is
never empty. The golden file holds about 30 explanations read and approved by a person: a change
of wording shows up there as a diff to review (rewrite it with SLMSQL_UPDATE_GOLDEN=1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlglot import exp

from slmsql_cli.explain import AGGREGATE_WORDS, UNCOVERED, explain_sql

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden" / "explanations.txt"


def gold_queries() -> list[str]:
    spider = json.loads((DATA / "spider_dev" / "dev.json").read_text(encoding="utf-8"))
    bird = json.loads((DATA / "bird_dev" / "dev.json").read_text(encoding="utf-8"))
    chinook = json.loads((DATA / "chinook" / "questions.json").read_text(encoding="utf-8"))
    return [q["query"] for q in spider] + [q["SQL"] for q in bird] + [q["query"] for q in chinook]


def missing_from(sql: str, text: str) -> list[str]:
    """What the explanation `text` of `sql` fails to name, judged from sqlglot's parse."""
    import sqlglot

    tree = sqlglot.parse_one(sql, read="sqlite")
    said = text.lower()
    missing = [f"table {t.name}" for t in tree.find_all(exp.Table) if t.name.lower() not in said]
    filters = [node.this for node in tree.find_all(exp.Where, exp.Having)]
    filters += [j.args["on"] for j in tree.find_all(exp.Join) if j.args.get("on") is not None]
    for condition in filters:
        for literal in condition.find_all(exp.Literal):
            if str(literal.this).lower() not in said:
                missing.append(f"literal {literal.this!r}")
    for aggregate in tree.find_all(exp.AggFunc):
        word = AGGREGATE_WORDS.get(type(aggregate))
        if word is None or aggregate.args.get("expressions"):  # MAX(a, b) is a scalar function
            continue
        if word not in said:
            missing.append(f"aggregate {aggregate.sql()} ({word!r})")
        for column in aggregate.find_all(exp.Column):
            if column.name.lower() not in said:
                missing.append(f"column {column.name} of {aggregate.sql()}")
    return missing


def test_every_gold_query_is_explained_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    queries = gold_queries()
    failures = {}
    for sql in queries:
        explanation = explain_sql(sql)
        assert explanation.text.strip(), sql
        missing = missing_from(sql, explanation.text)
        if missing or explanation.uncovered:
            failures[sql] = missing + [f"uncovered: {u}" for u in explanation.uncovered]
    with capsys.disabled():
        print(f"\nexplained {len(queries) - len(failures)} of {len(queries)} gold queries in full")
    assert len(queries) == 153 + 60 + 84
    assert not failures, failures


def test_a_clause_without_words_is_quoted_not_skipped() -> None:
    sql = "SELECT a, count(*) OVER w FROM t GROUP BY a WINDOW w AS (ORDER BY a)"
    explanation = explain_sql(sql)
    assert explanation.uncovered == ["WINDOW w AS (ORDER BY a)"]
    assert explanation.sentences[-1] == UNCOVERED + "WINDOW w AS (ORDER BY a)"
    assert "the table t" in explanation.text


@pytest.mark.parametrize("sql", ["SELEC nonsense FROM", "SELECT 1; SELECT 2", "PRAGMA table_info(t)"])
def test_sql_it_cannot_read_is_one_uncovered_line(sql: str) -> None:
    explanation = explain_sql(sql)
    assert explanation.sentences == [UNCOVERED + sql] and explanation.uncovered == [sql]


def test_filters_say_their_values_and_negations() -> None:
    text = explain_sql(
        "SELECT name FROM pets WHERE kind NOT IN ('dog', 'cat') AND age NOT BETWEEN 1 AND 3 "
        "AND name NOT LIKE 'R%' AND owner IS NOT NULL AND (weight > 2.5 OR weight IS NULL)"
    ).text
    assert "kind is not one of ('dog', 'cat')" in text
    assert "age is not between 1 and 3" in text
    assert "name does not match the pattern 'R%'" in text
    assert "owner is not NULL" in text
    assert "(either weight is greater than 2.5, or weight is NULL (missing))" in text


def golden_text() -> str:
    """The golden file's SQL with their explanations as explain_sql writes them now."""
    blocks = GOLDEN.read_text(encoding="utf-8").split("\n\n### ")
    out = []
    for block in blocks:
        sql = block.removeprefix("### ").split("\n", 1)[0]
        out.append(f"### {sql}\n{explain_sql(sql).text}")
    return "\n\n".join(out) + "\n"


def test_golden_explanations() -> None:
    expected = golden_text()
    if os.environ.get("SLMSQL_UPDATE_GOLDEN"):
        GOLDEN.write_text(expected, encoding="utf-8")
    assert GOLDEN.read_text(encoding="utf-8") == expected


BOOKSHOP = Path(__file__).resolve().parents[1] / "slmsql_cli" / "data" / "bookshop.sqlite"


def test_explain_command_checks_then_explains(isolated_cache: Path) -> None:
    from typer.testing import CliRunner

    from slmsql_cli.cli import app

    runner = CliRunner()
    sql = "SELECT title FROM books WHERE price > 20 ORDER BY 1"
    result = runner.invoke(app, ["explain", "--db", str(BOOKSHOP), sql])
    assert result.exit_code == 0, result.stderr
    assert "It keeps only the rows where price is greater than 20." in result.stdout
    assert "It sorts the result by its column 1 in ascending order." in result.stdout

    result = runner.invoke(app, ["explain", "--db", str(BOOKSHOP), "--json", sql])
    doc = json.loads(result.stdout)
    assert doc["sql"] == sql and doc["database"] == "bookshop.sqlite" and doc["uncovered"] == []
    assert doc["sentences"][0] == "It reads the table books." and doc["explanation"] == explain_sql(sql).text

    refused = runner.invoke(app, ["explain", "--db", str(BOOKSHOP), "--json", "DELETE FROM books"])
    assert refused.exit_code == 2 and refused.stdout == ""
    assert "error: this SQL is refused:" in refused.stderr and "DELETE" in refused.stderr
    unknown = runner.invoke(app, ["explain", "--db", str(BOOKSHOP), "SELECT * FROM book"])
    assert unknown.exit_code == 2 and "has no table named book" in unknown.stderr
    assert "hint: its tables: authors" in unknown.stderr
    with_cte = runner.invoke(app, ["explain", "--db", str(BOOKSHOP), "WITH b AS (SELECT 1) SELECT * FROM b"])
    assert with_cte.exit_code == 0 and "the named result b" in with_cte.stdout


def test_explain_refuses_sql_that_does_not_parse(isolated_cache: Path) -> None:
    """`SELEC 1` is a typo, not "a part this explanation does not cover" with exit 0 (issue 27)."""
    from typer.testing import CliRunner

    from slmsql_cli.cli import app

    runner = CliRunner()
    for sql, near in [
        ("SELEC 1", 'near "SELEC"'),
        ("SELECT title FORM books", 'near "books"'),  # FORM reads as an alias
        ("SELECT title FROM books WHERE", "incomplete input"),
    ]:
        result = runner.invoke(app, ["explain", "--db", str(BOOKSHOP), sql])
        assert result.exit_code == 2 and result.stdout == "", (sql, result.stdout)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert errors == [
            f"error: this SQL does not parse: {near}" + (": syntax error" if "near" in near else "")
        ]
        assert "hint: check the spelling" in result.stderr


def test_explain_warns_about_columns_the_database_lacks(isolated_cache: Path) -> None:
    from typer.testing import CliRunner

    from slmsql_cli.cli import app

    runner = CliRunner()
    sql = "SELECT b.titel, a.name FROM books AS b JOIN authors AS a ON a.author_id = b.author_id WHERE pricee > 2"
    result = runner.invoke(app, ["explain", "--db", str(BOOKSHOP), sql])
    assert result.exit_code == 0, result.stderr
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warning == (
        "warning: bookshop.sqlite has no column b.titel, column pricee; the explanation reads the SQL as written"
    )
    assert "It keeps only the rows where pricee is greater than 2." in result.stdout
    doc = json.loads(runner.invoke(app, ["explain", "--db", str(BOOKSHOP), "--json", sql]).stdout)
    assert doc["missing"] == ["column b.titel", "column pricee"]
    # names the query defines itself are not missing: an alias in ORDER BY, a WITH's columns
    for fine in [
        "SELECT title AS t FROM books ORDER BY t",
        "WITH cheap AS (SELECT title, price FROM books WHERE price < 10) SELECT title FROM cheap",
        "SELECT name FROM books JOIN authors USING (author_id)",
    ]:
        ok = runner.invoke(app, ["explain", "--db", str(BOOKSHOP), "--json", fine])
        assert ok.exit_code == 0 and "warning" not in ok.stderr, (fine, ok.stderr)
        assert json.loads(ok.stdout)["missing"] == []
