"""The names constraint (issue 30): which SQL prefixes a candidate may write, read by constraint.py
on hand-written text, and on the names of real SQLite, DuckDB and PostgreSQL catalogs."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from slmsql_cli.cli import app
from slmsql_cli.cli import options as opt
from slmsql_cli.config import AskConfig
from slmsql_cli.constraint import Names
from slmsql_cli.database import open_database
from slmsql_cli.pipeline import OUTSIDE, UNFINISHED

SPIDER = Names(
    {
        "singer": ["Singer_ID", "Name", "Age", "Country"],
        "concert": ["concert_ID", "concert_Name", "Stadium_ID", "Year"],
        "singer_in_concert": ["concert_ID", "Singer_ID"],
        "Order Items": ["item id", "qty"],
    }
)

ADMITTED = [
    # plain, joins, aliases used before they are defined
    "SELECT name FROM singer",
    "SELECT T1.name FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id",
    "SELECT T1.name FROM singer T1, concert T2 WHERE T1.singer_id = 3",
    "SELECT s.Name FROM singer AS s LEFT JOIN concert AS c ON s.Age = c.Year",
    "SELECT singer.name FROM singer JOIN singer_in_concert USING (singer_id)",
    "SELECT T1.* FROM singer AS T1",
    "SELECT * FROM singer NATURAL JOIN singer_in_concert",
    # subqueries, an alias defined inside one, compound queries
    "SELECT name FROM singer WHERE singer_id IN (SELECT T1.singer_id FROM singer_in_concert AS T1)",
    "SELECT a.name FROM singer a WHERE a.age > (SELECT AVG(age) FROM singer)",
    "SELECT t.name FROM (SELECT name, age FROM singer) AS t WHERE t.age > 3",
    "SELECT name FROM singer UNION SELECT concert_name FROM concert",
    "SELECT name FROM singer WHERE NOT EXISTS (SELECT 1 FROM concert WHERE concert.year = 2014)",
    # correlated: the inner query names the outer one's table, read before or after it
    "SELECT name FROM singer AS T1 WHERE EXISTS (SELECT 1 FROM concert AS T2 WHERE T2.year = T1.age)",
    "SELECT (SELECT COUNT(*) FROM concert WHERE concert.year = T1.age) FROM singer AS T1",
    "SELECT T1.name FROM singer AS T1 WHERE T1.singer_id IN (SELECT T1.singer_id FROM singer_in_concert AS T1)",
    # CTEs: their names, their columns, output names used after they are defined
    "WITH c AS (SELECT singer_id, COUNT(*) AS cnt FROM singer_in_concert GROUP BY singer_id) "
    "SELECT T.cnt FROM c AS T ORDER BY cnt DESC",
    "WITH c(a, b) AS (SELECT 1, 2) SELECT a, b FROM c",
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5) SELECT x FROM n",
    "SELECT COUNT(*) AS total FROM singer ORDER BY total",
    "SELECT COUNT(*) c FROM singer",
    "SELECT COUNT (*), max (age) FROM singer",
    # quoted names: backticks, brackets, double quotes; a double-quoted non-name is a string
    'SELECT `item id`, "qty" FROM `Order Items`',
    "SELECT [item id] FROM [Order Items] AS oi WHERE oi.`item id` > 1",
    'SELECT name FROM singer WHERE country = "France"',
    'SELECT "T1"."name" FROM "singer" AS "T1"',
    # keywords, functions, literals, comments
    "SELECT CAST(age AS REAL) / 2, strftime('%Y', 'now') - age FROM singer",
    "SELECT name, RANK() OVER (PARTITION BY country ORDER BY age DESC) AS r FROM singer",
    "SELECT CASE WHEN age > 3 THEN 'it''s' ELSE NULL END AS k FROM singer WHERE name LIKE '%a%' COLLATE NOCASE",
    "SELECT name FROM singer -- the names\nWHERE age BETWEEN 1 AND 2e1 /* and */ AND country IS NOT NULL;",
    "SELECT COUNT(DISTINCT country), MAX(age) - MIN(age), 0x1F FROM singer LIMIT 1 OFFSET 2",
    "SELECT rowid FROM singer",
    "SELECT name FROM main.singer",
    # prefixes: a name still being written
    "SELECT nam",
    "SELECT T1.Sing",
    "SELECT name FROM sing",
    "SELECT name FROM `Order It",
]

REFUSED = [
    "SELECT nmae FROM singer",  # no such column
    "SELECT name FROM singers",  # no such table
    "SELECT name FROM artist",
    'SELECT name FROM "artist"',  # double quotes after FROM name a table all the same
    "SELECT name FROM `Order Itemz`",
    "SELECT singer.concert_name FROM singer",  # a column of another table
    "SELECT T1.nmae FROM singer AS T1",
    "SELECT artist.name FROM singer",  # a qualifier that is no table and no alias-like word
    "SELECT name FROM (SELECT name FROM singer) AS t WHERE t.genre = 1",
    "SELECT COUNT(*) FROM singer AS T1 JOIN artist",
    "SELECT name FROM singer WHERE nationality = 'x'",
    "SELECT foo(name) FROM singer",  # no such function either
    "SELECT name FROM bogus.singer",
    "SELECT 1st_name FROM singer",
    "SELECT T1.name FROM singer AS T2;",  # T1 was never defined
    "SELECT T1.name FROM singer AS T2",
    "SELECT T1.year FROM singer AS T1",  # T1 stands for singer, which has no year
    "SELECT T2.year FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id",
    "SELECT name FROM singer)",
    # a column of another table than those the FROM reads
    "SELECT name FROM singer WHERE concert_name = 'x'",
    "SELECT concert_name FROM singer",
    "SELECT singer.name FROM singer AS T1",  # singer is known as T1 alone
    "SELECT name FROM singer WHERE singer > 1",  # a table is no value
    "SELECT T1.name FROM singer AS T1 WHERE T1.stadium_id = 1",
    "SELECT T9.* FROM singer AS T1",
    "SELECT AVG(RADIANS) FROM singer",  # a function's name is no column (a real model wrote it)
    "SELECT radians FROM singer",
    "SELECT * FROM concert SELECT year FROM singer",  # a second SELECT with no UNION: not the same FROM
]


@pytest.mark.parametrize("sql", ADMITTED)
def test_admitted(sql: str) -> None:
    assert SPIDER.admits(sql)
    if not sql.endswith(("nam", "Sing", "sing", "It")):
        assert SPIDER.admits(sql, whole=True)


@pytest.mark.parametrize("sql", REFUSED)
def test_refused(sql: str) -> None:
    assert not SPIDER.admits(sql, whole=True)


def test_every_prefix_of_admitted_sql_is_admitted() -> None:
    """Admissibility is of prefixes: a candidate's text is checked after every token."""
    for sql in ADMITTED:
        for end in range(len(sql) + 1):
            assert SPIDER.admits(sql[:end]), (sql, end)


