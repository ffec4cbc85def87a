"""`slmsql serve --http`'s app in process, with a scripted engine: routes, JSON shapes, bad input, auth.

Everything but the model is real: the FastAPI app and its middleware, the service's queue and
worker thread, the database registry, the prompt builder, the executor and the vote. The real
server process with the real model is tested in test_serve_process.py.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the [serve] extra")

from starlette.testclient import TestClient
from typer.testing import CliRunner

from slmsql_cli.cli import app as cli_app
from slmsql_cli.pipeline import AskConfig, Pipeline
from slmsql_cli.serve.http import STATIC_DIR, create_app
from slmsql_cli.serve.registry import Registry
from slmsql_cli.serve.service import MAX_QUESTION_CHARS, Cancelled, QueueFull, Service

COUNT = "SELECT count(*) FROM pets"
JSON = {"Content-Type": "application/json"}  # every POST must say so


def said(sql: str) -> str:
    return f"<think>\nCount them.\n</think>\n<answer>\n{sql}\n</answer>"


@pytest.fixture()
def pets(pets_db: Path) -> Path:
    return pets_db


def make_service(pets: Path, queue_size: int = 4, request_timeout: float = 300.0) -> Service:
    pipeline = Pipeline.load("scripted", config=AskConfig(n=2, merge=False))
    return Service(
        pipeline,
        Registry.open([f"pets={pets}"]),
        model_name="scripted",
        load_seconds=0.0,
        queue_size=queue_size,
        request_timeout=request_timeout,
    )


@pytest.fixture()
def service(pets: Path, scripted_engine) -> Iterator[Service]:
    scripted_engine([])  # `--model scripted`; each test adds its completions to the script
    svc = make_service(pets)
    yield svc
    svc.close()


def client_for(service: Service, token: str | None = None) -> TestClient:
    return TestClient(create_app(service, token=token), raise_server_exceptions=True, headers=JSON)


def script(service: Service, *texts: str) -> None:
    service.pipeline.engine.script.extend(texts)  # type: ignore[attr-defined]


def test_ask_answers_with_ask_json_document(service: Service, pets: Path, scripted_engine) -> None:
    script(service, said(COUNT), said(COUNT))
    response = client_for(service).post(
        "/v1/ask", content=json.dumps({"database": "pets", "question": "How many pets?"}), headers=JSON
    )
    assert response.status_code == 200, response.text
    served = response.json()
    assert served["sql"] == COUNT and served["rows"] == [[2]] and served["votes"] == 2

    scripted_engine([said(COUNT), said(COUNT)])  # the CLI's own engine, same completions
    result = CliRunner().invoke(
        cli_app,
        ["ask", "--db", str(pets), "--json", "-n", "2", "--no-merge", "-m", "scripted", "How many pets?"],
    )
    printed = json.loads(result.stdout)
    assert set(served) == set(printed) | {"conversation"}  # serve adds the id a follow-up names
    for key in ("question", "sql", "columns", "rows", "error", "votes", "candidates", "merged"):
        assert served[key] == printed[key], key
    assert set(served["generation"]) == set(printed["generation"])


def test_routes_list_describe_sql_health(service: Service) -> None:
    client = client_for(service)
    assert client.get("/v1/databases").json() == {"databases": [{"name": "pets", "tables": ["pets"]}]}
    schema = client.get("/v1/databases/pets/schema").json()
    assert (
        schema["name"] == "pets" and "CREATE TABLE pets" in schema["schema"] and "'Rex'" in schema["schema"]
    )
    rows = client.post(
        "/v1/sql", json={"database": "pets", "sql": "SELECT name FROM pets ORDER BY name"}
    ).json()
    assert rows["columns"] == ["name"] and rows["rows"] == [["Rex"], ["Tom"]] and rows["error"] is None
    health = client.get("/healthz").json()
    assert health["model"] == "scripted" and health["queue_length"] == 0 and health["databases"] == ["pets"]
    assert "model_load_seconds" in health
    assert client.get("/openapi.json").json()["paths"].keys() >= {"/v1/ask", "/v1/sql", "/healthz"}
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower()


def test_a_write_is_refused_and_the_file_unchanged(service: Service, pets: Path) -> None:
    before = pets.read_bytes()
    doc = client_for(service).post("/v1/sql", json={"database": "pets", "sql": "DELETE FROM pets"}).json()
    assert doc["error"] and "DELETE" in doc["error"] and doc["rows"] == []
    assert pets.read_bytes() == before


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("post", "/v1/ask", b'{"database": "pets", "question": ', 400),  # malformed JSON
        ("post", "/v1/ask", b'{"database": "pets", "question": "   "}', 400),  # empty question
        ("post", "/v1/ask", b'{"database": "nope", "question": "How many?"}', 404),
        ("post", "/v1/ask", b'{"database": "../pets.sqlite", "question": "How many?"}', 404),
        ("post", "/v1/ask", b'{"database": "pets"}', 422),  # no question
        ("post", "/v1/sql", b'{"database": "/etc/passwd", "sql": "SELECT 1"}', 404),
        ("get", "/v1/databases/nope/schema", None, 404),
        ("get", "/v1/databases/..%2F..%2Fetc%2Fpasswd/schema", None, 404),
    ],
)
def test_bad_requests(service: Service, method: str, path: str, body: bytes | None, status: int) -> None:
    client = client_for(service)
    response = client.post(path, content=body, headers=JSON) if method == "post" else client.get(path)
    assert response.status_code == status, response.text
    assert response.json()["error"]


@pytest.mark.parametrize("size", [MAX_QUESTION_CHARS + 1, 1024 * 1024])
def test_oversized_question_is_413(service: Service, size: int) -> None:
    body = json.dumps({"database": "pets", "question": "x" * size})
    response = client_for(service).post("/v1/ask", content=body)
    assert response.status_code == 413, response.text
    assert "limit" in response.json()["error"] or "at most" in response.json()["error"]


def test_token_is_required_on_every_api_route(service: Service) -> None:
    client = client_for(service, token="s3cret")
    routes = [("get", "/healthz"), ("get", "/v1/databases"), ("get", "/v1/databases/pets/schema")]
    for method, path in routes:
        assert getattr(client, method)(path).status_code == 401
        wrong = getattr(client, method)(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
        right = getattr(client, method)(path, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
    sql = {"database": "pets", "sql": "SELECT 1"}
    assert client.post("/v1/sql", json=sql).status_code == 401
    assert client.post("/v1/ask", json={"database": "pets", "question": "How many?"}).status_code == 401
    assert client.get("/openapi.json").status_code == 200  # the docs hold no data


def test_the_web_app_and_every_module_it_imports_are_served(service: Service) -> None:
    """The page's scripts are ES modules: each one app.js imports, and each they import, is served
    without a token, as JavaScript (a browser refuses to run a module of another type); and
    every script in static/ is reached that way."""
    client = client_for(service, token="s3cret")
    page = client.get("/")
    assert page.status_code == 200 and '<script type="module" src="app.js">' in page.text
    pending, served = ["app.js"], set()
    while pending:
        name = pending.pop()
        if name in served:
            continue
        response = client.get(f"/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith("text/javascript"), (name, response.headers)
        served.add(name)
        pending += re.findall(r'from "\./([\w-]+\.js)";', response.text)
    assert served == {path.name for path in STATIC_DIR.glob("*.js")}
    assert client.get("/no-such-module.js").status_code == 404


def test_streamed_ask_sends_rounds_then_the_answer(service: Service) -> None:
    script(service, said(COUNT), said("SELECT count(name) FROM pets"))
    body = {"database": "pets", "question": "How many pets?", "stream": True}
    with client_for(service).stream("POST", "/v1/ask", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events = [
        (block.split("\n")[0].removeprefix("event: "), json.loads(block.split("data: ", 1)[1]))
        for block in text.replace("\r\n", "\n").split("\n\n")
        if block.startswith("event:")
    ]
    names = [name for name, _ in events]
    assert names[0] == "queued" and names[-1] == "answer" and "round" in names
    round_doc = dict(events)["round"]
    assert round_doc["step"] == "generation" and len(round_doc["candidates"]) == 2
    assert events[-1][1]["rows"] == [[2]] and events[-1][1]["votes"] == 2


def test_queue_full_is_503_with_retry_after(pets: Path, scripted_engine) -> None:
    scripted_engine([])
    service = make_service(pets, queue_size=1)
    release = threading.Event()
    try:
        service.submit(lambda job: release.wait(30))  # runs, holding the model thread
        while service.health()["busy"] is False:
            release.wait(0.01)
        service.submit(lambda job: None)  # waits: the queue is now full
        response = client_for(service).post("/v1/ask", json={"database": "pets", "question": "How many?"})
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) >= 1
        with pytest.raises(QueueFull):
            service.submit(lambda job: None)
    finally:
        release.set()
        service.close()


def test_a_cancelled_job_stops_at_the_next_token(service: Service) -> None:
    script(service, said(COUNT), said(COUNT))
    job = service.ask("pets", "How many pets?")
    job.cancel("client disconnected")
    with pytest.raises(Cancelled, match="client disconnected"):
        job.future.result(timeout=30)
    service.pipeline.engine.script.clear()  # type: ignore[attr-defined]


def test_close_cancels_what_waits(pets: Path, scripted_engine) -> None:
    scripted_engine([])
    service = make_service(pets, queue_size=2)
    release = threading.Event()
    service.submit(lambda job: release.wait(30))
    waiting = service.submit(lambda job: "never")
    closer = threading.Thread(target=service.close)
    closer.start()
    release.set()
    closer.join(30)
    assert not closer.is_alive()
    with pytest.raises(Exception, match="shutting down"):
        waiting.future.result(timeout=1)


def test_a_body_without_length_is_cut_at_the_limit(service: Service) -> None:
    def chunks():
        yield b'{"database": "pets", "question": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}'

    response = client_for(service).post("/v1/ask", content=chunks())
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_past_the_request_timeout_is_504_and_the_job_is_dropped(pets: Path, scripted_engine) -> None:
    scripted_engine([])
    service = make_service(pets, request_timeout=0.5)
    release = threading.Event()
    try:
        service.submit(lambda job: release.wait(30))  # the model is busy for longer than 0.5 s
        response = client_for(service).post("/v1/ask", json={"database": "pets", "question": "How many?"})
        assert response.status_code == 504 and "0.5s" in response.json()["error"]
    finally:
        release.set()
        service.close()  # the timed-out ask never reaches the (scripted, empty) model


def test_serve_takes_every_model_and_sampling_option_of_ask() -> None:
    """`serve` answers as `ask` would: each ask option that sets the AskConfig is a serve option too."""
    import typer.main

    from slmsql_cli.cli import app
    from slmsql_cli.cli.options import option_fields
    from slmsql_cli.config import AskConfig

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    config_options = {f.name for f in option_fields(AskConfig)}
    ask = {p.name for p in commands["ask"].params} & config_options
    serve = {p.name for p in commands["serve"].params}
    assert ask and ask <= serve, sorted(ask - serve)


def test_a_job_cancelled_before_its_prompt_is_read_reads_none_of_it(pets: Path, gemma_gguf: Path) -> None:
    """A cancelled job stops between two chunks of its prompt (`on_prompt`), not at its first
    token: the real model is left holding none of the prompt, and answers the next question."""
    pipeline = Pipeline.load(str(gemma_gguf), config=AskConfig(n=1, merge=False, max_tokens=8))
    service = Service(pipeline, Registry.open([f"pets={pets}"]), model_name="gemma", load_seconds=0.0)
    jobs: list = []

    def events(event: dict) -> None:
        if event["event"] == "started":  # the job runs: cancel it before the model reads a token
            jobs[0].cancel("client disconnected")

    try:
        jobs.append(service.ask("pets", "How many pets are there?", events=events))
        with pytest.raises(Cancelled, match="client disconnected"):
            jobs[0].future.result(timeout=120)
        assert pipeline.engine._cached == []  # type: ignore[attr-defined]
        answer = service.ask("pets", "How many pets are there?").future.result(timeout=120)
        assert answer.generation.candidates and pipeline.engine._cached  # type: ignore[attr-defined]
    finally:
        service.close()
