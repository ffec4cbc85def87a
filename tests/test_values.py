"""Question-matched value retrieval: the FTS5 index, its caching, and the reference's 85% rule."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slmsql_cli.database import open_database
from slmsql_cli.prompt_builder import generation_message, matched_values, schema_block
from slmsql_cli.targets.sqlite_catalog import schema_from_sqlite
from slmsql_cli.targets.sqlite_target import SQLiteTarget
from slmsql_cli.values import ValueIndex, fts_query, ngram_queries, substring_match

DEMO_DB = Path(__file__).resolve().parents[1] / "slmsql_cli" / "data" / "bookshop.sqlite"


def test_substring_match() -> None:
    assert substring_match("AC/DC", "How many albums does ac/dc have?") == 1.0
    assert substring_match("Aerosmiths", "songs by Aerosmith") == 0.9
    assert substring_match("xyz", "abc") == 0.0


def test_ngram_queries_keep_words_with_slashes_and_end_with_the_question() -> None:
    q = "How many albums does AC/DC have?"
    queries = ngram_queries(q)
    assert "AC/DC" in queries and "does AC/DC have" in queries
    assert queries[-1] == q and len(queries) == len(set(queries))


def test_fts_query_quotes_every_word() -> None:
    assert fts_query('Say "NOT" AND near* "x"') == '"say" OR "near" OR "x"'
    assert fts_query("?!") is None


def test_chinook_finds_acdc_first(data_dir: Path, isolated_cache: Path) -> None:
    db = open_database(data_dir / "chinook/Chinook_Sqlite.sqlite")
    question = "How many albums does AC/DC have?"
    assert "AC/DC" in db.relevant_values(question)[("Artist", "Name")]
    assert "    Name text, -- example: ['AC/DC', 'Accept']" in schema_block(db, matched_values(db, question))

    # A value that is not among the sampled ones is put in front of them.
    ddl = schema_block(db, matched_values(db, "How many albums does Aerosmith have?"))
    assert "    Name text, -- example: ['Aerosmith', 'AC/DC', 'Accept']" in ddl
    assert "'Aerosmith'" not in schema_block(db, {})  # --no-values: the sampled values only


def test_bird_evidence_is_searched_too(data_dir: Path, isolated_cache: Path) -> None:
    db = open_database(data_dir / "bird_dev/dev_databases/student_club/student_club.sqlite")
    found = db.relevant_values("How many people attended it?", evidence="'March Meeting' is an event_name")
    assert found[("event", "event_name")] == ["March Meeting"]


def test_index_is_built_once_and_rebuilt_when_the_file_changes(
    data_dir: Path, isolated_cache: Path, tmp_path: Path
) -> None:
    db = tmp_path / "music.sqlite"
    shutil.copy(data_dir / "chinook/Chinook_Sqlite.sqlite", db)
    schema = schema_from_sqlite(db)

    builds = ValueIndex.builds
    first = SQLiteTarget(db).value_index(schema, None)
    assert first.built and ValueIndex.builds == builds + 1
    stamp = first.path.stat().st_mtime_ns
    again = SQLiteTarget(db).value_index(schema, None)
    assert not again.built and again.path == first.path and again.path.stat().st_mtime_ns == stamp
    assert ValueIndex.builds == builds + 1
    assert again.retrieve("Songs by Zappa Quintet?") == {}
    first.close()
    again.close()

    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO Artist (Name) VALUES ('Zappa Quintet')")
    conn.commit()
    conn.close()

    rebuilt = SQLiteTarget(db).value_index(schema, None)
    assert rebuilt.built and rebuilt.path != first.path
    assert not first.path.exists()  # the old version's folder is gone
    assert rebuilt.retrieve("Songs by Zappa Quintet?") == {("Artist", "Name"): ["Zappa Quintet"]}
    rebuilt.close()


def test_open_database_caches_schema_and_samples_on_disk(
    isolated_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import slmsql_cli.database as database

    db = tmp_path / "shop.sqlite"
    shutil.copy(DEMO_DB, db)
    first = open_database(db)
    assert open_database(db) is first  # memoized in-process
    cached = list(isolated_cache.rglob("schema-*.json"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns

    database._MEMO.clear()

    def no_sampling(*_args: object) -> None:
        raise AssertionError("schema and samples should come from the cache")

    monkeypatch.setattr(SQLiteTarget, "samples", no_sampling)
    monkeypatch.setattr(SQLiteTarget, "schema", no_sampling)
    second = open_database(db)
    assert second is not first and second.schema == first.schema and second.samples == first.samples
    assert cached[0].stat().st_mtime_ns == stamp
    assert (
        generation_message(second, "How many books?").text
        == generation_message(first, "How many books?").text
    )


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValueIndex]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLMSQL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        index = SQLiteTarget(DEMO_DB).value_index(schema_from_sqlite(DEMO_DB), None)
    yield index
    index.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80))
def test_any_question_is_safe(demo_index: ValueIndex, question: str) -> None:
    found = demo_index.retrieve(question)
    assert sum(len(v) for v in found.values()) <= 20
    for values in found.values():
        assert all(substring_match(v, question) > 0.85 for v in values)


@pytest.mark.parametrize(
    "question",
    [
        'Who wrote "Either/Or"?',
        "Bücher von Flann O'Brien?",
        "哪些书 OR NOT AND NEAR(",
        "'; DROP TABLE books; --",
        "*",
        "",
    ],
)
def test_awkward_questions(demo_index: ValueIndex, question: str) -> None:
    found = demo_index.retrieve(question)  # FTS5 syntax in the text is searched for, never run
    for values in found.values():
        assert all(substring_match(v, question) > 0.85 for v in values), found
    if not question.strip("*"):
        assert found == {}
    assert demo_index.retrieve("Which books did Flann O'Brien write?")[("authors", "name")] == [
        "Flann O'Brien"
    ]


def test_apostrophes_and_slashes_are_found(demo_index: ValueIndex) -> None:
    assert demo_index.retrieve('Who wrote "Either/Or"?')[("books", "title")] == ["Either/Or"]
    found = demo_index.retrieve("Which books did Flann O'Brien write?")
    assert found[("authors", "name")] == ["Flann O'Brien"]