def test_an_alias_used_before_its_subquery_defines_it_is_refused() -> None:
    """The one pass cannot see a later definition: documented in constraint.py."""
    assert not SPIDER.admits("SELECT s.cnt FROM (SELECT COUNT(*) AS cnt FROM singer) AS s")
    assert not SPIDER.admits("SELECT MAX(cnt) FROM (SELECT COUNT(*) AS cnt FROM singer)")
    # a real column through the same alias, and the output name once defined, are admitted
    assert SPIDER.admits("SELECT s.age FROM (SELECT age, COUNT(*) AS cnt FROM singer) AS s ORDER BY s.cnt")


def gated(text: str, names: Names = SPIDER) -> tuple[bool, bool]:
    """(every token admitted, the end admitted), feeding `text` as a candidate's tokens: 3 bytes each."""
    gate = names.start()
    data = text.encode("utf-8")
    fed = all(
        gate.copy().feed(data[i : i + 3]) and gate.feed(data[i : i + 3]) for i in range(0, len(data), 3)
    )
    return fed, fed and gate.can_end()


@pytest.mark.parametrize(
    "text",
    [
        "<think>\nMaybe the table artists? No: singers.\n</think>\n<answer>\nSELECT name FROM singer\n</answer>",
        "<think>the thought is free: <answer>SELECT x FROM nowhere</answer></think><answer>SELECT age FROM singer</answer>",
        "<answer>\n```sql\nSELECT name FROM singer\n```\n</answer> and after it, anything: nowhere.nothing",
        "Here it is:\n```sql\nSELECT `item id` FROM `Order Items`\n```",
        "<answer>SELECT name FROM singer WHERE name = 'Zoë ünïcode'</answer>",
    ],
)
def test_the_constraint_applies_inside_the_answer_only(text: str) -> None:
    assert gated(text) == (True, True)


