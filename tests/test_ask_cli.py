"""`slmsql ask` end to end through the real CLI, the real Gemma GGUF and the demo database."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import REPO, Slmsql
from typer.testing import CliRunner

from slmsql_cli.cli import app

DEMO = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_ask_json_on_demo_db(slmsql: Slmsql, gemma_gguf: Path, tmp_path: Path) -> None:
    db = tmp_path / "bookshop.sqlite"
    db.write_bytes(DEMO.read_bytes())
    before = sha256(db)
    proc = slmsql(
        "ask",
        "--db",
        str(db),
        "--model",
        str(gemma_gguf),
        "-n",
        "3",
        "--max-tokens",
        "48",
        "--json",
        "How many books are there?",
        env={"SLMSQL_CACHE_DIR": str(tmp_path / "cache")},
    )
    # Gemma 270M is a base model: it may or may not write SQL. Exit 0 with an answer, 1 without one.
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["question"] == "How many books are there?"
    assert len(doc["candidates"]) == 3
    assert {"sql", "columns", "rows", "candidates", "timings", "votes", "merged"} <= doc.keys()
    assert doc["generation"]["generated_tokens"] > 0
    assert doc["schema_pruned"] is None  # the demo schema fits: the model sees all of it
    assert all(c["text"] for c in doc["candidates"])
    assert (doc["sql"] is not None) == (proc.returncode == 0 or any(c["sql"] for c in doc["candidates"]))
    assert sha256(db) == before
    assert "Traceback" not in proc.stderr


def test_ask_human_output_and_verbose(slmsql: Slmsql, gemma_gguf: Path, tmp_path: Path) -> None:
    proc = slmsql(
        "ask",
        "--db",
        str(DEMO),
        "--model",
        str(gemma_gguf),
        "-n",
        "2",
        "--max-tokens",
        "24",
        "-v",
        "--no-merge",
        "Wie viele Bücher gibt es?",
        env={"SLMSQL_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "candidates" in proc.stderr and "wrote: " in proc.stderr  # the -v table: a diagnostic
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--db", "missing.sqlite", "q?"], "database not found"),
        (["--db", "README.md", "q?"], "not a SQLite database"),
        (["--db", str(DEMO), "   "], "question is empty"),
        (["--db", str(DEMO), "--model", "missing.gguf", "q?"], "model file not found"),
        (["--db", str(DEMO), "--model", "README.md", "q?"], "not a GGUF"),
        (["--db", str(DEMO), "--model", "not a model", "q?"], "unknown model"),
    ],
)
def test_ask_bad_input_is_one_clear_line(
    args: list[str], message: str, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # the relative paths above
    result = CliRunner().invoke(app, ["ask", *args])
    assert result.exit_code == 2
    # off a terminal, progress lines ("loading the model…") may come first: one error line, then its hint
    lines = result.stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == 1 and message in lines[errors[0]], result.stderr
    assert lines[errors[0] + 1].startswith("hint:"), result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_ask_offline_without_cached_model_says_what_to_do(slmsql: Slmsql, tmp_path: Path) -> None:
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "SLMSQL_CACHE_DIR": str(tmp_path / "cache"),
    }
    proc = slmsql("ask", "--db", str(DEMO), "How many books are there?", env=env)
    assert proc.returncode == 2
    assert "slm-sql-0.5b and csc-merge-0.5b are not downloaded yet" in proc.stderr
    # the hint: the exact download commands (generation and merge model) with sizes, a local GGUF
    # (tests/test_first_run.py: doctor and models say the same)
    hint = " ".join(proc.stderr.split("hint:", 1)[1].split())
    assert "hf download cycloneboy/SLM-SQL-0.5B # 1.3 GB" in hint
    assert "hf download cycloneboy/CscSQL-Merge-Qwen2.5-Coder-0.5B-Instruct # 1.3 GB" in hint
    assert "--model path/to/model.gguf" in hint and "huggingface-cli" not in hint
    assert "Traceback" not in proc.stderr


def test_empty_database_is_rejected(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "empty.sqlite"
    sqlite3.connect(db).execute("PRAGMA user_version = 1").connection.close()
    result = CliRunner().invoke(app, ["ask", "--db", str(db), "How many rows?"])
    assert result.exit_code == 2 and "no tables" in result.stderr
