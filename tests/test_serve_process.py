"""`slmsql serve` as a real process with the real Gemma model: HTTP on a free loopback port, and
an MCP client session from the official SDK over stdio.

Every test here loads the model (the `gemma_gguf` fixture marks them slow). The databases are
two tiny ones made by the test, so that the prompts are short; `--max-tokens 32` keeps answers
short. What the model writes is not asserted, only what the server does with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="needs the [serve] extra")
pytest.importorskip("mcp", reason="needs the [serve] extra")

from conftest import REPO, Slmsql, make_pets_db
from typer.testing import CliRunner

from slmsql_cli.cli import app as cli_app
from slmsql_cli.database import open_database
from slmsql_cli.pipeline import AskConfig, Pipeline
from slmsql_cli.serve.process import ServerDidNotStart, ServerProcess

QUICK = ["-n", "2", "--max-tokens", "32", "--no-merge", "--temperature", "0"]
START_TIMEOUT = 180.0  # seconds for a server to load the model on a busy machine
ANSWER_TIMEOUT = 300.0


def make_plants_db(path: Path) -> Path:
    import sqlite3

    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE plants (name TEXT, colour TEXT, height_cm REAL)")
        con.executemany(
            "INSERT INTO plants VALUES (?, ?, ?)", [("Rose", "red", 60.0), ("Fern", "green", 40.5)]
        )
    con.close()
    return path


def server_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "SLMSQL_CACHE_DIR": str(cache)}


class Server(ServerProcess):
    """`slmsql serve --http` (serve/process.py) with the test's cache folder; an httpx client."""

    def __init__(self, args: list[str], folder: Path) -> None:
        log_path = folder / f"server-{time.monotonic_ns()}.log"
        try:
            super().__init__(args, log_path, env=server_env(folder / "cache"), start_timeout=START_TIMEOUT)
        except ServerDidNotStart as exc:
            pytest.fail(str(exc))

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=ANSWER_TIMEOUT, **kwargs)


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serve-dbs")
    return {"pets": make_pets_db(folder / "pets.sqlite"), "plants": make_plants_db(folder / "plants.sqlite")}