@pytest.mark.parametrize(
    "text",
    [
        "<think>x</think>\n<answer>\nSELECT name FROM artist\n</answer>",
        "<answer>```sql\nSELECT nmae FROM singer\n```</answer>",
        "Sure:\n```sql\nSELECT name FROM singers\n```",
        "<answer>SELECT T9.name FROM singer</answer>",  # the alias never defined: no end
    ],
)
def test_missing_names_in_the_answer_are_refused(text: str) -> None:
    assert gated(text)[0] is False


def test_the_end_waits_for_a_complete_name_and_owed_aliases() -> None:
    gate = SPIDER.start()
    assert gate.feed(b"<answer>SELECT T1.name FROM singer AS T")
    assert not gate.can_end()  # T1 is still owed (and "T" would be a new alias, not T1)
    assert gate.feed(b"1")
    assert gate.can_end()
    gate = SPIDER.start()
    assert gate.feed(b"<answer>SELECT nam")
    assert not gate.can_end()  # "nam" names nothing


def test_the_closing_tag_waits_for_whole_sql() -> None:
    """</answer> is refused from its "/" on while a name is owed (the candidate used to reach
    "</answer" and end there, its SQL then carrying the half tag), and no character beyond ASCII
    may start inside the tag."""
    gate = SPIDER.start()
    assert gate.feed(b"<answer>\nSELECT concert_name FROM singer\n<")
    assert not gate.copy().feed(b"/")  # concert_name is no column of singer
    assert not gate.copy().feed(b"/answer>")
    gate = SPIDER.start()
    assert gate.feed(b"<answer>\nSELECT name FROM singer\n</answer")
    assert not gate.copy().feed(b"\xe2")  # the first byte of a character the tag cannot hold
    assert gate.feed(b">") and gate.can_end()


def test_asc_and_desc_follow_a_value() -> None:
    """SQLite reads `ORDER BY DESC` as a column named DESC: a model wrote it (a name the
    database lacks, by SQLite's error), so it is refused where an expression starts."""
    assert not SPIDER.admits("SELECT name FROM singer ORDER BY DESC ")
    assert not SPIDER.admits("SELECT name FROM singer ORDER BY age, ASC ")
    for sql in (
        "SELECT name FROM singer ORDER BY age DESC",
        "SELECT name FROM singer ORDER BY count(*) DESC, name ASC",
        "SELECT name FROM singer ORDER BY 1 DESC",
        "SELECT name FROM singer ORDER BY CASE WHEN age > 1 THEN 1 ELSE 0 END DESC",
    ):
        assert SPIDER.admits(sql, whole=True), sql


def test_a_date_part_is_no_column() -> None:
    """`ORDER BY Hour` on a database with no such column (a real model wrote it): a date part
    is admitted only where it is one."""
    assert not SPIDER.admits("SELECT name FROM singer ORDER BY hour DESC", whole=True)
    # concert has a year, singer none: sampled candidates wrote these
    assert not SPIDER.admits("SELECT name FROM singer WHERE year = 2014", whole=True)
    assert not SPIDER.admits("SELECT year FROM singer", whole=True)
    assert not SPIDER.admits("SELECT name FROM singer WHERE age > INTERVAL '1' DAY", whole=True)  # not SQLite
    assert not SPIDER.admits("SELECT name FROM singer WHERE indexed > 1", whole=True)  # a model wrote it
    for sql in (
        "SELECT EXTRACT(YEAR FROM name) FROM singer",
        "SELECT year FROM concert",  # a column of that name is a column
        "SELECT name FROM singer AS T1 JOIN concert AS T2 ON T1.age = T2.year ORDER BY year",
    ):
        assert SPIDER.admits(sql, whole=True), sql


