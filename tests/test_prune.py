"""Schemas larger than the context are pruned to the question's tables (and only then)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from slmsql_cli.database import open_database
from slmsql_cli.prune import keep_tables, rank_tables


@pytest.fixture()
def wide_db(tmp_path: Path) -> Path:
    path = tmp_path / "wide.sqlite"
    conn = sqlite3.connect(path)
    for t in range(60):
        cols = ", ".join(f"reading_{j} text" for j in range(12))
        conn.execute(f"CREATE TABLE sensor_{t} (id integer PRIMARY KEY, {cols})")
    conn.execute("CREATE TABLE artists (artist_id integer PRIMARY KEY, name text)")
    conn.execute(
        "CREATE TABLE albums (album_id integer PRIMARY KEY, title text, artist_id integer REFERENCES artists(artist_id))"
    )
    conn.execute("INSERT INTO artists VALUES (1, 'AC/DC')")
    conn.execute("INSERT INTO albums VALUES (1, 'Back in Black', 1)")
    conn.commit()
    conn.close()
    return path


def test_question_tables_rank_first_and_keep_their_references(wide_db: Path, isolated_cache: Path) -> None:
    db = open_database(wide_db)
    question = "How many albums does AC/DC have?"
    ranked = rank_tables(db.schema, question, db.relevant_values(question))
    assert ranked[:2] == ["albums", "artists"]
    kept = keep_tables(db.schema, ["albums"])  # artists comes along: albums references it
    assert [t.name for t in kept.tables] == ["artists", "albums"]


def test_ask_prunes_only_when_the_schema_does_not_fit(
    wide_db: Path, gemma_gguf: Path, tmp_path: Path
) -> None:
    base = [
        sys.executable,
        "-m",
        "slmsql_cli",
        "ask",
        "--db",
        str(wide_db),
        "-m",
        str(gemma_gguf),
        "-n",
        "1",
        "--max-tokens",
        "16",
        "--json",
        "How many albums does AC/DC have?",
    ]
    env = {"SLMSQL_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    small = subprocess.run(base + ["--context", "1024"], capture_output=True, text=True, env=env, timeout=600)
    doc = json.loads(small.stdout.strip().splitlines()[-1])
    assert doc["schema_pruned"]["total_tables"] == 62
    assert 2 <= doc["schema_pruned"]["kept_tables"] < 62
    assert doc["generation"]["prompt_tokens"] + 16 <= 1024
