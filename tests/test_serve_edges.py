"""`slmsql serve` at its edges: what a web page, a hostile client or a broken MCP client can send.

The attacks of the red-team pass (issue 19) run against a real server process with the real
Gemma model (slow): DNS rebinding (a foreign Host), cross-site requests (a foreign Origin, a
`text/plain` or form POST), log injection (control characters and ANSI escapes in the path and
in a database name), lone surrogates, timeouts (always 504, and /v1/sql within
--request-timeout) and unparsable MCP lines. The rest (--allow-origin's CORS, the token's length,
the log format) needs no model and runs in process.
"""

from __future__ import annotations

import io
import json
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="needs the [serve] extra")
pytest.importorskip("fastapi", reason="needs the [serve] extra")

from conftest import REPO, Slmsql, make_pets_db
from starlette.testclient import TestClient
from typer.testing import CliRunner

from slmsql_cli.cli import app as cli_app
from slmsql_cli.serve.guard import Guard
from slmsql_cli.serve.http import create_app
from slmsql_cli.serve.process import ServerDidNotStart, ServerProcess
from slmsql_cli.serve.requestlog import RequestLog

START_TIMEOUT = 180.0
JSON = {"Content-Type": "application/json"}
FORGED = "/%0aFORGED_static%1b]0;pwned%07"  # the payload: a forged line and a terminal title