@pytest.fixture(scope="module")
def server(
    gemma_gguf: Path, dbs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server for the module: queue of one, JSON logs."""
    db_args = [a for name, path in dbs.items() for a in ("--db", f"{name}={path}")]
    args = ["--port", "0", "-m", str(gemma_gguf), *db_args, *QUICK, "--queue", "1", "--json-logs"]
    srv = Server(args, tmp_path_factory.mktemp("serve"))
    yield srv
    assert srv.stop() == 0, srv.log()


def post_like_curl(srv: Server, path: str, body: dict) -> tuple[int, dict]:
    """POST the way the README's curl line does (`curl -s URL --json JSON`)."""
    if shutil.which("curl"):
        out = subprocess.run(
            ["curl", "-s", "-w", "\n%{http_code}", f"{srv.url}{path}", "--json", json.dumps(body)],
            capture_output=True,
            text=True,
            timeout=ANSWER_TIMEOUT,
            check=True,
        ).stdout
        text, _, status = out.rpartition("\n")
        return int(status), json.loads(text)
    headers = {"Content-Type": "application/json"}
    with srv.client() as c:
        r = c.post(path, content=json.dumps(body), headers=headers)
    return r.status_code, r.json()


def test_curl_ask_returns_ask_json_and_reuses_the_schema_prompt(
    server: Server, gemma_gguf: Path, dbs: dict[str, Path]
) -> None:
    status, _ = post_like_curl(
        server, "/v1/ask", {"database": "plants", "question": "Which plant is tallest?"}
    )
    assert status == 200  # the cache now holds the plants prompt
    status, first = post_like_curl(
        server, "/v1/ask", {"database": "pets", "question": "How many pets are there?"}
    )
    assert status == 200, first
    status, second = post_like_curl(
        server, "/v1/ask", {"database": "pets", "question": "Which pet is oldest?"}
    )
    assert status == 200, second

    printed = CliRunner().invoke(
        cli_app,
        [
            "ask",
            "--db",
            str(dbs["pets"]),
            "--json",
            "-m",
            str(gemma_gguf),
            *QUICK,
            "How many pets are there?",
        ],
    )
    # serve adds the conversation id a follow-up names (issue 29); the rest is ask's document
    assert set(first) == set(json.loads(printed.stdout.strip().splitlines()[-1])) | {"conversation"}

    g1, g2 = first["generation"], second["generation"]
    assert g2["prompt_tokens_evaluated"] < g1["prompt_tokens_evaluated"]  # only what differs
    assert g2["prompt_tokens_evaluated"] < g2["prompt_tokens"] // 2


def test_each_route_on_the_real_server(server: Server, dbs: dict[str, Path]) -> None:
    with server.client() as c:
        assert [d["name"] for d in c.get("/v1/databases").json()["databases"]] == ["pets", "plants"]
        schema = c.get("/v1/databases/pets/schema").json()
        assert "CREATE TABLE pets" in schema["schema"]
        ok = c.post("/v1/sql", json={"database": "pets", "sql": "SELECT count(*) FROM pets"}).json()
        assert ok["rows"] == [[2]] and ok["error"] is None
        refused = c.post("/v1/sql", json={"database": "pets", "sql": "DROP TABLE pets"}).json()
        assert refused["error"] and "DROP" in refused["error"]
        health = c.get("/healthz").json()
        assert health["model"].endswith(".gguf") and health["model_load_seconds"] > 0
        assert health["queue_length"] == 0 and health["queue_capacity"] == 1
        assert c.get("/docs").status_code == 200
        assert c.get("/openapi.json").json()["info"]["title"] == "slmsql"


def test_bad_input_on_the_real_server(server: Server) -> None:
    megabyte = "x" * (1024 * 1024)
    with server.client() as c:
        as_json = {"Content-Type": "application/json"}
        assert (
            c.post("/v1/ask", content=b'{"database": "pets", "question"', headers=as_json).status_code == 400
        )
        assert c.post("/v1/ask", content=b'{"database": "pets", "question": "?"}').status_code == 415
        assert c.post("/v1/ask", json={"database": "zoo", "question": "How many?"}).status_code == 404
        assert c.post("/v1/ask", json={"database": "pets", "question": ""}).status_code == 400
        assert c.post("/v1/ask", json={"database": "pets", "question": megabyte}).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what streams in
            yield b'{"database": "pets", "question": "'
            for _ in range(16):
                yield megabyte.encode()[: 64 * 1024]
            yield b'"}'

        assert c.post("/v1/ask", content=chunks(), headers=as_json).status_code == 413
        assert c.get("/healthz").status_code == 200  # still serving


def test_a_full_queue_answers_503_and_loses_nothing(server: Server) -> None:
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def ask(i: int) -> None:
        with server.client() as c:
            r = c.post("/v1/ask", json={"database": "pets", "question": f"How many pets are older than {i}?"})
        with lock:
            results.append(r)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(ANSWER_TIMEOUT)
    statuses = sorted(r.status_code for r in results)
    assert len(results) == 6 and set(statuses) <= {200, 503}, statuses
    assert 503 in statuses and 200 in statuses
    busy = next(r for r in results if r.status_code == 503)
    assert int(busy.headers["Retry-After"]) >= 1 and "busy" in busy.json()["error"]


def test_one_json_log_line_per_request(server: Server) -> None:
    with server.client() as c:
        c.get("/v1/databases")
        c.post("/v1/ask", json={"database": "pets", "question": "Name every pet."})
    records = server.log_records()
    asks = [r for r in records if r.get("path") == "/v1/ask" and r.get("status") == 200]
    assert asks, server.log()
    last = asks[-1]
    assert last["database"] == "pets" and re.fullmatch(r"\d+/2", last["votes"])
    assert {"seconds", "queue_s", "run_s", "outcome", "prompt_tokens_evaluated"} <= set(last)
    assert any(r.get("path") == "/v1/databases" for r in records)


def test_second_server_on_the_same_port_is_one_clear_line(
    slmsql: Slmsql, server: Server, gemma_gguf: Path, dbs
) -> None:
    port = server.url.rsplit(":", 1)[1]
    out = slmsql(
        "serve", "--http", "--port", port, "--db", dbs["pets"], "-m", gemma_gguf,
        cache=server.log_path.parent / "cache", timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.startswith("error:") and "already in use" in out.stderr
    assert "Traceback" not in out.stderr


def test_token_hang_up_and_sigterm_on_a_reachable_host(
    gemma_gguf: Path, dbs: dict[str, Path], tmp_path: Path
) -> None:
    """A server on 0.0.0.0 with a token and long answers: auth, a client that hangs up mid-answer
    (cancelled; the next question is answered), then SIGTERM mid-answer (exit 0)."""
    args = [
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--token",
        "s3cret-s3cret-s3cret",
        "--db",
        f"pets={dbs['pets']}",
        "-m",
        str(gemma_gguf),
    ]
    srv = Server([*args, "-n", "2", "--max-tokens", "512", "--no-merge", "--json-logs"], tmp_path)
    auth = {"Authorization": "Bearer s3cret-s3cret-s3cret"}
    body = {"database": "pets", "question": "Describe every pet in detail.", "stream": True}
    try:
        assert "bearer token is required" in srv.log()
        srv.url = srv.url.replace("0.0.0.0", "127.0.0.1")
        with srv.client() as c:
            assert c.get("/healthz").status_code == 401
            assert c.get("/healthz", headers=auth).status_code == 200

        with srv.client(headers=auth) as c, c.stream("POST", "/v1/ask", json=body) as response:
            for line in response.iter_lines():
                if line == "event: started":
                    break  # hang up while the model samples
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while not any(r.get("outcome") == "disconnected" for r in srv.log_records()):
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.2)

        events: list[str] = []
        with srv.client(headers=auth) as c, c.stream("POST", "/v1/ask", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("event: "):
                    events.append(line.removeprefix("event: "))
                if line == "event: started":
                    srv.proc.send_signal(signal.SIGTERM)
        assert "started" in events and events[-1] in ("answer", "error")  # finished or cancelled, cleanly
        assert srv.proc.wait(120) == 0, srv.log()
        assert "stopped" in srv.log()
    finally:
        srv.stop()


def test_a_cancelled_generation_leaves_the_engine_usable(gemma_gguf: Path, pets_db: Path) -> None:
    """`serve` cancels by raising from on_token between two tokens: the KV cache must stay sound."""

    class Stop(Exception):
        pass

    tokens = [0]

    def stop_after_three(_candidate: int) -> None:
        tokens[0] += 1
        if tokens[0] > 3:
            raise Stop

    config = AskConfig(n=2, max_tokens=32, merge=False, temperature=0)
    with Pipeline.load(str(gemma_gguf), config=config) as pipeline:
        db = open_database(pets_db)
        pipeline.ask(db, "How many pets are there?")
        with pytest.raises(Stop):
            pipeline.ask(db, "Which pet is the oldest?", on_token=stop_after_three)
        again = pipeline.ask(db, "How many pets are there?")
    stats = again.generation.stats
    assert len(again.generation.candidates) == 2 and stats.generated_tokens > 0
    assert 0 < stats.prompt_tokens_evaluated < stats.prompt_tokens  # the cached prefix was kept


def test_a_reachable_host_without_token_is_refused_before_loading() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--http", "--host", "0.0.0.0", "--db", "x.sqlite"])
    assert result.exit_code == 2
    assert "needs --token" in result.stderr


# ---- MCP ------------------------------------------------------------------------------------------


def test_mcp_client_lists_describes_asks_and_queries(
    gemma_gguf: Path, dbs: dict[str, Path], tmp_path: Path
) -> None:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "slmsql_cli",
            "serve",
            "--mcp",
            "--db",
            f"pets={dbs['pets']}",
            "-m",
            str(gemma_gguf),
            *QUICK,
        ],
        env={"PYTHONPATH": str(REPO), "SLMSQL_CACHE_DIR": str(tmp_path / "cache")},
    )

    async def session() -> dict:
        async with Client(params, read_timeout_seconds=ANSWER_TIMEOUT) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            listed = await client.call_tool("list_databases", {})
            described = await client.call_tool("describe_database", {"database": "pets"})
            asked = await client.call_tool("ask", {"question": "How many pets are there?"})
            read = await client.call_tool(
                "run_sql", {"database": "pets", "sql": "SELECT name FROM pets ORDER BY name"}
            )
            write = await client.call_tool("run_sql", {"database": "pets", "sql": "DELETE FROM pets"})
            after = await client.call_tool(
                "run_sql", {"database": "pets", "sql": "SELECT count(*) FROM pets"}
            )
            unknown = await client.call_tool("describe_database", {"database": "../pets"})
            return locals()

    got = asyncio.run(session())
    assert got["tools"] == {"ask", "list_databases", "describe_database", "run_sql"}
    assert got["listed"].structured_content == {"databases": [{"name": "pets", "tables": ["pets"]}]}
    assert "CREATE TABLE pets" in got["described"].structured_content["schema"]
    answer = got["asked"].structured_content
    assert not got["asked"].is_error and {"sql", "columns", "rows", "votes", "candidates_sampled"} <= set(
        answer
    )
    assert all("text" not in c for c in answer["candidates"])
    assert got["read"].structured_content["rows"] == [["Rex"], ["Tom"]]
    assert got["write"].is_error and "DELETE" in got["write"].content[0].text
    assert got["unknown"].is_error and "no database named" in got["unknown"].content[0].text
    assert got["after"].structured_content["rows"] == [[2]]  # the refused write changed nothing
