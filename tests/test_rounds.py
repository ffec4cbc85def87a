"""Typed sampling rounds, and a question's database values looked up once however many prompts it needs.

Pipeline logic, so the scripted engine (one token per byte) drives it, not a model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from slmsql_cli.answer import SamplingRound
from slmsql_cli.database import Database, open_database
from slmsql_cli.pipeline import AskConfig, Pipeline
from slmsql_cli.render import answer_dict
from slmsql_cli.scripted import ScriptedEngine
from slmsql_cli.vote import Candidate, vote

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"
QUESTION = "How many books did each author write?"


def said(sql: str) -> str:
    return f"<think>\nCount them.\n</think>\n<answer>\n{sql}\n</answer>"


@pytest.fixture()
def small_context_engine() -> ScriptedEngine:
    # One token per byte: the bookshop prompt (about 4,800) plus 24 new ones does not fit in
    # 3,224, so the pipeline prunes the schema, trying several table subsets for the same question.
    engine = ScriptedEngine([said("SELECT count(*) FROM books")] * 8)
    engine.n_ctx_limit = 3200 + 24
    return engine


def _count_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = Database.relevant_values

    def counted(self: Database, question: str, evidence: str = "") -> dict:
        calls.append(question)
        return real(self, question, evidence)

    monkeypatch.setattr(Database, "relevant_values", counted)
    return calls


def test_values_are_looked_up_once_per_question(
    small_context_engine: ScriptedEngine, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = open_database(DEMO)
    calls = _count_lookups(monkeypatch)
    pipeline = Pipeline(small_context_engine, small_context_engine, AskConfig(n=2, merge_n=2, max_tokens=24))
    answer = pipeline.ask(db, QUESTION)
    assert answer.schema_tables is not None and answer.schema_tables[0] < answer.schema_tables[1]
    assert calls == [QUESTION]

    # The merge prompt of the same question reuses them as well.
    drafts = ["SELECT COUNT(*) FROM books", "SELECT COUNT(*) FROM authors"]
    groups = vote([Candidate(s, s, db.run(s, timeout=10)) for s in drafts])
    calls.clear()
    matched = pipeline.matched_values(db, QUESTION)
    revised = pipeline.revise(db, QUESTION, "", groups, matched_values=matched)
    assert calls == [QUESTION] and isinstance(revised, SamplingRound)


def test_no_values_means_no_lookup(
    small_context_engine: ScriptedEngine, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = open_database(DEMO)
    calls = _count_lookups(monkeypatch)
    config = AskConfig(n=1, max_tokens=24, merge=False, use_values=False)
    Pipeline(small_context_engine, None, config).ask(db, QUESTION)
    assert calls == []


def test_an_answer_holds_one_round_per_step(isolated_cache: Path) -> None:
    db = open_database(DEMO)
    engine = ScriptedEngine(
        ["I cannot tell.", said("SELECT count(*) FROM books"), said("SELECT count(*) FROM books")]
    )
    answer = Pipeline(engine, None, AskConfig(n=3, max_tokens=24, merge=False)).ask(db, QUESTION)
    generated = answer.generation
    assert isinstance(generated, SamplingRound) and answer.revision is None and not answer.merged
    assert len(generated.candidates) == 3 and answer.final_round is generated
    assert generated.winner is (generated.groups[0] if generated.groups else None)
    assert answer.agreement == (generated.winner.votes if generated.winner else 0, 3)
    doc = answer_dict(answer)  # ask --json keeps its shape
    assert len(doc["candidates"]) == 3 and doc["merge_candidates"] == []
    assert doc["generation"] == generated.stats.as_dict() and "merge_generation" not in doc
    for c, record in zip(generated.candidates, doc["candidates"]):
        assert record["sql"] == c.sql and record["text"] == c.text
        assert (record["error"] == "no SQL") == (c.sql is None)
