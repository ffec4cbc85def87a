"""The pipeline's steps with the real Gemma engine: chat text, generation, the corrective merge."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmsql_cli.database import open_database
from slmsql_cli.engine import Engine
from slmsql_cli.merge import merge_message
from slmsql_cli.pipeline import AskConfig, Pipeline, chat_text
from slmsql_cli.prompt_builder import matched_values, schema_block
from slmsql_cli.prompts import SYSTEM_PROMPT
from slmsql_cli.vote import Candidate, vote

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"


@pytest.fixture(scope="module")
def pipeline(gemma_gguf: Path) -> Pipeline:
    engine = Engine(gemma_gguf, threads=2)
    p = Pipeline(engine, engine, AskConfig(n=2, merge_n=2, max_tokens=24))
    yield p
    p.close()


def test_chat_text_wraps_system_and_user_in_the_models_turns(pipeline: Pipeline) -> None:
    text = chat_text(pipeline.engine, "USER MESSAGE")
    # The Gemma GGUF has no template of its own, so slmsql's Gemma turn template is used.
    assert text.startswith("<bos><start_of_turn>user\n")
    assert SYSTEM_PROMPT in text and "USER MESSAGE" in text
    assert text.endswith("<start_of_turn>model\n")


def test_merge_sees_both_drafts_and_revises(pipeline: Pipeline, isolated_cache: Path) -> None:
    db = open_database(DEMO)
    question = "How many books are there?"
    drafts = [
        "SELECT COUNT(*) FROM books",
        "SELECT COUNT(DISTINCT author_id) FROM books",
        "SELECT COUNT(*) FROM books",
    ]
    candidates = [
        Candidate(text=f"<answer>{s}</answer>", sql=s, result=db.run(s, timeout=10)) for s in drafts
    ]
    groups = vote(candidates)
    assert [g.votes for g in groups] == [2, 1]

    message = merge_message(schema_block(db, matched_values(db, question)), db.schema, question, "", groups)
    assert "1. SELECT COUNT(*) FROM books\n【Execution result】\n[(" in message
    assert "2. SELECT COUNT(DISTINCT author_id) FROM books\n【Execution result】" in message
    assert (
        "CREATE TABLE books" in message and "CREATE TABLE customers" not in message
    )  # pruned to the drafts' tables

    revised = pipeline.revise(db, question, "", groups)
    assert len(revised.candidates) == 2 and revised.stats.generated_tokens > 0
    for c in revised.candidates:  # each revision was run on the database, and its result kept
        if c.sql is not None:
            again = db.run(c.sql, timeout=9.5)  # another timeout: not the executor's cached result
            assert c.result is not None and (c.result.columns, c.result.rows, c.result.error) == (
                again.columns,
                again.rows,
                again.error,
            ), c


def test_generate_samples_n_candidates(pipeline: Pipeline, isolated_cache: Path) -> None:
    db = open_database(DEMO)
    generated = pipeline.generate(db, "How many authors are there?")
    assert len(generated.candidates) == 2 and generated.pruned_schema is None
    assert sum(g.votes for g in generated.groups) <= 2
    assert generated.stats.prompt_tokens > 1000
