"""Every table slmsql prints reads well in an 80-column terminal (and a 100-column one).

"Reads well": no line wider than the terminal, no header collapsed to nothing or cut to '…', no
value cut to '…', and the key column (the model alias, the result's values) whole.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import REPO, Slmsql
from rich.console import Console

from slmsql_cli.models import REGISTRY
from slmsql_cli.render import rows_table
from slmsql_cli.targets.executor import execute

DEMO = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"


def terminal(width: int, **env: str) -> dict[str, str]:
    """The environment of a terminal `width` columns wide without colour, plus `env`."""
    return {**env, "COLUMNS": str(width), "NO_COLOR": "1"}


def header_cells(text: str) -> list[list[str]]:
    """The header cells of every table in `text`: the lines between a ┏ top border and ┡."""
    tables, lines, inside = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("┏"):
            inside, lines = True, []
        elif line.lstrip().startswith("┡") and inside:
            inside = False
            rows = [[c.strip() for c in ln.strip().strip("┃").split("┃")] for ln in lines]
            tables.append([" ".join(filter(None, col)) for col in zip(*rows)])
        elif inside:
            lines.append(line)
    return tables


def check_layout(text: str, width: int, headers: list[list[str]]) -> None:
    too_wide = [line for line in text.splitlines() if len(line) > width]
    assert not too_wide, f"lines wider than {width}: {too_wide[:3]}"
    assert "…" not in text, text
    found = header_cells(text)
    assert found == headers, text
    for table in found:
        assert all(table), f"an empty header: {table}"


def rendered(renderable: object, width: int) -> str:
    console = Console(width=width, record=True, file=open(os.devnull, "w"), color_system=None)
    console.print(renderable)
    return console.export_text()


# ---- slmsql models ------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 100])
def test_models_reads_well(slmsql: Slmsql, width: int, tmp_path: Path) -> None:
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "SLMSQL_CACHE_DIR": str(tmp_path / "c")}
    proc = slmsql("models", env=terminal(width, **env))
    assert proc.returncode == 0, proc.stderr
    # the folders models are looked for in stay whole on their own lines, however long, to be copied
    folders = [line for line in proc.stdout.splitlines() if line.startswith("    /")]
    text = "\n".join(line for line in proc.stdout.splitlines() if line not in folders)
    tables = header_cells(text)
    check_layout(text, width, tables)
    columns = {h for table in tables for h in table}
    assert {"alias", "role", "Hugging Face repo", "cached", "note"} <= columns
    lines = text.splitlines()
    for model in REGISTRY:  # alias and repo id whole, on one line each: they are what users copy
        assert any(model.alias in line for line in lines), model.alias
        assert any(model.repo in line for line in lines), model.repo
    # where models are looked for, each folder whole on its line, and the download command
    assert "Models are looked for in:" in lines and f"    {tmp_path / 'hf' / 'hub'}" in folders
    assert any(line.startswith(f"  hf download {REGISTRY[0].repo}  ") for line in lines)


def test_models_uses_one_table_when_it_fits(slmsql: Slmsql, tmp_path: Path) -> None:
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "SLMSQL_CACHE_DIR": str(tmp_path / "c")}
    proc = slmsql("models", env=terminal(200, **env))
    assert proc.returncode == 0, proc.stderr
    tables = header_cells(proc.stdout)
    assert tables == [["alias", "role", "Hugging Face repo", "base model", "download", "cached", "note"]]


# ---- an ask result --------------------------------------------------------------------------------


@pytest.fixture()
def wide_db(tmp_path: Path) -> Path:
    path = tmp_path / "wide.sqlite"
    conn = sqlite3.connect(path)
    columns = [f"measurement_{name}" for name in "abcdefghijkl"]
    conn.execute(f"CREATE TABLE readings (station_name TEXT, {', '.join(c + ' REAL' for c in columns)})")
    for i in range(3):
        conn.execute(
            "INSERT INTO readings VALUES (?" + ", ?" * len(columns) + ")",
            [f"Station number {i} [north]", *(1000.5 + i + j / 7 for j in range(len(columns)))],
        )
    conn.commit()
    conn.close()
    return path


def test_a_result_with_many_columns_shows_every_field_whole(wide_db: Path) -> None:
    result = execute(wide_db, "SELECT * FROM readings")
    assert result.ok and len(result.columns) == 13
    text = rendered(rows_table(result, width=80), 80)
    check_layout(text, 80, [["#", "column", "value"]])
    for column in result.columns:
        assert column in text
    for row in result.rows:  # every value whole, brackets included (text, not markup)
        for value in row:
            assert str(value) in text, value


def test_a_narrow_result_stays_a_table(wide_db: Path) -> None:
    result = execute(wide_db, "SELECT station_name, measurement_a FROM readings")
    text = rendered(rows_table(result, width=80), 80)
    check_layout(text, 80, [["station_name", "measurement_a"]])
    assert "Station number 2 [north]" in text


# ---- eval summaries and comparisons ------------------------------------------------------------------


def test_eval_tables_read_well(slmsql: Slmsql, tmp_path: Path) -> None:
    db_dir = tmp_path / "databases"
    (db_dir / "shop").mkdir(parents=True)
    conn = sqlite3.connect(db_dir / "shop" / "shop.sqlite")
    conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    conn.executemany("INSERT INTO item VALUES (?, ?, ?)", [(1, "pen", 1.5), (2, "ink", 7.0)])
    conn.commit()
    conn.close()
    gold = ["SELECT count(*) FROM item", "SELECT name FROM item WHERE price > 2"]
    questions = tmp_path / "dev.json"
    questions.write_text(
        json.dumps(
            [
                {"db_id": "shop", "question": q, "query": sql, "hardness": h}
                for q, sql, h in zip(
                    ["How many items?", "Which items cost more than 2?"], gold, ["easy", "medium"]
                )
            ]
        )
    )
    runs = []
    for name, preds in (
        ("predictions-from-the-first-model-with-a-long-name.sql", gold),
        ("predictions-from-the-second-model-with-an-even-longer-name.sql", [gold[0], "SELECT 1"]),
    ):
        pred_file = tmp_path / name
        pred_file.write_text("\n".join(preds) + "\n")
        out = tmp_path / (name + ".jsonl")
        proc = slmsql(
            "eval", "-q", str(questions), "--db-dir", str(db_dir), "--predictions", str(pred_file),
            "--out", str(out), env=terminal(80),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        check_layout(proc.stdout, 80, [["hardness", "questions", "correct", "EX %"]])
        runs.append(out)
    proc = slmsql("eval", "compare", str(runs[0]), str(runs[1]), env=terminal(80))
    assert proc.returncode == 0, proc.stderr
    tables = header_cells(proc.stdout)
    assert len(tables) == 1 and tables[0][0] == ""  # the row labels' column has no header by design
    heads = tables[0][1:]
    assert heads[0].replace(" ", "").startswith("a:predictions-from-the-first")
    assert heads[1].replace(" ", "").endswith("even-longer-name.sql")
    assert "…" not in proc.stdout and all(len(line) <= 80 for line in proc.stdout.splitlines())


# ---- with the real model: bench and ask -v ----------------------------------------------------------


def test_bench_and_candidates_read_well(slmsql: Slmsql, gemma_gguf: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = slmsql(
        "bench", "--db", str(DEMO), "-m", str(gemma_gguf), "-n", "1", "--max-tokens", "4",
        env=terminal(80), cache=cache,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table_text = proc.stdout.rsplit("\n", 2)[0]  # the last line is the JSON summary
    check_layout(
        table_text,
        80,
        [["N", "prompt tok/s", "generated tok/s", "s / question", "overhead", "peak RSS MB"]],
    )
    proc = slmsql(
        "ask", "--db", str(DEMO), "-m", str(gemma_gguf), "-n", "2", "--max-tokens", "16", "--no-merge", "-v",
        "How many books are there?", env=terminal(80), cache=cache,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    # Prose lines (the SQL, the summary) are left to the terminal to wrap, so that they pipe whole.
    # -v's candidates are diagnostics: stderr, which is not a terminal here, read at COLUMNS
    rows = [line for line in proc.stderr.splitlines() if set(line) & set("│┃┏┡└")]
    assert rows and all(len(line) <= 80 for line in rows), [line for line in rows if len(line) > 80]
    assert header_cells(proc.stderr)[0] == ["#", "group", "SQL · why no vote · what it wrote"]
    assert "wrote: " in proc.stderr