def test_a_subquerys_group_by_names_its_own_columns_only() -> None:
    """SQLite resolves a subquery's GROUP BY and ORDER BY in its own FROM: `GROUP BY T1.name` with
    T1 outside is "no such column" (a real model wrote it); in WHERE the outer T1 is fine."""
    outer = "SELECT name FROM singer AS T1 WHERE age < (SELECT avg(year) FROM concert "
    assert not SPIDER.admits(outer + "GROUP BY T1.name)", whole=True)
    assert not SPIDER.admits(outer + "ORDER BY T1.age)", whole=True)
    assert SPIDER.admits(outer + "WHERE year = T1.age)", whole=True)
    assert SPIDER.admits(outer + "GROUP BY year ORDER BY year)", whole=True)


def test_a_keyword_where_a_value_goes_is_a_column_or_nothing() -> None:
    """SQLite reads a keyword that is no operator (`date`, `without`, `glob` aside) as a column
    name where a value goes: admitted only as a column the query can see. Sampled candidates wrote
    each of these; and no table is read through `temp.` (no temporary tables here)."""
    for sql in (
        "SELECT name FROM singer WHERE date = 1",
        "SELECT avg(without) FROM singer",
        "SELECT name FROM singer WHERE numeric > 1",
        "SELECT name FROM singer ORDER BY time",
        "SELECT name FROM temp.singer",
    ):
        assert not SPIDER.admits(sql, whole=True), sql
    for sql in (
        "SELECT name FROM singer WHERE age IS NOT NULL AND name LIKE 'a%' ESCAPE '!'",
        "SELECT CASE WHEN age BETWEEN 1 AND 2 THEN 'x' ELSE 'y' END FROM singer",
        "SELECT date('now'), replace(name, 'a', 'b') FROM singer",
        "SELECT CAST(age AS integer) FROM singer",
        "SELECT name FROM main.singer WHERE NOT EXISTS (SELECT 1 FROM concert)",
        "SELECT row_number() OVER (PARTITION BY age ORDER BY name ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM singer",
    ):
        assert SPIDER.admits(sql, whole=True), sql


def test_utf8_split_across_tokens() -> None:
    names = Names({"café": ["prix"]})
    gate = names.start()
    data = "<answer>SELECT prix FROM café</answer>".encode()
    cut = data.index(b"\xc3") + 1  # between the two bytes of é
    assert gate.feed(data[:cut]) and gate.feed(data[cut:])


# ---- the names of real catalogs -----------------------------------------------------------

# Names the models cannot guess, in the spellings each engine keeps: mixed case, a space.
DDL = [
    'CREATE TABLE "QxRel7" (vq_id INTEGER PRIMARY KEY, "ZzLabel" TEXT, "kp amount" REAL)',
    'CREATE TABLE wm_node3 (ht_key INTEGER PRIMARY KEY, qx_ref INTEGER REFERENCES "QxRel7" (vq_id))',
    "INSERT INTO \"QxRel7\" VALUES (1, 'alpha', 3.5), (2, 'beta', 7.0)",
    "INSERT INTO wm_node3 VALUES (10, 1), (11, 2), (12, 2)",
]
GOOD = (
    "SELECT T1.zzlabel, COUNT(*) FROM qxrel7 AS T1 JOIN wm_node3 AS T2 ON T1.vq_id = T2.qx_ref "
    "GROUP BY T1.zzlabel ORDER BY COUNT(*) DESC LIMIT 1"
)
GOOD_QUOTED = 'SELECT SUM(`kp amount`) FROM "QxRel7"'