class Server(ServerProcess):
    def __init__(self, args: list[str], folder: Path) -> None:
        env = {"PYTHONPATH": str(REPO), "SLMSQL_CACHE_DIR": str(folder / "cache")}
        try:
            super().__init__(
                args, folder / f"server-{time.monotonic_ns()}.log", env=env, start_timeout=START_TIMEOUT
            )
        except ServerDidNotStart as exc:
            pytest.fail(str(exc))
        self.port = int(self.url.rsplit(":", 1)[1])

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def server(gemma_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Long answers (256 tokens) and a one-second --request-timeout: every question times out."""
    folder = tmp_path_factory.mktemp("edges")
    db = make_pets_db(folder / "pets.sqlite")
    args = ["-m", str(gemma_gguf), "--db", f"pets={db}", "-n", "2", "--max-tokens", "256", "--no-merge"]
    srv = Server([*args, "--request-timeout", "1", "--timeout", "60", "--queue", "8"], folder)
    yield srv
    assert srv.stop() == 0, srv.log()


# ---- DNS rebinding and cross-site requests ------------------------------------------------------


def test_a_rebound_host_name_gets_403_and_no_data(server: Server) -> None:
    evil = {"Host": "evil.example"}
    with server.client() as c:
        listed = c.get("/v1/databases", headers=evil)
        assert listed.status_code == 403 and "pets" not in listed.text
        assert "Host" in listed.json()["error"] and listed.json()["hint"]
        body = {"database": "pets", "sql": "SELECT name FROM pets LIMIT 2"}
        queried = c.post("/v1/sql", json=body, headers={**evil, "Host": f"evil.example:{server.port}"})
        assert queried.status_code == 403 and "Rex" not in queried.text
        # the names the server was started for, each with its port
        for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}"):
            assert c.get("/v1/databases", headers={"Host": host}).status_code == 200
        assert c.post("/v1/sql", json=body).json()["rows"] == [["Rex"], ["Tom"]]


def test_cross_site_posts_are_refused_before_they_run(server: Server) -> None:
    sql = json.dumps({"database": "pets", "sql": "SELECT name FROM pets LIMIT 2"})
    ask = json.dumps({"database": "pets", "question": "How many pets are there?"})
    evil = "http://evil.example"
    with server.client() as c:
        for path, body in (("/v1/sql", sql), ("/v1/ask", ask)):
            # what a page can send without a CORS preflight: text/plain or a form, with its Origin
            for kind in ("text/plain", "application/x-www-form-urlencoded"):
                r = c.post(path, content=body, headers={"Content-Type": kind, "Origin": evil})
                assert r.status_code == 403 and "evil.example" in r.json()["error"], r.text
                r = c.post(path, content=body, headers={"Content-Type": kind})  # no Origin: still not JSON
                assert r.status_code == 415 and "application/json" in r.json()["error"], r.text
            r = c.post(path, content=body, headers={**JSON, "Origin": evil})  # a JSON POST (after preflight)
            assert r.status_code == 403 and "--allow-origin" in r.json()["hint"]
        # a cross-site GET (an <img> or <script> tag) carries no Origin but says where it comes from
        r = c.get("/v1/databases", headers={"Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403
        assert c.get("/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200  # a link to the page
        # the server's own page: same origin, JSON
        own = c.post("/v1/sql", content=sql, headers={**JSON, "Origin": server.url})
        assert own.status_code == 200 and own.json()["rows"] == [["Rex"], ["Tom"]]
        assert c.get("/healthz").json()["queue_length"] == 0  # nothing refused was queued
    refused = [line for line in server.log().splitlines() if 'path="/v1/ask"' in line]
    assert refused and all("status=403" in line or "status=415" in line for line in refused)


# ---- the log ------------------------------------------------------------------------------------


def test_the_log_cannot_be_forged(server: Server) -> None:
    with server.client() as c:
        assert c.get(FORGED).status_code == 404
        name = "x\nFORGED_db \x1b[31mred\x1b[0m\u202e"
        assert c.post("/v1/sql", json={"database": name, "sql": "SELECT 1"}).status_code == 404
        assert c.get("/healthz").status_code == 200
    log = server.log_path.read_bytes()
    assert b"\x1b" not in log and b"\x07" not in log and "\u202e".encode() not in log
    lines = log.decode().splitlines()
    assert not any(line.startswith("FORGED") for line in lines)
    assert any('path="/\\nFORGED_static\\u001b]0;pwned\\u0007"' in line for line in lines), log
    assert any('database="x\\nFORGED_db \\u001b[31mred\\u001b[0m\\u202e"' in line for line in lines), log


def test_log_values_are_quoted_and_escaped() -> None:
    out = io.StringIO()
    RequestLog(stream=out).write(
        method="GET",
        path="/\nFORGED\x1b]0;x\x07",
        status=404,
        seconds=0.5,
        database="\ud800\x9b2J",
        merged=True,
    )
    line = out.getvalue()
    assert line == (
        'method="GET" path="/\\nFORGED\\u001b]0;x\\u0007" status=404 seconds=0.500 '
        'database="\\ud800\\u009b2J" merged=true\n'
    )
    out = io.StringIO()
    RequestLog(json_lines=True, stream=out).write(path="/\x9b\u2028\ud800")
    text = out.getvalue()
    assert text.isascii() and json.loads(text)["path"] == "/\x9b\u2028\ud800"


# ---- lone surrogates and timeouts ----------------------------------------------------------------


def test_a_lone_surrogate_is_400_with_a_hint(server: Server) -> None:
    bodies = {
        "/v1/sql": [
            '{"database": "pets", "sql": "SELECT \\ud800"}',
            '{"database": "\\udfff", "sql": "SELECT 1"}',
        ],
        "/v1/ask": [
            '{"database": "pets", "question": "How many \\ud800?"}',
            '{"database": "\\ud800", "question": "How many?"}',
            '{"database": "pets", "question": "How many?", "evidence": "\\udc00"}',
        ],
    }
    with server.client() as c:
        for path, texts in bodies.items():
            for body in texts:
                r = c.post(path, content=body, headers=JSON)
                assert r.status_code == 400, (body, r.text)
                assert "surrogate" in r.json()["error"] and r.json()["hint"]
    assert "Traceback" not in server.log()


def test_every_timeout_is_504_and_sql_keeps_the_request_timeout(server: Server) -> None:
    with server.client() as c:
        statuses = []
        for i in range(6):
            r = c.post(
                "/v1/ask", json={"database": "pets", "question": f"Describe pet number {i} in detail."}
            )
            statuses.append(r.status_code)
            assert r.json()["error"] and "request-timeout" in r.json()["hint"]
        assert statuses == [504] * 6
        endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        start = time.monotonic()
        r = c.post("/v1/sql", json={"database": "pets", "sql": endless})
        assert r.status_code == 504 and time.monotonic() - start < 20, r.text  # --timeout is 60


# ---- MCP: a line that is not a message gets an error, not silence ----------------------------------


def test_mcp_answers_unparsable_lines(slmsql: Slmsql, gemma_gguf: Path, tmp_path: Path) -> None:
    db = make_pets_db(tmp_path / "pets.sqlite")
    proc = slmsql.start(
        "serve",
        "--mcp",
        "--db",
        f"pets={db}",
        "-m",
        gemma_gguf,
        stdin=subprocess.PIPE,
        cache=tmp_path / "cache",
    )
    assert proc.stdin is not None and proc.stdout is not None

    def exchange(line: bytes) -> dict:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(line + b"\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        assert ready, "no reply"
        return json.loads(proc.stdout.readline())

    try:
        assert exchange(b"{this is not json")["error"]["code"] == -32700
        surrogate = b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "describe_database", "arguments": {"database": "\\ud800"}}}'
        reply = exchange(surrogate)
        assert (
            reply["id"] == 7 and reply["error"]["code"] == -32600 and "surrogate" in reply["error"]["message"]
        )
        assert exchange(b'{"jsonrpc": "2.0", "id": 8}')["error"]["code"] == -32600
        init = {
            "jsonrpc": "2.0",
            "id": 9,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        assert (
            exchange(json.dumps(init).encode())["result"]["serverInfo"]["name"] == "slmsql"
        )  # still serving
    finally:
        proc.stdin.close()
        proc.wait(60)
    assert "Traceback" not in proc.stderr.read().decode() if proc.stderr else True


# ---- no model: --allow-origin, the token, the CLI's refusals ---------------------------------------


def test_allow_origin_opts_one_origin_in_with_cors(pets_db: Path, scripted_engine) -> None:
    from test_serve_http import make_service

    scripted_engine([])
    service = make_service(pets_db)
    guard = Guard.for_server("127.0.0.1", 8000, ["http://localhost:3000"])
    try:
        client = TestClient(create_app(service, guard=guard), base_url="http://127.0.0.1:8000", headers=JSON)
        ok = {"Origin": "http://localhost:3000"}
        preflight = client.options(
            "/v1/sql",
            headers={
                **ok,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
        r = client.post("/v1/sql", json={"database": "pets", "sql": "SELECT 1"}, headers=ok)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:3000"
        other = client.post(
            "/v1/sql",
            json={"database": "pets", "sql": "SELECT 1"},
            headers={"Origin": "http://localhost:3001"},
        )
        assert other.status_code == 403
        assert client.get("/v1/databases", headers={"Host": "127.0.0.1:8001"}).status_code == 403
        assert client.get("/v1/databases", headers={"Host": "[::1]:8000"}).status_code == 200
    finally:
        service.close()


def test_a_wildcard_host_takes_any_address_but_no_name() -> None:
    guard = Guard.for_server("0.0.0.0", 8000)
    assert (
        guard.host_ok("192.168.1.5:8000")
        and guard.host_ok("[fe80::1]:8000")
        and guard.host_ok("localhost:8000")
    )
    assert not guard.host_ok("evil.example:8000") and not guard.host_ok("")
    assert not Guard.for_server("127.0.0.1", 8000).host_ok("192.168.1.5:8000")


@pytest.mark.parametrize("token", ["x", " " * 20, "fifteen-chars!!"])
def test_a_short_token_is_refused(token: str) -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--http", "--token", token, "--db", "x.sqlite"])
    assert result.exit_code == 2 and "at least 16 characters" in result.stderr


@pytest.mark.parametrize(
    "token", ["sixteen-chars-é!", "пароль-пароль-пароль", "tab\tinside-a-long-token", "x" * 20 + "\n"]
)
def test_a_token_that_is_not_printable_ascii_is_refused(token: str) -> None:
    """Issue 31: a non-ASCII --token of 16 characters was accepted but could never match (a
    client sends it in an HTTP header)."""
    result = CliRunner().invoke(cli_app, ["serve", "--http", "--token", token, "--db", "x.sqlite"])
    assert result.exit_code == 2 and "printable ASCII" in result.stderr, result.stderr
    assert token.strip() not in result.stderr  # a secret is not echoed


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:8000.evil",
        "127.0.0.1:8000.evil.example:8000",
        "127.0.0.1:8001",
        "127.0.0.1",  # port 80
        "127.0.0.1:80000",
        "127.0.0.1:+8000",
        "127.0.0.1: 8000",
        "127.0.0.1:8000:8000",
        "127.0.0.1:٨٠٠٠",  # Arabic-Indic digits
        "[::1]:8000x",
        "[::1]8000",
        "[127.0.0.1]:8000",
        "::1:8000",
        "1.2.3:8000",
        "127.0.0.1@evil.example:8000",
        "evil.example:8000",
        "",
    ],
)
def test_the_wildcard_host_guard_parses_name_and_port(host: str) -> None:
    """Issue 31: the wildcard guard took `127.0.0.1:8000.evil` and ignored the port."""
    assert not Guard.for_server("0.0.0.0", 8000).host_ok(host)
    assert not Guard.for_server("127.0.0.1", 8000).host_ok(host)


def test_the_host_guard_takes_the_servers_names_with_its_port() -> None:
    wild = Guard.for_server("0.0.0.0", 8000)
    assert all(wild.host_ok(h) for h in ("10.0.0.7:8000", "[fe80::1]:8000", "LOCALHOST:8000", "[::1]:8000"))
    assert Guard.for_server("127.0.0.1", 80).host_ok("localhost") and Guard.for_server("::1", 8000).host_ok(
        "[::1]:8000"
    )


def test_a_lone_surrogate_is_400_on_every_json_route(pets_db: Path, scripted_engine) -> None:
    """Issue 31: a lone surrogate in /v1/saved was a 500 with ~80 log lines."""
    from test_serve_http import make_service

    scripted_engine([])
    service = make_service(pets_db)
    out = io.StringIO()
    app = create_app(service, log=RequestLog(json_lines=True, stream=out))
    bodies = {
        "/v1/saved": [
            '{"database": "pets", "question": "How many \\ud800?", "sql": "SELECT 1"}',
            '{"database": "pets", "question": "q", "sql": "SELECT \\udfff"}',
            '{"database": "pets", "question": "q", "sql": "SELECT 1", "evidence": "\\udc00"}',
            '{"database": "\\ud800", "question": "q", "sql": "SELECT 1"}',
        ],
        "/v1/sql": ['{"database": "pets", "sql": "SELECT \\ud800"}'],
        "/v1/ask": ['{"database": "pets", "question": "How many \\ud800?", "stream": true}'],
    }
    try:
        client = TestClient(app, raise_server_exceptions=False, headers=JSON)
        for path, texts in bodies.items():
            for body in texts:
                r = client.post(path, content=body)
                assert r.status_code == 400, (path, body, r.text)
                assert "lone UTF-16 surrogate" in r.json()["error"] and r.json()["hint"]
    finally:
        service.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["status"] == 400 for line in lines), lines


def test_a_bad_allow_origin_is_refused() -> None:
    result = CliRunner().invoke(
        cli_app, ["serve", "--http", "--allow-origin", "evil.example/path", "--db", "x.sqlite"]
    )
    assert result.exit_code == 2 and "not a web origin" in result.stderr


def test_the_model_thread_noticing_the_deadline_first_is_504_too() -> None:
    """The race of issue 19: the job's own Cancelled("timeout") reached the client as a 503."""
    from slmsql_cli.serve.http import _error_response
    from slmsql_cli.serve.service import Cancelled, RequestTimeout

    assert _error_response(Cancelled("timeout"))[0] == 504
    assert _error_response(RequestTimeout("no answer within 1s"))[0] == 504
    assert _error_response(Cancelled("server shutting down"))[0] == 503


def test_a_bug_in_a_route_is_a_json_500_and_one_log_line(pets_db: Path, scripted_engine) -> None:
    from test_serve_http import make_service

    scripted_engine([])
    service = make_service(pets_db)
    out = io.StringIO()

    def broken(name: str) -> dict:
        raise RuntimeError("a bug\nFORGED")

    service.describe = broken  # type: ignore[method-assign]  # stands for any bug behind a route
    try:
        client = TestClient(
            create_app(service, log=RequestLog(json_lines=True, stream=out)), raise_server_exceptions=False
        )
        r = client.get("/v1/databases/pets/schema")
    finally:
        service.close()
    assert r.status_code == 500 and r.json() == {
        "error": "internal error in slmsql serve",
        "hint": "the server's log says more",
    }
    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["error"] == "RuntimeError: a bug\nFORGED"


def test_uvicorns_warnings_and_tracebacks_are_one_log_line_each() -> None:
    import logging

    from slmsql_cli.serve.requestlog import SERVER_LOGGERS, route_server_logs

    loggers = [logging.getLogger(name) for name in SERVER_LOGGERS]
    saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    out = io.StringIO()
    try:
        route_server_logs(RequestLog(json_lines=True, stream=out))
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
        try:
            raise ValueError("boom \x1b[31m")
        except ValueError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application\n")
        logging.getLogger("uvicorn.access").info("not shown: below the level")
    finally:
        for logger, (handlers, propagate, level) in zip(loggers, saved):
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in out.getvalue()
    warned, failed = map(json.loads, lines)
    assert (warned["level"], warned["logger"], warned["message"]) == (
        "warning",
        "uvicorn.error",
        "Invalid HTTP request received.",
    )
    assert failed["level"] == "error" and failed["traceback"].endswith("ValueError: boom \x1b[31m")
