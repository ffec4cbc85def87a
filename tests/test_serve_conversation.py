"""Follow-up questions through `serve` (issue 29): HTTP /v1/ask and the MCP `ask` tool take the
earlier turns or a conversation id, bounded and checked; every answer names its conversation and
says which context the model read. The app and the MCP server run in process with the scripted
engine, which records the prompts it is given (test_serve_http.py's setup)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="needs the [serve] extra")

from starlette.testclient import TestClient
from test_serve_http import JSON, client_for, make_service, script

from slmsql_cli.conversation import MAX_TURNS
from slmsql_cli.serve.service import MAX_QUESTION_CHARS, MAX_TURN_SQL_CHARS, Conversations, Service

COUNT = "SELECT count(*) FROM pets"
CATS = "SELECT count(*) FROM pets WHERE kind = 'cat'"
NAMES = "SELECT name FROM pets WHERE kind = 'cat'"


def said(sql: str) -> str:
    return f"<think>\nWrite it.\n</think>\n<answer>\n{sql}\n</answer>"


@pytest.fixture()
def service(pets_db: Path, scripted_engine) -> Iterator[Service]:
    scripted_engine([])
    svc = make_service(pets_db)
    yield svc
    svc.close()


def asked(service: Service) -> str:
    """The question field of the last prompt the model was given."""
    prompt = service.pipeline.engine.prompts[-1]  # type: ignore[attr-defined]
    return prompt.split("Question:\n", 1)[1].split("\n\nInstructions:", 1)[0]


def post(client: TestClient, body: dict[str, Any]) -> Any:
    return client.post("/v1/ask", content=json.dumps(body), headers=JSON)


def test_http_follows_turns_or_a_conversation_id(service: Service) -> None:
    client = client_for(service)
    script(service, *[said(COUNT)] * 2)
    first = post(client, {"question": "How many pets?"}).json()
    assert first["context"] == {"rendering": "questions", "turns": [], "dropped": 0}
    assert asked(service) == "How many pets?" and first["conversation"]

    # by id: the server has the turns
    script(service, *[said(CATS)] * 2)
    second = post(client, {"question": "and cats?", "conversation": first["conversation"]}).json()
    assert second["rows"] == [[1]] and second["conversation"] == first["conversation"]
    assert second["context"]["turns"] == [{"question": "How many pets?", "sql": COUNT}]
    assert asked(service) == "How many pets? and cats?"
    script(service, *[said(NAMES)] * 2)
    third = post(client, {"question": "their names?", "conversation": first["conversation"]}).json()
    assert [t["question"] for t in third["context"]["turns"]] == ["How many pets?", "and cats?"]

    # by turns: the client has them (a new conversation starts after them)
    script(service, *[said(NAMES)] * 2)
    turns = [{"question": "How many cats?", "sql": CATS}, {"question": "and dogs?", "sql": None}]
    fourth = post(client, {"question": "names of the cats?", "turns": turns}).json()
    assert fourth["context"]["turns"] == turns and fourth["conversation"] != first["conversation"]
    assert asked(service) == "How many cats? and dogs? names of the cats?"


def test_the_stream_names_the_conversation_and_the_context(service: Service) -> None:
    client = client_for(service)
    script(service, *[said(COUNT)] * 2)
    body = {"question": "and cats?", "turns": [{"question": "How many pets?", "sql": COUNT}], "stream": True}
    with client.stream("POST", "/v1/ask", content=json.dumps(body), headers=JSON) as response:
        text = "".join(response.iter_text())
    answer = json.loads(text.split("event: answer", 1)[1].split("data: ", 1)[1].split("\n", 1)[0])
    assert answer["conversation"] and answer["context"]["turns"][0]["question"] == "How many pets?"


def test_bad_turns_and_conversations_are_refused_before_the_model(service: Service) -> None:
    client = client_for(service)
    q = {"question": "and cats?"}
    too_many = post(client, {**q, "turns": [{"question": f"q{i}"} for i in range(MAX_TURNS + 1)]})
    assert too_many.status_code == 413 and f"at most {MAX_TURNS}" in too_many.json()["error"]
    long_q = post(client, {**q, "turns": [{"question": "x" * (MAX_QUESTION_CHARS + 1)}]})
    assert long_q.status_code == 413 and "turn 1" in long_q.json()["error"]
    long_sql = post(client, {**q, "turns": [{"question": "q", "sql": "S" * (MAX_TURN_SQL_CHARS + 1)}]})
    assert long_sql.status_code == 413 and "SQL of turn 1" in long_sql.json()["error"]
    empty = post(client, {**q, "turns": [{"question": "  "}]})
    assert empty.status_code == 400 and empty.json()["error"].startswith("turn 1:")
    surrogate = client.post(
        "/v1/ask", content=b'{"question": "q", "turns": [{"question": "\\ud800"}]}', headers=JSON
    )
    assert surrogate.status_code == 400, surrogate.text
    unknown = post(client, {**q, "conversation": "made-up"})
    assert unknown.status_code == 404 and "no such conversation" in unknown.json()["error"]
    script(service, *[said(COUNT)] * 2)
    cid = post(client, {"question": "How many pets?"}).json()["conversation"]
    both = post(client, {**q, "conversation": cid, "turns": [{"question": "x"}]})
    assert both.status_code == 400 and "not both" in both.json()["error"]
    wrong = post(client, {**q, "conversation": cid, "database": "nope"})
    assert wrong.status_code == 404  # the database first
    assert len(service.pipeline.engine.prompts) == 1  # type: ignore[attr-defined]


def test_conversations_are_bounded_least_recently_used_first() -> None:
    kept = Conversations(capacity=2)
    a, b = kept.start("pets"), kept.start("pets")
    kept.turns(a, "pets")  # a used last
    c = kept.start("pets")
    assert kept.turns(a, "pets") == [] and kept.turns(c, "pets") == []
    with pytest.raises(Exception, match="no such conversation"):
        kept.turns(b, "pets")
    from slmsql_cli.conversation import Turn

    for i in range(MAX_TURNS + 3):
        kept.add(a, Turn(f"q{i}"))
    assert [t.question for t in kept.turns(a, "pets")] == [f"q{i}" for i in range(3, MAX_TURNS + 3)]
    with pytest.raises(Exception, match="about the database pets"):
        kept.turns(a, "other")


def test_mcp_ask_takes_turns_and_a_conversation(service: Service) -> None:
    from mcp import Client

    from slmsql_cli.serve.mcp_server import build
    from slmsql_cli.serve.requestlog import RequestLog

    async def mcp_ask(arguments: dict) -> Any:
        async with Client(build(service, RequestLog())) as client:
            return await client.call_tool("ask", arguments)

    script(service, *[said(CATS)] * 2 + [said(NAMES)] * 2)
    first = asyncio.run(
        mcp_ask({"question": "and cats?", "turns": [{"question": "How many pets?", "sql": COUNT}]})
    )
    assert not first.is_error, first.content
    doc = first.structured_content
    assert doc["context"]["turns"] == [{"question": "How many pets?", "sql": COUNT}]
    assert asked(service) == "How many pets? and cats?"
    second = asyncio.run(mcp_ask({"question": "their names?", "conversation": doc["conversation"]}))
    assert not second.is_error, second.content
    assert asked(service) == "How many pets? and cats? their names?"
    unknown = asyncio.run(mcp_ask({"question": "q", "conversation": "nope"}))
    assert unknown.is_error and "no such conversation" in unknown.content[0].text
