"""SQLite SQL → DuckDB / PostgreSQL (slmsql_cli/transpile.py), the SQLite copier (targets/sqlite_copy.py)
and `slmsql eval --engine duckdb|postgres`.

Each rewrite has a pair (SQLite in, target SQL out), sqlglot's fixture style; the same SQL also
runs for real - on a SQLite file and on its copy in DuckDB (and PostgreSQL, on a throwaway
server: tests/pg_server.py) - and must give the same rows.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slmsql_cli.cli import app
from slmsql_cli.schema import Column, Schema, Table
from slmsql_cli.targets import sqlite_copy
from slmsql_cli.transpile import REWRITES, transpile

pytest.importorskip("duckdb")
sys.path.insert(0, str(Path(__file__).parent))
import pg_server

runner = CliRunner()

SCHEMA = Schema(
    "shop",
    [
        Table(
            "Singer",
            [
                Column("Singer_ID", "integer"),
                Column("Name", "text"),
                Column("Age", "text"),
                Column("Country", "text"),
                Column("Score", "real"),
            ],
        ),
        Table(
            "concert",
            [
                Column("concert_ID", "integer"),
                Column("Stadium_ID", "text"),
                Column("Singer_ID", "integer"),
                Column("Year", "text"),
            ],
        ),
    ],
)
ROWS = {
    "Singer": [
        (1, "anna", "9", "France", 2.5),
        (2, "Bob", "10", "France", 4.0),
        (3, "Carla", "10", "Peru", 4.0),
        (4, "dan", "abc", "Peru", None),
        (5, None, None, "Chad", 1.0),
    ],
    "concert": [(1, "2", 1, "2014-06-01"), (2, "x", 2, "2015-01-31 10:00"), (3, "5", 3, "2015-03-01")],
}
N = r"^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"

# (rewrite, SQLite SQL, DuckDB SQL, PostgreSQL SQL)
PAIRS = [
    (
        "double_quotes_are_strings",
        'SELECT Name FROM singer WHERE Country = "France"',
        """SELECT singer."Name" AS name FROM "Singer" AS singer WHERE singer."Country" = 'France'""",
        """SELECT singer."Name" AS name FROM "Singer" AS singer WHERE singer."Country" = 'France'""",
    ),
    (
        "like_ignores_case",
        "SELECT Name FROM singer WHERE Name LIKE 'a%'",
        """SELECT singer."Name" AS name FROM "Singer" AS singer WHERE singer."Name" ILIKE 'a%'""",
        """SELECT singer."Name" AS name FROM "Singer" AS singer WHERE singer."Name" ILIKE 'a%'""",
    ),
    (
        "comparisons_follow_affinity",
        "SELECT Name FROM singer WHERE Age > 5",
        """SELECT singer."Name" AS name FROM "Singer" AS singer WHERE singer."Age" > '5'""",
        """SELECT singer."Name" AS name FROM "Singer" AS singer WHERE singer."Age" > '5'""",
    ),
    (
        "comparisons_follow_affinity",
        "SELECT Name FROM singer WHERE Singer_ID IN (SELECT Stadium_ID FROM concert)",
        'SELECT singer."Name" AS name FROM "Singer" AS singer WHERE singer."Singer_ID" IN '
        '(SELECT TRY_CAST(concert."Stadium_ID" AS DOUBLE) AS stadium_id FROM "concert" AS concert)',
        'SELECT singer."Name" AS name FROM "Singer" AS singer WHERE singer."Singer_ID" IN '
        f"""(SELECT CASE WHEN concert."Stadium_ID" ~ '{N}' THEN CAST(concert."Stadium_ID" AS DOUBLE PRECISION) END"""
        ' AS stadium_id FROM "concert" AS concert)',
    ),
    (
        "numeric_aggregates_read_text_as_numbers",
        "SELECT avg(Age) FROM singer",
        'SELECT AVG(CASE WHEN singer."Age" IS NULL THEN NULL ELSE COALESCE(TRY_CAST(singer."Age" AS DOUBLE), 0) END)'
        ' AS _col_0 FROM "Singer" AS singer',
        f"""SELECT AVG(CASE WHEN singer."Age" IS NULL THEN NULL ELSE CASE WHEN singer."Age" ~ '{N}'"""
        ' THEN CAST(singer."Age" AS DOUBLE PRECISION) ELSE 0 END END) AS _col_0 FROM "Singer" AS singer',
    ),
    (
        "bare_columns_take_one_row",
        "SELECT Name, max(Score) FROM singer",
        'SELECT ARG_MAX_NULL(singer."Name", singer."Score") AS name, MAX(singer."Score") AS _col_1 FROM "Singer" AS singer',
        'SELECT (ARRAY_AGG(singer."Name" ORDER BY singer."Score" DESC NULLS LAST))[1] AS name,'
        ' MAX(singer."Score") AS _col_1 FROM "Singer" AS singer',
    ),
    (
        "bare_columns_take_one_row",
        "SELECT c.Year, count(*) FROM concert AS c GROUP BY c.concert_ID",
        'SELECT ANY_VALUE(c."Year") AS year, COUNT(*) AS _col_1 FROM "concert" AS c GROUP BY c."concert_ID"',
        'SELECT (ARRAY_AGG(c."Year"))[1] AS year, COUNT(*) AS _col_1 FROM "concert" AS c GROUP BY c."concert_ID"',
    ),
    (
        "group_order_breaks_ties",
        "SELECT Country FROM singer GROUP BY Country ORDER BY count(*) DESC LIMIT 1",
        'SELECT singer."Country" AS country FROM "Singer" AS singer GROUP BY singer."Country"'
        ' ORDER BY COUNT(*) DESC, singer."Country" DESC LIMIT 1',
        'SELECT singer."Country" AS country FROM "Singer" AS singer GROUP BY singer."Country"'
        ' ORDER BY COUNT(*) DESC NULLS LAST, singer."Country" DESC NULLS LAST LIMIT 1',
    ),
    (
        "scan_order_breaks_ties",
        "SELECT Name FROM singer ORDER BY Score",
        'SELECT singer."Name" AS name FROM "Singer" AS singer ORDER BY singer."Score" NULLS FIRST, singer.rowid NULLS FIRST',
        'SELECT singer."Name" AS name FROM "Singer" AS singer ORDER BY singer."Score" NULLS FIRST, singer.ctid NULLS FIRST',
    ),
    (
        "names_as_the_schema_spells_them",
        "SELECT NAME FROM SINGER",
        'SELECT singer."Name" AS name FROM "Singer" AS singer',
        'SELECT singer."Name" AS name FROM "Singer" AS singer',
    ),
    (
        "julianday_has_an_equivalent",
        "SELECT julianday('2015-03-01') - julianday(Year) FROM concert",
        "SELECT (JULIAN(CAST('2015-03-01' AS TIMESTAMP)) - 0.5) - (JULIAN(CAST(concert.\"Year\" AS TIMESTAMP)) - 0.5)"
        ' AS _col_0 FROM "concert" AS concert',
        "SELECT (CAST(EXTRACT(JULIAN FROM CAST('2015-03-01' AS TIMESTAMP)) AS DOUBLE PRECISION) - 0.5) -"
        ' (CAST(EXTRACT(JULIAN FROM CAST(concert."Year" AS TIMESTAMP)) AS DOUBLE PRECISION) - 0.5)'
        ' AS _col_0 FROM "concert" AS concert',
    ),
    (  # sqlglot's own: integer division stays integer (typed by the schema), x/0 is NULL. The exact
        # text is sqlglot 30.31.0's (constraints.txt): 30.30 wrote `/ 2` where it now writes the same
        # meaning as `/ NULLIF(2, 0)`; what is checked is that both engines return SQLite's values
        "qualify_and_type",
        "SELECT Singer_ID / 2, Score / 0 FROM singer",
        'SELECT CAST(TRUNC(singer."Singer_ID" / NULLIF(2, 0)) AS BIGINT) AS _col_0, singer."Score" / NULLIF(0, 0) AS _col_1'
        ' FROM "Singer" AS singer',
        'SELECT singer."Singer_ID" / NULLIF(2, 0) AS _col_0, singer."Score" / NULLIF(0, 0) AS _col_1 FROM "Singer" AS singer',
    ),
    (  # sqlglot's own: IIF, IFNULL, SUBSTR, and || (NULL stays NULL in both)
        "qualify_and_type",
        "SELECT IIF(Score > 2, 'a', 'b'), IFNULL(Name, '-'), SUBSTR(Country, 1, 2), Name || '!' FROM singer",
        "SELECT CASE WHEN singer.\"Score\" > 2 THEN 'a' ELSE 'b' END AS _col_0, COALESCE(singer.\"Name\", '-') AS _col_1,"
        ' SUBSTRING(singer."Country", 1, 2) AS _col_2, singer."Name" || \'!\' AS _col_3 FROM "Singer" AS singer',
        "SELECT CASE WHEN singer.\"Score\" > 2 THEN 'a' ELSE 'b' END AS _col_0, COALESCE(singer.\"Name\", '-') AS _col_1,"
        ' SUBSTRING(singer."Country" FROM 1 FOR 2) AS _col_2, singer."Name" || \'!\' AS _col_3 FROM "Singer" AS singer',
    ),
]


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
@pytest.mark.parametrize(
    ("rewrite", "sql", "duck", "pg"), PAIRS, ids=[f"{p[0]}-{i}" for i, p in enumerate(PAIRS)]
)
def test_rewrite_pair(rewrite: str, sql: str, duck: str, pg: str, dialect: str) -> None:
    out = transpile(sql, dialect, SCHEMA)
    assert out.reason is None
    assert out.sql == (duck if dialect == "duckdb" else pg)


# (rewrite, dialect, SQLite SQL, the reason's start)
REFUSED = [
    (
        "sqlite_only_features_are_refused",
        "postgres",
        "SELECT Name FROM singer WHERE Name MATCH 'x'",
        "no postgres form: MATCH",
    ),
    (
        "sqlite_only_features_are_refused",
        "postgres",
        "SELECT Name FROM singer WHERE Name GLOB 'a*'",
        "no postgres form: GLOB",
    ),
    (
        "sqlite_only_features_are_refused",
        "duckdb",
        "SELECT total(Score) FROM singer",
        "no duckdb form: total()",
    ),
    ("parse", "duckdb", "SELECT FROM WHERE (", "sqlglot cannot parse it"),
]


def test_every_rewrite_has_a_pair() -> None:
    assert {r.__name__ for r in REWRITES} == {p[0] for p in PAIRS} | {r[0] for r in REFUSED[:-1]}


def test_without_a_schema_only_the_untyped_rewrites_run() -> None:
    out = transpile("SELECT Name FROM singer WHERE Name LIKE 'a%' ORDER BY Name", "postgres")
    assert (
        out.sql
        == "SELECT Name FROM singer WHERE Name ILIKE 'a%' ORDER BY Name NULLS FIRST, singer.ctid NULLS FIRST"
    )


@pytest.mark.parametrize(("rewrite", "dialect", "sql", "reason"), REFUSED)
def test_what_cannot_be_transpiled_says_why(rewrite: str, dialect: str, sql: str, reason: str) -> None:
    out = transpile(sql, dialect, SCHEMA)
    assert out.sql is None
    assert out.reason is not None and out.reason.startswith(reason)


def test_unknown_dialect_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        transpile("SELECT 1", "mysql")


# --- the same rows in SQLite and in its copies ------------------------------------------------


@pytest.fixture()
def shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE Singer (Singer_ID INTEGER PRIMARY KEY, Name TEXT, Age VARCHAR(5), Country TEXT, Score REAL)"
    )
    conn.execute(
        "CREATE TABLE concert (concert_ID INTEGER PRIMARY KEY, Stadium_ID TEXT, Singer_ID INT, Year TEXT)"
    )
    for table, rows in ROWS.items():
        conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
    conn.commit()
    conn.close()
    return path


def _sqlite_rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def _agree(copy: sqlite_copy.Copy, target, shop: Path) -> None:  # type: ignore[no-untyped-def]
    from slmsql_cli.targets import run_many

    for rewrite, sql, *_ in PAIRS:
        (result,) = run_many(target, [sql], timeout=10, max_rows=1000, schema=copy.schema)
        assert result is not None and result.ok, (rewrite, sql, result)
        expected = _sqlite_rows(shop, sql)
        ordered = "ORDER BY" in sql.upper()
        assert (result.rows if ordered else sorted(map(repr, result.rows))) == (
            expected if ordered else sorted(map(repr, expected))
        ), (rewrite, sql)


def test_the_rewrites_give_sqlites_rows_in_duckdb(shop: Path, isolated_cache: Path) -> None:
    from slmsql_cli.targets.duckdb_target import DuckDBTarget

    copy = sqlite_copy.to_duckdb(shop)
    target = DuckDBTarget(Path(copy.location))
    try:
        _agree(copy, target, shop)
    finally:
        target.close()


@pytest.mark.slow
def test_the_rewrites_give_sqlites_rows_in_postgres(
    shop: Path, pg: pg_server.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slmsql_cli.targets.postgres_target import PostgresTarget

    monkeypatch.setenv("PGPASSWORD", pg_server.PASSWORD)
    with sqlite_copy.to_postgres(shop, pg.url()) as copy:
        target = PostgresTarget(copy.location)
        try:
            _agree(copy, target, shop)
        finally:
            target.close()
        name = copy.location.rsplit("/", 1)[1]
    import psycopg

    with psycopg.connect(pg.url(), password=pg_server.PASSWORD) as conn:  # the scratch database is gone
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone() == (0,)


def test_column_types_follow_the_values() -> None:
    assert sqlite_copy.column_kind({"integer", "null"}, "TEXT") == "integer"  # SQLite kept no text
    assert sqlite_copy.column_kind({"integer", "real"}, "INT") == "real"
    assert sqlite_copy.column_kind({"integer", "text"}, "INTEGER") == "text"  # '' among numbers
    assert sqlite_copy.column_kind({"blob"}, "") == "blob"
    assert sqlite_copy.column_kind({"null"}, "VARCHAR(20)") == "text"
    assert sqlite_copy.column_kind(set(), "DECIMAL(10,2)") == "real"


def test_duckdb_copy_keeps_mixed_columns_and_is_cached(tmp_path: Path, isolated_cache: Path) -> None:
    import duckdb

    path = tmp_path / "mixed.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute('CREATE TABLE "odd name" (n INTEGER, x, b BLOB)')
        conn.executemany(
            'INSERT INTO "odd name" VALUES (?, ?, ?)', [(1, 1.5, b"\x00"), ("", "a", None), (None, 2, None)]
        )
    copy = sqlite_copy.to_duckdb(path)
    assert [c.type for c in copy.schema.tables[0].columns] == ["text", "text", "blob"]
    with duckdb.connect(copy.location, read_only=True) as conn:
        assert conn.execute('SELECT * FROM "odd name"').fetchall() == [
            ("1", "1.5", b"\x00"),
            ("", "a", None),
            (None, "2", None),
        ]
    assert sqlite_copy.to_duckdb(path).location == copy.location  # built once per version of the file


# --- slmsql eval --engine -----------------------------------------------------------------------


def _gold_file(questions: Path, tmp_path: Path) -> Path:
    items = json.loads(questions.read_text(encoding="utf-8"))
    path = tmp_path / "gold.json"
    path.write_text(json.dumps([i.get("query") or i["SQL"] for i in items]), encoding="utf-8")
    return path


def _eval(data_dir: Path, tmp_path: Path, name: str, *extra: str) -> dict:
    folder, db = {"spider": ("spider_dev", "database"), "bird": ("bird_dev", "dev_databases")}[name]
    questions = data_dir / folder / "dev.json"
    args = ["eval", "-q", str(questions), "--db-dir", str(data_dir / folder / db)]
    args += ["--predictions", str(_gold_file(questions, tmp_path)), "--json", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["spider", "bird"])
def test_eval_engine_duckdb_agrees_with_sqlite(
    data_dir: Path, tmp_path: Path, isolated_cache: Path, name: str
) -> None:
    summary = _eval(data_dir, tmp_path, name, "--engine", "duckdb", "--out", str(tmp_path / "out.jsonl"))
    assert summary["gold_errors"] == 0
    assert summary["ex"] >= 98.0  # the tie cases of docs/TRANSPILE.md
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert all(r["run"]["engine"] == "duckdb" for r in records)


@pytest.mark.slow
def test_eval_engine_postgres_agrees_with_sqlite(
    data_dir: Path, tmp_path: Path, pg: pg_server.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    monkeypatch.setenv("PGPASSWORD", pg_server.PASSWORD)
    monkeypatch.setenv("SLMSQL_PG_URL", pg.url())
    summary = _eval(data_dir, tmp_path, "spider", "--engine", "postgres")
    assert summary["gold_errors"] == 0
    assert summary["ex"] >= 98.0
    with psycopg.connect(pg.url(), password=pg_server.PASSWORD) as conn:  # scratch databases dropped
        assert conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'slmsql_scratch_%'"
        ).fetchone() == (0,)


def test_eval_engine_postgres_needs_a_server(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLMSQL_PG_URL", raising=False)
    questions = data_dir / "spider_dev" / "dev.json"
    args = ["eval", "-q", str(questions), "--db-dir", str(data_dir / "spider_dev" / "database")]
    args += ["--predictions", str(_gold_file(questions, tmp_path)), "--engine", "postgres", "--limit", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert "--engine postgres needs a server" in result.output


def test_eval_engine_must_be_known(data_dir: Path, tmp_path: Path) -> None:
    questions = data_dir / "spider_dev" / "dev.json"
    args = ["eval", "-q", str(questions), "--db-dir", str(data_dir / "spider_dev" / "database")]
    args += ["--predictions", str(_gold_file(questions, tmp_path)), "--engine", "mysql"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "'mysql' is not one of sqlite, duckdb, postgres" in result.output


def test_results_of_another_engine_do_not_resume(
    data_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    out = str(tmp_path / "out.jsonl")
    _eval(data_dir, tmp_path, "spider", "--limit", "2", "--out", out)
    questions = data_dir / "spider_dev" / "dev.json"
    args = [
        "eval",
        "-q",
        str(questions),
        "--db-dir",
        str(data_dir / "spider_dev" / "database"),
        "--limit",
        "2",
    ]
    args += ["--predictions", str(tmp_path / "gold.json"), "--engine", "duckdb", "--out", out]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert "holds results of another run" in result.output
