"""Schemas larger than the prompt budget are pruned to the question's tables (and only then)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import Slmsql
from typer.testing import CliRunner

from slmsql_cli.cli import app
from slmsql_cli.database import open_database
from slmsql_cli.engine import Engine
from slmsql_cli.pipeline import AskConfig, Pipeline, chat_text
from slmsql_cli.prompt_builder import generation_message
from slmsql_cli.prune import choose_tables, keep_tables, rank_tables

QUESTION = "How many albums does AC/DC have?"


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
    # reviews references albums, but the question does not name it: it is left out
    conn.execute(
        "CREATE TABLE reviews (review_id integer PRIMARY KEY, stars integer, album_id integer REFERENCES albums(album_id))"
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
    slmsql: Slmsql, wide_db: Path, gemma_gguf: Path, tmp_path: Path
) -> None:
    small = slmsql(
        "ask", "--db", wide_db, "-m", gemma_gguf, "-n", "1", "--max-tokens", "16", "--json",
        "How many albums does AC/DC have?", "--context", "1024",
        cache=tmp_path / "cache", env={"PATH": "/usr/bin:/bin"}, inherit=False, timeout=600,
    )  # fmt: skip
    doc = json.loads(small.stdout.strip().splitlines()[-1])
    assert doc["schema_pruned"]["total_tables"] == 63
    assert 2 <= doc["schema_pruned"]["kept_tables"] < 63
    assert doc["generation"]["prompt_tokens"] + 16 <= 1024


def said(sql: str) -> str:
    return f"<think>\nCount.\n</think>\n<answer>\n{sql}\n</answer>"


def test_the_question_tables_come_with_their_references_and_nothing_else(
    wide_db: Path, isolated_cache: Path
) -> None:
    db = open_database(wide_db)
    costed: list[str] = []

    def cost(table: str) -> int:
        costed.append(table)
        return 100

    kept = choose_tables(db.schema, QUESTION, db.relevant_values(QUESTION), cost, room=100_000)
    # Room for all 63 tables, yet only the two the question names (albums brings artists along).
    assert [t.name for t in keep_tables(db.schema, kept).tables] == ["artists", "albums"]
    assert sorted(costed) == ["albums", "artists"]  # each table measured once, no other
    # A room that holds one table but not albums with its artist stops at the first that overflows.
    assert choose_tables(db.schema, "How many albums are there?", {}, lambda t: 100, room=150) == []


def test_tracks_bring_their_album_and_the_album_its_artist(tmp_path: Path, isolated_cache: Path) -> None:
    path = tmp_path / "music.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE artist (artist_id integer PRIMARY KEY, name text)")
    conn.execute(
        "CREATE TABLE album (album_id integer PRIMARY KEY, artist_id integer REFERENCES artist(artist_id))"
    )
    conn.execute(
        "CREATE TABLE track (track_id integer PRIMARY KEY, album_id integer REFERENCES album(album_id))"
    )
    conn.execute("CREATE TABLE genre (genre_id integer PRIMARY KEY, label text)")
    conn.commit()
    conn.close()
    db = open_database(path)
    kept = choose_tables(db.schema, "How many tracks has each album?", {}, lambda t: 10, room=1000)
    assert [t.name for t in keep_tables(db.schema, kept).tables] == ["artist", "album", "track"]


def test_a_question_that_names_no_table_fills_the_budget_in_schema_order(
    wide_db: Path, isolated_cache: Path
) -> None:
    db = open_database(wide_db)
    kept = choose_tables(db.schema, "Combien y a-t-il de disques ?", {}, lambda t: 100, room=350)
    assert kept == ["sensor_0", "sensor_1", "sensor_2"]


@pytest.mark.parametrize("budget", [2500, 4000, 6144])
def test_the_prompt_stays_within_the_budget_and_tokenizes_no_whole_schema(
    budget: int, wide_db: Path, isolated_cache: Path, scripted_engine
) -> None:
    engine = scripted_engine([])  # one token per byte
    db = open_database(wide_db)
    full = len(engine.tokenize(chat_text(engine, generation_message(db, QUESTION).text)))
    assert full > 20_000  # the whole schema is far over every budget here
    tokenized: list[int] = []
    real = engine.tokenize
    engine.tokenize = lambda text: tokenized.append(len(text.encode())) or real(text)
    built = Pipeline(engine, None, AskConfig(prompt_budget=budget)).generation_message(db, QUESTION)
    message, schema = built.text, built.pruned
    assert built.tokens == len(real(chat_text(engine, message)))
    assert len(real(chat_text(engine, message))) <= budget
    assert schema is not None and {"albums", "artists"} <= {t.name for t in schema.tables}
    assert "CREATE TABLE albums" in message and "CREATE TABLE reviews" not in message
    assert max(tokenized) <= budget  # no text longer than the budget was ever tokenized
    assert sum(tokenized) < 3 * budget + full // 20  # each block counted once, a few prompts


def test_a_schema_within_the_budget_is_shown_whole(
    wide_db: Path, isolated_cache: Path, scripted_engine
) -> None:
    engine = scripted_engine([])
    db = open_database(wide_db)
    built = Pipeline(engine, None, AskConfig(prompt_budget=30_000)).generation_message(db, QUESTION)
    assert built.pruned is None and built.text == generation_message(db, QUESTION).text


def test_prompt_without_a_model_shows_the_whole_schema_and_says_it_may_not_fit(
    wide_db: Path, isolated_cache: Path
) -> None:
    # No tokenizer, no count: stdout is the whole schema as before, and stderr says that `ask`
    # may see another prompt (pass --model to see it); a schema surely within the budget gets no word.
    result = CliRunner().invoke(app, ["prompt", "--db", str(wide_db), QUESTION])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("CREATE TABLE") == 63
    assert "may be over the 6144-token prompt budget" in result.stderr and "--model" in result.stderr
    roomy = CliRunner().invoke(app, ["prompt", "--db", str(wide_db), "--prompt-budget", "100000", QUESTION])
    assert roomy.exit_code == 0 and roomy.stdout == result.stdout and roomy.stderr == ""


def test_ask_json_reports_the_tables_kept(wide_db: Path, isolated_cache: Path, scripted_engine) -> None:
    engine = scripted_engine(
        [said("SELECT count(*) FROM albums JOIN artists USING (artist_id) WHERE name = 'AC/DC'")]
    )
    args = ["ask", "--db", str(wide_db), "-m", "scripted", "-n", "1", "--no-merge", "--json"]
    result = CliRunner().invoke(app, [*args, "--prompt-budget", "2000", QUESTION])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema_pruned"] == {"kept_tables": 2, "total_tables": 63}
    assert doc["rows"] == [[1]] and doc["timings"]["prompt"] >= 0
    assert "CREATE TABLE artists" in engine.prompts[0] and "sensor_" not in engine.prompts[0]
    assert doc["generation"]["prompt_tokens"] <= 2000


def test_a_question_longer_than_the_budget_is_blamed_on_it(
    wide_db: Path, isolated_cache: Path, scripted_engine
) -> None:
    scripted_engine([])
    args = ["ask", "--db", str(wide_db), "-m", "scripted", "-n", "1", "--no-merge"]
    result = CliRunner().invoke(app, [*args, "--prompt-budget", "256", QUESTION])
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert "the question is too long for the 256-token prompt budget" in result.stderr
    assert "--prompt-budget" in result.stderr


def test_prompt_with_a_real_model_shows_the_question_tables_within_the_budget(
    wide_db: Path, gemma_gguf: Path, isolated_cache: Path
) -> None:
    result = CliRunner().invoke(
        app, ["prompt", "--db", str(wide_db), "-m", str(gemma_gguf), "--prompt-budget", "700", QUESTION]
    )
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "CREATE TABLE albums" in text and "CREATE TABLE artists" in text and "'AC/DC'" in text
    assert "sensor_" not in text and "CREATE TABLE reviews" not in text
    assert "the schema was cut to" in result.stderr and "of 63 tables" in result.stderr  # and says so
    with Engine(gemma_gguf) as engine:
        assert len(engine.tokenize(chat_text(engine, text))) <= 700
    # Without --model the prompt command prints the whole schema, as before.
    whole = CliRunner().invoke(app, ["prompt", "--db", str(wide_db), QUESTION])
    assert whole.stdout.count("CREATE TABLE") == 63
