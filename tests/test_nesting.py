"""The nesting cap (targets/sqlcheck.py `too_deep`, MAX_NESTING): SQL nested deeper than sqlglot's
recursion can take is refused with a reason before sqlglot sees it, by the SQL check and by
transpile, so no door (explain, ask on DuckDB, /v1/sql, saved import) ends in a RecursionError.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import scripted_cli
from typer.testing import CliRunner

from slmsql_cli.cli import app
from slmsql_cli.explain import explain_sql
from slmsql_cli.schema import Column, Schema, Table
from slmsql_cli.targets.dialect import check_target_sql
from slmsql_cli.targets.sqlcheck import MAX_NESTING, NESTED_TOO_DEEPLY, check_sql, nesting_depth
from slmsql_cli.transpile import transpile

runner = CliRunner()
DEEP = "SELECT " + "(" * 20_000 + "1" + ")" * 20_000  # the attack of issue 31
OVER = f"the statement is nested more than {MAX_NESTING} levels deep (parentheses and CASE)"
SCHEMA = Schema("pets", [Table("pets", [Column("name", "TEXT"), Column("age", "INTEGER")], [], [])])


def parens(depth: int) -> str:
    return "SELECT " + "(" * depth + "1" + ")" * depth


def calls(depth: int) -> str:  # nested function calls cost sqlglot the most frames per level
    return "SELECT age + " + "abs(" * depth + "age" + ")" * depth + " FROM pets"


def cases(depth: int) -> str:
    return "SELECT " + "CASE WHEN age > 1 THEN " * depth + "1" + " END" * depth + " FROM pets"


def with_frames(frames: int, work: Callable[[], Any]) -> Any:
    """`work()` with `frames` more Python frames on the stack: a caller deep in a web server or pytest."""
    return with_frames(frames - 1, work) if frames else work()


def test_the_depth_scan_counts_parentheses_and_case_outside_strings_and_comments() -> None:
    assert nesting_depth(parens(7)) == 7 and nesting_depth(cases(5)) == 5
    assert nesting_depth("SELECT abs((1)), CASE WHEN (a) THEN 1 END, end_date FROM t") == 2
    hidden = "(" * 50
    for quoted in (f"'{hidden}'", f'"{hidden}"', f"`{hidden}`", f"[{hidden}]", f"/* {hidden} */"):
        assert nesting_depth(f"SELECT {quoted}, (1)") == 1, quoted
    assert nesting_depth(f"SELECT (1) -- {hidden}\n") == 1
    assert nesting_depth(f"SELECT 'it''s' || '{hidden}'") == 0  # SQLite's doubled quote
    assert nesting_depth("SELECT '" + hidden) == 0  # an open string runs to the end
    start = time.perf_counter()
    assert nesting_depth("(" * 1_000_000, stop_above=MAX_NESTING) == MAX_NESTING + 1
    assert time.perf_counter() - start < 0.5  # stops at the cap, not at the end


def test_the_cap_refuses_in_the_check_and_in_transpile() -> None:
    for make in (parens, calls, cases):
        assert check_sql(make(MAX_NESTING)) is None, make.__name__
        assert check_sql(make(MAX_NESTING + 1)) == OVER, make.__name__
        for dialect in ("duckdb", "postgres"):
            assert transpile(make(MAX_NESTING), dialect, SCHEMA).sql, (make.__name__, dialect)
            over = transpile(make(MAX_NESTING + 1), dialect, SCHEMA)
            assert (over.sql, over.reason) == (None, OVER), (make.__name__, dialect)
    assert check_sql(DEEP) == OVER and transpile(DEEP, "duckdb").reason == OVER
    assert explain_sql(DEEP).uncovered == [DEEP]  # not covered, never a RecursionError
    # deep without parentheses: sqlglot's RecursionError is caught and becomes the same refusal
    chain = "SELECT name FROM pets WHERE " + "NOT " * 5_000 + "age"
    assert check_sql(chain) == NESTED_TOO_DEEPLY
    assert transpile(chain, "postgres").reason == NESTED_TOO_DEEPLY


def test_what_the_cap_allows_fits_python_s_recursion_limit() -> None:
    """The cap's margin: at MAX_NESTING, with 200 frames already on the stack (the CLI has about
    20), the whole path of a query on DuckDB/PostgreSQL and its explanation stays below Python's
    recursion limit. A sqlglot that recurses more per level fails here, not in front of a user."""
    assert sys.getrecursionlimit() == 1000

    def whole_path(sql: str) -> None:
        assert check_sql(sql) is None
        for dialect in ("duckdb", "postgres"):
            out = transpile(sql, dialect, SCHEMA).sql
            assert out and check_target_sql(out, dialect) is None
        assert explain_sql(sql).sentences

    for make in (parens, calls, cases):
        with_frames(200, lambda make=make: whole_path(make(MAX_NESTING)))


def test_explain_refuses_deep_sql_in_one_line(pets_db: Path, isolated_cache: Path) -> None:
    result = runner.invoke(app, ["explain", "--db", str(pets_db), DEEP])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"error: this SQL is refused: {OVER}"
    assert "Traceback" not in result.stderr + result.stdout


def test_saved_import_skips_a_deep_line_and_imports_the_rest(
    pets_db: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    lines = [
        json.dumps({"question": "How many pets?", "sql": "SELECT count(*) FROM pets"}),
        "[" * 100_000 + "]" * 100_000,  # deeper than json's parser can go
        json.dumps({"question": "Deep?", "sql": DEEP}),
        json.dumps({"question": "Oldest?", "sql": "SELECT max(age) FROM pets"}),
    ]
    source = tmp_path / "team.jsonl"
    source.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["saved", "import", str(source), "--db", str(pets_db)])
    assert (
        "Traceback" not in result.stderr
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )
    assert "line 2: not a saved answer (nested too deeply to read)" in result.stderr
    assert f"line 3: this SQL is refused: {OVER}" in result.stderr
    assert "imported 2 saved answer(s)" in result.stderr
    exported = runner.invoke(app, ["saved", "export"]).stdout.splitlines()
    assert [json.loads(x)["question"] for x in exported] == ["How many pets?", "Oldest?"]


@pytest.fixture()
def duck(tmp_path: Path) -> Path:
    duckdb = pytest.importorskip("duckdb", reason="the [targets] extra is not installed")
    path = tmp_path / "shop.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE pets (name TEXT, age INTEGER)")
    conn.execute("INSERT INTO pets VALUES ('Rex', 3), ('Tom', 5)")
    conn.close()
    return path


def test_ask_on_duckdb_answers_deep_sql_with_an_error_line(duck: Path, tmp_path: Path) -> None:
    """The real CLI in a child process (issue 31: it crashed with a RecursionError traceback)."""
    proc = scripted_cli.run(
        DEEP, "ask", "--db", duck, "-m", "scripted", "-n", "1", "--no-merge", "--no-values", "How many?",
        env={"SLMSQL_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: none of the 1 candidate(s) wrote SQL that ran; the first one failed: {OVER}"]
    assert "Traceback" not in proc.stderr


def test_v1_sql_refuses_deep_sql_on_sqlite_and_duckdb(
    duck: Path, pets_db: Path, scripted_engine: Any, isolated_cache: Path
) -> None:
    pytest.importorskip("fastapi", reason="needs the [serve] extra")
    from starlette.testclient import TestClient

    from slmsql_cli.pipeline import AskConfig, Pipeline
    from slmsql_cli.serve.http import create_app
    from slmsql_cli.serve.registry import Registry
    from slmsql_cli.serve.service import Service

    scripted_engine([])
    pipeline = Pipeline.load("scripted", config=AskConfig(n=1, merge=False, timeout=5))
    service = Service(
        pipeline, Registry.open([f"duck={duck}", f"pets={pets_db}"]), model_name="scripted", load_seconds=0.0
    )
    try:
        client = TestClient(create_app(service), raise_server_exceptions=False)
        for name in ("duck", "pets"):
            response = client.post("/v1/sql", json={"database": name, "sql": DEEP})
            assert response.status_code != 500, response.text
            assert OVER in response.json()["error"], response.text
    finally:
        service.close()