def _check_catalog(db_text: str, dialect: str, qualifier: str) -> None:
    db = open_database([db_text])
    assert db.target.dialect == dialect
    names = Names.from_schema(db.schema, db.target.dialect)
    # what the constraint admits runs there (the models' SQLite SQL, transpiled)
    for sql in (GOOD, GOOD_QUOTED, f"SELECT ht_key FROM {qualifier}.wm_node3"):
        assert names.admits(sql, whole=True), sql
        result = db.run(sql, timeout=10)
        assert result.ok, (sql, result.error)
    assert db.run(GOOD, timeout=10).rows == [("beta", 2)]
    # what it refuses names what the catalog lacks
    for sql in (
        "SELECT label FROM qxrel7",
        "SELECT zzlabel FROM qx_rel7",
        "SELECT T1.ht_key FROM qxrel7 AS T1",
    ):
        assert not names.admits(sql, whole=True), sql
        assert not db.run(sql, timeout=10).ok, sql
    db.close()


def test_sqlite_catalog(tmp_path: Path, isolated_cache: Path) -> None:
    path = tmp_path / "zq.sqlite"
    with sqlite3.connect(path) as conn:
        for statement in DDL:
            conn.execute(statement)
    conn.close()
    _check_catalog(str(path), "sqlite", "main")


def test_duckdb_catalog(tmp_path: Path, isolated_cache: Path) -> None:
    duckdb = pytest.importorskip("duckdb", reason="the [targets] extra is not installed")
    path = tmp_path / "zq.duckdb"
    conn = duckdb.connect(str(path))
    for statement in DDL:
        conn.execute(statement)
    conn.close()
    _check_catalog(str(path), "duckdb", "main")
    assert Names({}, "duckdb").admits("SELECT table_name FROM information_schema.tables")


@pytest.fixture()
def pg_db(pg: Any, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg", reason="the [targets] extra is not installed")
    import pg_server

    monkeypatch.setenv("PGPASSWORD", pg_server.PASSWORD)
    name = "zq_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:10]

    def connect(dbname: str) -> Any:
        return psycopg.connect(pg.url(dbname), password=pg_server.PASSWORD, autocommit=True)

    with connect("postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    with connect(name) as conn:
        for statement in DDL:
            conn.execute(statement)
    yield pg.url(name)
    with connect("postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_postgres_catalog(pg_db: str, isolated_cache: Path) -> None:
    _check_catalog(pg_db, "postgres", "public")
    assert not Names({"t": ["a"]}, "postgres").admits("SELECT rowid FROM t")  # no rowid there


# ---- --constrain through the commands (scripted model: one token per byte) --------------------

QUESTION = "How many singers do we have?"


def said(sql: str) -> str:
    return f"<think>\nMaybe a table of artists? Count the rows.\n</think>\n<answer>\n{sql}\n</answer>"


@pytest.fixture()
def concert_singer(data_dir: Path, isolated_cache: Path) -> Path:
    return data_dir / "spider_dev/database/concert_singer/concert_singer.sqlite"


def _ask(db: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    import json

    result = CliRunner().invoke(
        app, ["ask", "--db", str(db), "--json", "--model", "scripted", *args, QUESTION]
    )
    doc = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {}
    return result.exit_code, doc, result.stderr


def test_ask_constrain_reports_it_and_ends_a_candidate_that_names_nothing(
    concert_singer: Path, scripted_engine: Any
) -> None:
    texts = [said("SELECT count(*) FROM artist"), said("SELECT count(*) FROM singer")]
    constrained = scripted_engine(list(texts))
    code, doc, err = _ask(concert_singer, "--no-merge", "-n", "2", "--constrain")
    assert code == 0, err
    assert doc["constrained"] is True and doc["rows"] == [[6]]
    first, second = doc["candidates"]
    # the first ended where the constraint left it nothing: at "a" of "artist"
    assert first["finish_reason"] == "constrained" and first["text"].endswith("FROM ")
    # unfinished SQL is shown but not run, and gets no vote
    assert first["sql"] == "SELECT count(*) FROM" and first["error"] == UNFINISHED and first["votes"] == 0
    assert second["finish_reason"] == "stop" and second["votes"] == 1
    # the thought named a table that does not exist: it stays free
    assert "artists?" in first["text"]
    # the same question without --constrain: the same prompt, the text as the model wrote it
    free = scripted_engine(list(texts))
    code, doc, err = _ask(concert_singer, "--no-merge", "-n", "2", "--no-constrain")
    assert code == 0, err
    assert doc["constrained"] is False
    assert [c["finish_reason"] for c in doc["candidates"]] == ["stop", "stop"]
    assert "no such table: artist" in doc["candidates"][0]["error"]
    assert free.prompts == constrained.prompts  # the prompt is unchanged (parity: test_prompts.py)


def test_verbose_says_which_candidate_the_constraint_ended(
    concert_singer: Path, scripted_engine: Any
) -> None:
    scripted_engine([said("SELECT name FROM artist"), said("SELECT count(*) FROM singer")])
    result = CliRunner().invoke(
        app,
        [
            "ask",
            "--db",
            str(concert_singer),
            "--model",
            "scripted",
            "--no-merge",
            "-n",
            "2",
            "--constrain",
            "-v",
        ]
        + [QUESTION],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.stderr
    # the table may fold the reason over lines: compare without the layout
    shown = "".join(c for c in result.stderr + result.stdout if c.isalnum())
    assert "".join(c for c in UNFINISHED if c.isalnum()) in shown, result.stderr


def test_constrain_is_refused_with_a_model_server(concert_singer: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["ask", "--db", str(concert_singer), "--endpoint", "http://127.0.0.1:9/v1", "--constrain", QUESTION],
    )
    assert result.exit_code == 2
    assert "--constrain needs the local engine" in result.stderr
    assert "own sampler" in result.stderr


def test_constrain_and_no_constrain_set_the_config() -> None:
    got: list[bool] = []
    probe = typer.Typer()

    @probe.command()
    @opt.ask_options(only=("constrain",))
    def _probe(*, config: AskConfig) -> None:
        got.append(config.constrain)

    # on by default (the local engine), since docs/ACCURACY.md's held-out rows
    for args, want in (([], True), (["--constrain"], True), (["--no-constrain"], False)):
        result = CliRunner().invoke(probe, args)
        assert result.exit_code == 0, result.output
        assert got[-1] is want, args
    assert "--no-constrain" not in CliRunner().invoke(probe, ["--help"]).stdout  # hidden: one line in --help


def test_every_sampling_command_takes_constrain() -> None:
    for command in ("ask", "chat", "serve", "eval", "bench"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert "--constrain" in result.stdout, command
        assert CliRunner().invoke(app, [command, "--no-constrain", "--help"]).exit_code == 0, command


# ---- a real model (Gemma 3 270M) on names it cannot guess --------------------------------------

UNGUESSABLE = [
    "CREATE TABLE qx_rel7 (vq_id INTEGER PRIMARY KEY, zz_label TEXT, kp_amount REAL)",
    "CREATE TABLE wm_node3 (ht_key INTEGER PRIMARY KEY, qx_ref INTEGER, jj_when TEXT)",
]
# The prompt opens the SQL block itself (`Names.within_sql`), so that a 270M model writes SQL.
REAL_PROMPT = (
    "<bos><start_of_turn>user\nDatabase tables: qx_rel7(vq_id, zz_label, kp_amount), "
    "wm_node3(ht_key, qx_ref, jj_when).\nWrite one SQLite query that lists the names and emails of "
    "the customers who placed an order in 2021.<end_of_turn>\n<start_of_turn>model\n```sql\nSELECT"
)


def names_missing(conn: sqlite3.Connection, text: str, finish_reason: str) -> str | None:
    """SQLite's word for what a candidate names that the database lacks ("no such table: x"), or
    None. A candidate cut short (the token limit, the constraint) loses its last fragment first:
    a name being written is not a name yet."""
    import re

    sql = "SELECT" + text.split("```")[0].split(";")[0]
    if finish_reason not in ("stop", "eog"):
        sql = re.sub(r"\S+$", "", sql)
    try:
        conn.execute("EXPLAIN " + sql)
    except sqlite3.Error as exc:
        message = str(exc)
        return message if message.startswith(("no such table", "no such column")) else None
    return None


def test_a_real_model_names_only_what_exists_when_constrained(gemma_gguf: Path) -> None:
    from slmsql_cli.engine import Engine
    from slmsql_cli.engine_protocol import SamplingParams

    conn = sqlite3.connect(":memory:")
    for statement in UNGUESSABLE:
        conn.execute(statement)
    names = Names(
        {"qx_rel7": ["vq_id", "zz_label", "kp_amount"], "wm_node3": ["ht_key", "qx_ref", "jj_when"]}
    )
    with Engine(gemma_gguf, threads=2) as engine:
        drawn = {}
        for constraint in (None, names.within_sql()):
            params = SamplingParams(n=8, max_tokens=40, seed=3, stop=("```", ";"), constraint=constraint)
            completions, _ = engine.sample(REAL_PROMPT, params)
            drawn[constraint is not None] = [
                names_missing(conn, c.text, c.finish_reason) for c in completions
            ]
    assert any(drawn[False]), drawn  # unconstrained, the model invents names (customers, ...)
    assert not any(drawn[True]), drawn


def test_an_eval_run_records_constrain_only_when_on() -> None:
    """Results files written before --constrain existed compare (and resume) as they did."""
    from slmsql_cli.eval.run import run_record

    off = run_record("spider", 30.0, model="m.gguf", config=AskConfig(constrain=False))
    on = run_record("spider", 30.0, model="m.gguf", config=AskConfig())  # on by default
    assert "constrain" not in off and on["constrain"] is True
    assert {k: v for k, v in on.items() if k != "constrain"} == off


def _spider_sqlite() -> sqlite3.Connection:
    """SPIDER's names as a real SQLite database: what the constraint refuses, SQLite refuses too."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(
        """CREATE TABLE singer (Singer_ID, Name, Age, Country);
        CREATE TABLE concert (concert_ID, concert_Name, Stadium_ID, Year);
        CREATE TABLE singer_in_concert (concert_ID, Singer_ID);"""
    )
    return conn


# Sampled candidates wrote each of these (issue 30's held-out run): SQLite answers "no such column"
# or "no such table", and the constraint refuses them.
SQLITE_REFUSES = [
    # the columns of a subquery in FROM, of a CTE, of a table function are what they return
    "SELECT T3.language FROM (SELECT name FROM singer) AS T3",
    "SELECT name FROM (SELECT singer_id FROM singer)",
    "SELECT t.country FROM (SELECT name, age FROM singer UNION SELECT concert_name, year FROM concert) AS t",
    "WITH t AS (SELECT name FROM singer) SELECT t.age FROM t",
    "WITH t AS (SELECT name FROM singer) SELECT name FROM t WHERE age > 1",
    "SELECT T2.stadium_id FROM pragma_table_info('singer') AS T2",
    "SELECT j.name FROM singer, json_each(singer.name) AS j",
    # a table function SQLite does not have
    "SELECT * FROM range(10)",
    "SELECT * FROM generate_series(1, 3)",
    # an operator with no value before it is a name to SQLite
    "SELECT avg(GloB) FROM singer",
    "SELECT count(match) FROM singer",
    "SELECT name FROM singer WHERE (like)",
]
SQLITE_RUNS = [
    "SELECT t.name FROM (SELECT name, age FROM singer) AS t WHERE t.age > 3",
    "SELECT name FROM (SELECT name, age FROM singer) WHERE age > 3",
    "SELECT s.name FROM (SELECT name, age AS a FROM singer) AS s ORDER BY s.a",
    "SELECT t.name FROM (SELECT name FROM singer UNION SELECT concert_name FROM concert) AS t",
    "SELECT t.age FROM (SELECT * FROM singer) AS t",  # `*`: its columns are not known here, any will do
    "WITH t AS (SELECT name, age FROM singer) SELECT t.age FROM t WHERE name > 'a'",
    "SELECT T2.name, T2.pk FROM pragma_table_info('singer') AS T2",
    "SELECT j.value, j.key FROM singer, json_each('[1, 2]') AS j",
    "SELECT name FROM singer WHERE name GLOB 'a*' AND name NOT LIKE 'b%' OR age NOT IN (1, 2)",
    "SELECT sum(age) OVER (ORDER BY age ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) FROM singer",
    "SELECT sum(age) OVER (ORDER BY age RANGE BETWEEN 1 PRECEDING AND UNBOUNDED FOLLOWING) FROM singer",
]


@pytest.mark.parametrize("sql", SQLITE_REFUSES)
def test_what_sqlite_refuses_the_constraint_refuses(sql: str) -> None:
    with pytest.raises(sqlite3.OperationalError, match="no such (column|table)"):
        _spider_sqlite().execute(sql)
    assert not SPIDER.admits(sql, whole=True)


@pytest.mark.parametrize("sql", SQLITE_RUNS)
def test_what_sqlite_runs_the_constraint_admits(sql: str) -> None:
    _spider_sqlite().execute(sql)
    for end in range(len(sql) + 1):
        assert SPIDER.admits(sql[:end]), (sql, end)
    assert SPIDER.admits(sql, whole=True)


def test_table_functions_per_dialect() -> None:
    """What a table function returns, in the dialect that has it."""
    duck = Names({"t": ["a"]}, "duckdb")
    assert duck.admits("SELECT r.range FROM range(3) AS r", whole=True)
    assert duck.admits("SELECT generate_series FROM generate_series(1, 3)", whole=True)
    assert not duck.admits("SELECT r.a FROM range(3) AS r", whole=True)
    assert not duck.admits("SELECT * FROM pragma_table_info('t')", whole=True)
    pg = Names({"t": ["a"]}, "postgres")
    assert pg.admits("SELECT g.generate_series FROM generate_series(1, 3) AS g", whole=True)
    assert not pg.admits("SELECT * FROM range(3)", whole=True)


def test_a_length_cut_inside_a_name_is_not_run(concert_singer: Path, scripted_engine: Any) -> None:
    """Under --constrain, a candidate --max-tokens cut where its SQL is not whole (`FROM sin`) is
    shown but not run and gets no vote; one cut where its SQL is whole runs. Without it, the cut
    SQL runs as before."""
    inside = said("SELECT count(*) FROM singer")
    cut = len(inside[: inside.index("FROM sin") + len("FROM sin")].encode("utf-8"))
    whole = "<answer>\nSELECT count(*) FROM singer"
    whole = "<think>\n" + "y" * (cut - len(whole) - len("<think>\n\n</think>\n")) + "\n</think>\n" + whole
    assert len(whole.encode("utf-8")) == cut
    texts = [inside, whole + " WHERE age > 1000\n</answer>"]
    scripted_engine(list(texts))
    code, doc, err = _ask(concert_singer, "--no-merge", "-n", "2", "--constrain", "--max-tokens", str(cut))
    assert code == 0, err
    first, second = doc["candidates"]
    assert first["finish_reason"] == "length" and first["sql"] == "SELECT count(*) FROM sin"
    assert first["error"].startswith("unfinished: --max-tokens cut it") and first["votes"] == 0
    assert second["finish_reason"] == "length" and second["sql"] == "SELECT count(*) FROM singer"
    assert second["votes"] == 1 and doc["rows"] == [[6]]
    scripted_engine(list(texts))
    code, doc, err = _ask(concert_singer, "--no-merge", "-n", "2", "--no-constrain", "--max-tokens", str(cut))
    assert code == 0, err
    assert "no such table: sin" in doc["candidates"][0]["error"]


def test_sql_outside_the_answer_block_runs_only_if_admitted(
    concert_singer: Path, scripted_engine: Any
) -> None:
    """The constraint reads the answer block; SQL `extract_sql` finds elsewhere (a bare reply, an
    untagged fence) was written free, so under --constrain it runs only if the constraint admits
    it whole."""
    texts = ["SELECT count(*) FROM artist", "```\nSELECT count(*) FROM singer\n```"]
    scripted_engine(list(texts))
    code, doc, err = _ask(concert_singer, "--no-merge", "-n", "2", "--constrain")
    assert code == 0, err
    first, second = doc["candidates"]
    assert first["sql"] == "SELECT count(*) FROM artist" and first["votes"] == 0
    assert first["error"] == OUTSIDE
    assert second["error"] is None and second["votes"] == 1 and doc["rows"] == [[6]]
