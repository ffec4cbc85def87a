"""`--endpoint`: generating on an OpenAI-compatible server (remote_engine.py).

The real server is llama-cpp-python's own (`python -m llama_cpp.server`, the [server] extra)
serving the Gemma test model on 127.0.0.1, with an API key: the same candidates as the
in-process engine at temperature 0, and `ask`, `chat`, `serve --http` and `eval --concurrency`
through it. Only the faults a real server will not produce on demand (429, 503, a hang, a
response that is not JSON) come from a stand-in server written here.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")

from conftest import REPO, Slmsql

from slmsql_cli.engine import Engine
from slmsql_cli.engine_protocol import SamplingParams
from slmsql_cli.errors import UserError
from slmsql_cli.pipeline import chat_text
from slmsql_cli.remote_engine import Endpoint, RemoteEngine, endpoints, public_url

KEY = "sk-test-0123456789-secret"  # the served model's API key; must never be printed or written
ALIAS = "gemma3-test"
TIMEOUT = 900  # a run through the real server, candidates on one thread
SPIDER = REPO / "tests" / "data" / "spider_dev"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(gemma_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m llama_cpp.server` serving Gemma as ALIAS with API key KEY; its base URL."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server] (the [dev] extra)")
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gemma_gguf), "--model_alias", ALIAS]
            + ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1"]
            + ["--api_key", KEY],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                if httpx.get(url + "/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start:\n{log.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- the real server --------------------------------------------------------------------------


def test_the_server_draws_the_in_process_candidates(
    gemma_gguf: Path, llama_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Engine level, a prompt the model ends with the stop string: same text (stop string
    included), same token count and finish reason, same prompt token count (the leading BOS the
    server adds itself is not sent twice)."""
    monkeypatch.setenv("SLMSQL_API_KEY", KEY)
    params = SamplingParams(n=2, temperature=0.0, max_tokens=60)
    with Engine(gemma_gguf) as local:
        prompt = chat_text(local, "Repeat exactly this text: <answer>SELECT name FROM pets</answer>")
        expected, local_stats = local.sample(prompt, params)
    with RemoteEngine(gemma_gguf, Endpoint.parse(llama_server)) as remote:
        assert remote.served_model == ALIAS  # the server's only model
        got, stats = remote.sample(prompt, params)
    assert [(c.text, c.tokens, c.finish_reason) for c in got] == [
        (c.text, c.tokens, c.finish_reason) for c in expected
    ]
    assert expected[0].finish_reason == "stop" and expected[0].text.endswith("</answer>")
    assert stats.prompt_tokens == local_stats.prompt_tokens
    assert stats.as_dict()["requests"] == 2  # llama_cpp.server ignores `n`: one request per candidate


def test_ask_through_the_server_gives_the_in_process_candidates(
    slmsql: Slmsql, gemma_gguf: Path, llama_server: str, pets_db: Path, tmp_path: Path
) -> None:
    common = ["ask", "--db", str(pets_db), "-m", str(gemma_gguf), "-n", "2", "-t", "0", "--no-merge"]
    common += ["--max-tokens", "16", "--json", "How many pets are there?"]
    local = slmsql(*common, timeout=TIMEOUT)
    remote = slmsql(*common, env={"SLMSQL_ENDPOINT": llama_server, "SLMSQL_API_KEY": KEY}, timeout=TIMEOUT)
    assert local.returncode in (0, 1) and remote.returncode == local.returncode, remote.stderr
    a, b = json.loads(local.stdout), json.loads(remote.stdout)
    assert b["candidates"] == a["candidates"] and len(b["candidates"]) == 2
    assert [c["text"] for c in b["candidates"]] != ["", ""]
    assert b["sql"] == a["sql"]
    for key in ("prompt_tokens", "generated_tokens"):
        assert b["generation"][key] == a["generation"][key], key
    assert b["generation"]["endpoint"] == llama_server and b["generation"]["served_model"] == ALIAS
    assert KEY not in remote.stdout + remote.stderr


def test_chat_and_eval_through_the_server_never_show_the_key(
    slmsql: Slmsql, gemma_gguf: Path, llama_server: str, pets_db: Path, tmp_path: Path
) -> None:
    env = {"SLMSQL_API_KEY": KEY}
    remote = ["--endpoint", llama_server, "-m", str(gemma_gguf), "-n", "1", "--max-tokens", "16"]
    remote.append("--no-merge")
    chat = slmsql(
        "chat", "--db", str(pets_db), *remote, stdin="How many pets?\nexit\n", env=env, timeout=TIMEOUT
    )
    # chat exits 1 when a question got no answer (the Gemma test model is a base model)
    assert chat.returncode == (1 if "error: the model wrote no SQL" in chat.stderr else 0), chat.stderr
    assert "prompt " in chat.stderr and "Traceback" not in chat.stderr
    bench = slmsql(
        "bench", "--db", str(pets_db), *remote[:4], "-n", "1,2", "--max-tokens", "4", env=env, timeout=TIMEOUT
    )
    assert bench.returncode == 0, bench.stderr
    report = json.loads(bench.stdout.strip().splitlines()[-1])
    assert report["device"] == f"server {llama_server} ({ALIAS})"
    assert [r["n"] for r in report["results"]] == [1, 2] and report["results"][1]["generated_tokens"] > 0

    out = tmp_path / "eval.jsonl"
    args = ["eval", "-q", str(SPIDER / "dev.json"), "--db-dir", str(SPIDER / "database"), "--limit", "4"]
    first = slmsql(
        *args, *remote, "--concurrency", "4", "--out", str(out), "--limit", "3", env=env, timeout=TIMEOUT
    )
    assert first.returncode == 0, first.stderr
    assert "throughput: 3 question(s)" in first.stderr and "4 in flight" in first.stderr
    resumed = slmsql(
        *args, *remote, "--concurrency", "4", "--out", str(out), "--json", env=env, timeout=TIMEOUT
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "3 of 4 question(s) already scored" in resumed.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["index"] for r in records) == [0, 1, 2, 3]
    assert {r["run"]["endpoint"] for r in records} == {llama_server}
    everything = chat.stdout + chat.stderr + first.stdout + first.stderr + resumed.stdout + resumed.stderr
    assert KEY not in everything + out.read_text()


def test_serve_http_answers_through_the_server(
    gemma_gguf: Path, llama_server: str, pets_db: Path, tmp_path: Path
) -> None:
    from slmsql_cli.serve.process import ServerProcess

    pytest.importorskip("fastapi")
    args = ["--db", f"pets={pets_db}", "--endpoint", llama_server, "-m", str(gemma_gguf)]
    args += ["-n", "1", "--max-tokens", "16", "--no-merge", "--json-logs"]
    log = tmp_path / "serve.log"
    with ServerProcess(args, log, env={"SLMSQL_API_KEY": KEY}, cwd=REPO, start_timeout=120) as server:
        reply = httpx.post(
            server.url + "/v1/ask", json={"database": "pets", "question": "How many?"}, timeout=300
        )
        assert reply.status_code == 200, reply.text
        doc = reply.json()
        assert doc["generation"]["served_model"] == ALIAS and len(doc["candidates"]) == 1
    assert KEY not in log.read_text() + reply.text


def test_a_wrong_model_name_key_or_merge_model_is_one_line(
    slmsql: Slmsql, gemma_gguf: Path, llama_server: str, pets_db: Path, tmp_path: Path
) -> None:
    args = ["ask", "--db", str(pets_db), "-m", str(gemma_gguf), "--endpoint", llama_server, "How many?"]
    wrong = slmsql(*args, "--served-model", "qwen-7b", env={"SLMSQL_API_KEY": KEY}, timeout=TIMEOUT)
    assert wrong.returncode == 2
    lines = _diagnostics(wrong.stderr)
    assert lines[0] == f"error: the model server at {llama_server} has no model 'qwen-7b'; it serves: {ALIAS}"
    assert lines[1].startswith("hint: ") and len(lines) == 2
    other = tmp_path / "other-merge-model.gguf"  # another file name: another --merge-model
    os.link(gemma_gguf, other)
    merge = slmsql(
        *args[:-1], "--merge-model", str(other), "How many?", env={"SLMSQL_API_KEY": KEY}, timeout=TIMEOUT
    )
    assert merge.returncode == 2
    assert _diagnostics(merge.stderr)[0].startswith(
        f"error: the merge model {other} would be answered by '{ALIAS}'"
    ), merge.stderr
    no_key = slmsql(*args, env={"SLMSQL_API_KEY": "wrong-key"}, timeout=TIMEOUT)
    assert no_key.returncode == 2
    assert "refused the request (HTTP 401): the API key in SLMSQL_API_KEY was not accepted" in no_key.stderr
    assert "wrong-key" not in no_key.stderr


# ---- faults, from a stand-in server -----------------------------------------------------------


class StandIn:
    """A small OpenAI-shaped server: GET /v1/models lists `models`; each POST /v1/completions
    takes the next scripted reply: ("status", code), ("hang", seconds), ("garbage",), ("ok", text),
    and the hostile ones: ("error", code, message, headers) a JSON error, ("drip", raw, seconds[,
    at_once]) the raw HTTP response a byte every `seconds` (after its first `at_once` bytes), ("declared", n) headers announcing n bytes and no body,
    ("endless",) a body without a length that never ends (until the client hangs up)."""

    def __init__(self, script: list[tuple[Any, ...]], models: list[str] | None = None) -> None:
        self.script = list(script)
        self.models = models or ["stand-in"]
        self.posts = 0
        self.headers: list[str] = []
        self.sent = 0  # bytes of the last "endless" body written
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(code)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (the hang test)
                    pass

            def do_GET(self) -> None:
                self._send(200, json.dumps({"data": [{"id": m} for m in stand_in.models]}).encode())

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stand_in.posts += 1
                stand_in.headers.append(self.headers.get("Authorization", ""))
                step = stand_in.script.pop(0) if stand_in.script else ("status", 500)
                if step[0] == "status":
                    self._send(step[1], b'{"error": {"message": "busy"}}', {"Retry-After": "0"})
                elif step[0] == "hang":
                    time.sleep(step[1])
                    self._send(200, b"{}")
                elif step[0] == "garbage":
                    self._send(200, b"<html>not json{", {"Content-Type": "application/json"})
                elif step[0] == "error":
                    self._send(step[1], json.dumps({"error": {"message": step[2]}}).encode(), step[3])
                elif step[0] == "drip":
                    raw, seconds, at_once = step[1], step[2], step[3] if len(step) > 3 else 0
                    try:
                        self.wfile.write(raw[:at_once])
                        for byte in raw[at_once:]:
                            self.wfile.write(bytes([byte]))
                            time.sleep(seconds)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                elif step[0] == "declared":
                    self.send_response(200)
                    self.send_header("Content-Length", str(step[1]))
                    self.end_headers()
                    time.sleep(60)
                elif step[0] == "endless":
                    self.send_response(200)
                    self.end_headers()  # HTTP/1.0, no length: the body runs until the connection closes
                    chunk = b" " * 2**20
                    try:
                        while stand_in.sent < 2**31:
                            self.wfile.write(chunk)
                            stand_in.sent += len(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                else:
                    choice = {"index": 0, "text": step[1], "finish_reason": "stop"}
                    body = {"choices": [choice], "usage": {"prompt_tokens": 1, "completion_tokens": 3}}
                    self._send(200, json.dumps(body).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def stand_in() -> Iterator[Any]:
    servers: list[StandIn] = []

    def start(script: list[tuple[Any, ...]], models: list[str] | None = None) -> StandIn:
        servers.append(StandIn(script, models))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _ask(
    slmsql: Slmsql, gemma_vocab: Path, db: Path, url: str, *extra: str, env: dict[str, str] | None = None
):
    return slmsql(
        "ask", "--db", str(db), "-m", str(gemma_vocab), "--endpoint", url, "-n", "1", "--no-merge",
        "--no-values", *extra, "How many pets are there?", env=env, timeout=120,
    )  # fmt: skip


def _diagnostics(stderr: str) -> list[str]:
    """stderr less the progress lines a command prints off a terminal ("loading the model…")."""
    return [line for line in stderr.strip().splitlines() if not re.search(r"…( \(\d+s\))?$", line)]


def _one_error(proc: subprocess.CompletedProcess, start: str) -> None:
    lines = _diagnostics(proc.stderr)
    assert proc.returncode == 2, proc.stderr
    assert lines[0].startswith(f"error: {start}"), proc.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: "), proc.stderr


def test_a_server_that_is_down_is_one_line_naming_the_url(
    slmsql: Slmsql, gemma_vocab: Path, pets_db: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    _one_error(_ask(slmsql, gemma_vocab, pets_db, url), f"cannot reach the model server at {url}")


def test_429_and_503_are_retried_then_answered(
    slmsql: Slmsql, gemma_vocab: Path, pets_db: Path, stand_in
) -> None:
    server = stand_in([("status", 429), ("status", 503), ("ok", "<answer>SELECT count(*) FROM pets")])
    proc = _ask(slmsql, gemma_vocab, pets_db, server.url, "--sql-only", env={"SLMSQL_API_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "SELECT count(*) FROM pets" and server.posts == 3
    assert server.headers == [f"Bearer {KEY}"] * 3 and KEY not in proc.stderr


def test_a_server_that_stays_busy_is_one_line(
    slmsql: Slmsql, gemma_vocab: Path, pets_db: Path, stand_in
) -> None:
    server = stand_in([("status", 503)] * 10)
    _one_error(
        _ask(slmsql, gemma_vocab, pets_db, server.url),
        f"the model server at {server.url} is still busy (HTTP 503)",
    )
    assert server.posts == 6


def test_a_hanging_server_times_out_in_one_line(
    slmsql: Slmsql, gemma_vocab: Path, pets_db: Path, stand_in
) -> None:
    server = stand_in([("hang", 5)])
    proc = _ask(slmsql, gemma_vocab, pets_db, server.url, "--endpoint-timeout", "1")
    _one_error(proc, f"the model server at {server.url} did not answer within 1s")


def test_garbage_is_a_candidate_without_sql(
    slmsql: Slmsql, gemma_vocab: Path, pets_db: Path, stand_in
) -> None:
    server = stand_in([("garbage",)])
    proc = _ask(slmsql, gemma_vocab, pets_db, server.url, "--json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["sql"] is None and [c["sql"] for c in doc["candidates"]] == [None]
    assert doc["generation"]["bad_responses"] == 1
    assert "sent a response without usable text" in proc.stderr and "Traceback" not in proc.stderr


# ---- a hostile server (issue 31) --------------------------------------------------------------

ANSWER = json.dumps(
    {"choices": [{"index": 0, "text": "<answer>SELECT 1", "finish_reason": "stop"}], "usage": {}}
).encode()


def _http(body: bytes) -> bytes:
    return b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


def _engine(
    gemma_vocab: Path, url: str, monkeypatch: pytest.MonkeyPatch, timeout: float = 30
) -> RemoteEngine:
    monkeypatch.setenv("SLMSQL_API_KEY", KEY)
    return RemoteEngine(gemma_vocab, Endpoint.parse(url, timeout=timeout))


def _refusal(engine: RemoteEngine, **params: Any) -> str:
    """The one-line error (message and hint) that sampling ends in."""
    with pytest.raises(UserError) as caught:
        engine.sample("SELECT", SamplingParams(n=1, max_tokens=8, **params))
    return f"{caught.value.message}\n{caught.value.hint}"


def test_a_dripping_server_ends_at_the_deadline(
    slmsql: Slmsql, gemma_vocab: Path, pets_db: Path, stand_in
) -> None:
    """--endpoint-timeout is one deadline for the whole response: a byte a second, in the
    headers or in the body, never resets it (it waited past 90 s for a 5 s timeout before)."""
    server = stand_in([("drip", _http(ANSWER), 1.0)])  # from the status line on: 150 s in all
    start = time.monotonic()
    proc = _ask(slmsql, gemma_vocab, pets_db, server.url, "--endpoint-timeout", "2")
    _one_error(proc, f"the model server at {server.url} did not answer within 2s")
    assert time.monotonic() - start < 60  # the CLI's start, the vocabulary and 2 s


def test_the_deadline_holds_for_a_body_dripped_after_quick_headers(
    gemma_vocab: Path, stand_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = _http(ANSWER)
    split = whole.index(b"\r\n\r\n") + 4
    server = stand_in([("drip", whole, 1.0, split), ("ok", "<answer>SELECT 2")])  # 80 s of body
    with _engine(gemma_vocab, server.url, monkeypatch, timeout=1.5) as engine:
        start = time.monotonic()
        assert "did not answer within 1.5s" in _refusal(engine)
        assert time.monotonic() - start < 20
        # the engine goes on working: the next request gets its answer
        got, _ = engine.sample("SELECT", SamplingParams(n=1, max_tokens=8))
        assert got[0].text.startswith("<answer>SELECT 2")


def test_a_huge_response_is_refused_unread(
    gemma_vocab: Path, stand_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most MAX_BODY bytes are read: a declared 1.2 GB body is refused from its headers, an
    endless one after MAX_BODY (a 1.2 GB body was read whole before)."""
    from slmsql_cli.remote_engine import MAX_BODY

    server = stand_in([("declared", 1_200_000_000), ("endless",)])
    expected = (
        f"the model server at {server.url} sent a response over {MAX_BODY // 2**20} MiB; it was not read"
    )
    with _engine(gemma_vocab, server.url, monkeypatch) as engine:
        start = time.monotonic()
        assert _refusal(engine).startswith(expected)
        assert time.monotonic() - start < 20  # not the 60 s the server holds the connection
        assert _refusal(engine).startswith(expected)
    assert server.sent < 2**31  # the client hung up


def _shows_key(text: str) -> bool:
    """Whether `text` holds KEY in any case, split by white space or written-out line breaks."""
    flat = re.sub(r"\s|\\[nrt]", "", text).lower()
    return KEY.lower() in flat


def test_the_key_is_blanked_out_however_the_server_echoes_it(
    slmsql: Slmsql, gemma_vocab: Path, pets_db: Path, stand_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    half = len(KEY) // 2
    echoes = [KEY, KEY.lower(), KEY.upper(), KEY[:half] + "\n" + KEY[half:], KEY[:half] + "\\n " + KEY[half:]]
    server = stand_in(
        [("error", 400, f"bad key {echo} given", {}) for echo in echoes]
        + [("ok", f"<answer>SELECT '{KEY.lower()}'")],
        models=["stand-in"],
    )
    with _engine(gemma_vocab, server.url, monkeypatch) as engine:
        for echo in echoes:
            shown = _refusal(engine)
            assert "bad key *** given" in shown and not _shows_key(shown), (echo, shown)
        got, _ = engine.sample("SELECT", SamplingParams(n=1, max_tokens=8))
        assert got[0].text.startswith("<answer>SELECT '***'") and not _shows_key(got[0].text)
    # through the CLI: the error line, and a completion that echoes the key in --json
    server = stand_in(
        [("error", 500, KEY[:half] + "\r\n" + KEY[half:].upper(), {}), ("ok", f"<answer>SELECT '{KEY}'")]
    )
    for args in ([], ["--json"]):
        proc = _ask(slmsql, gemma_vocab, pets_db, server.url, *args, env={"SLMSQL_API_KEY": KEY})
        assert not _shows_key(proc.stdout + proc.stderr), proc.stdout + proc.stderr
        assert "***" in proc.stdout + proc.stderr


def test_a_user_and_password_in_the_url_are_refused(slmsql: Slmsql, gemma_vocab: Path, pets_db: Path) -> None:
    for url in ("http://user:s3cret-pw@127.0.0.1:9/v1", "https://s3cret-pw@host/v1"):
        with pytest.raises(UserError) as caught:
            Endpoint.parse(url)
        assert "must not hold a user name or password" in caught.value.message
        assert "SLMSQL_API_KEY" in (caught.value.hint or "")
        assert "s3cret" not in caught.value.message + (caught.value.hint or "")
    with pytest.raises(UserError, match="SLMSQL_MERGE_API_KEY"):
        endpoints("http://h/v1", None, "http://u:s3cret-pw@m/v1", None, None)
    proc = _ask(slmsql, gemma_vocab, pets_db, "http://user:s3cret-pw@127.0.0.1:9/v1")
    _one_error(proc, "--endpoint must not hold a user name or password: http://127.0.0.1:9/v1")
    assert "s3cret" not in proc.stderr


@pytest.mark.parametrize(
    "retry_after", ["nan", "NaN", "inf", "-inf", "1e999", "Wed, 21 Oct 2015 07:28:00 GMT"]
)
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(
    gemma_vocab: Path, stand_in, monkeypatch: pytest.MonkeyPatch, retry_after: str
) -> None:
    server = stand_in([("error", 503, "busy", {"Retry-After": retry_after}), ("ok", "<answer>SELECT 1")])
    with _engine(gemma_vocab, server.url, monkeypatch) as engine:
        start = time.monotonic()
        got, _ = engine.sample("SELECT", SamplingParams(n=1, max_tokens=8))
    assert got[0].text.startswith("<answer>SELECT 1") and server.posts == 2
    assert time.monotonic() - start < 15  # the first doubling delay (0.5 s), never 30 s or forever


def test_server_text_is_escaped_and_cut_short(
    slmsql: Slmsql, gemma_vocab: Path, pets_db: Path, stand_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slmsql_cli.remote_engine import MAX_MESSAGE

    ansi = "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil"
    server = stand_in([("error", 400, ansi + " " + "x" * 1_000_000, {})] * 2)
    with _engine(gemma_vocab, server.url, monkeypatch) as engine:
        shown = _refusal(engine)
    message = shown.splitlines()[0]
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown and "\x9b" not in shown
    assert "\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202eevil" in message
    assert len(message) < MAX_MESSAGE + 200 and message.endswith("…")
    proc = _ask(slmsql, gemma_vocab, pets_db, server.url)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr
    assert errors[0].startswith(
        f"error: the model server at {server.url} refused the request (HTTP 400): \\x1b[2J"
    )
    assert "\x1b" not in proc.stderr and len(proc.stderr) < 2_000


def test_a_huge_model_list_is_named_in_one_short_line(
    gemma_vocab: Path, stand_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200,000 models (a 1.7 MB error line before): the first ten and how many more."""
    from slmsql_cli.remote_engine import MAX_LISTED

    models = [f"model-{i:06d}" for i in range(200_000)] + [f"\x1b[31m{KEY}"]
    server = stand_in([], models=models)
    monkeypatch.setenv("SLMSQL_API_KEY", KEY)
    for served in ("nope", None):
        with pytest.raises(UserError) as caught:
            RemoteEngine(gemma_vocab, Endpoint.parse(server.url, served))
        message = caught.value.message
        assert len(message) < 1_000, message
        assert ", ".join(models[:MAX_LISTED]) + ", … and 199,991 more" in message
    with pytest.raises(UserError) as caught:  # a name that holds the key and ESC, shown safely
        RemoteEngine(gemma_vocab, Endpoint.parse(stand_in([], models=[f"\x1b[31m{KEY}", "b"]).url, "c"))
    assert "\\x1b[31m***, b" in caught.value.message and not _shows_key(caught.value.message)


# ---- option plumbing --------------------------------------------------------------------------


def test_endpoints_normalize_and_never_keep_credentials() -> None:
    main, merge = endpoints("http://host:8000", None, None, "merger", 30)
    assert main is not None and merge is not None
    assert main.url == "http://host:8000/v1" and main.shown == "http://host:8000/v1"
    assert (merge.url, merge.served_model, merge.api_key_env) == (main.url, "merger", "SLMSQL_API_KEY")
    assert endpoints(None, None, None, None, None) == (None, None)
    main, merge = endpoints("http://a/v1", "gen", "https://b:9/v1/", None, None)
    assert merge is not None and (merge.url, merge.served_model, merge.api_key_env) == (
        "https://b:9/v1",
        None,
        "SLMSQL_MERGE_API_KEY",
    )
    assert public_url("https://k:secret@h/v1?token=x") == "https://h/v1"
    with pytest.raises(UserError, match="--endpoint must be an http"):
        Endpoint.parse("ftp://h/v1")


def test_concurrency_needs_an_endpoint(slmsql: Slmsql, tmp_path: Path) -> None:
    proc = slmsql(
        "eval", "-q", str(SPIDER / "dev.json"), "--db-dir", str(SPIDER / "database"), "-m", "x.gguf",
        "--concurrency", "4", timeout=TIMEOUT,
    )  # fmt: skip
    assert (
        proc.returncode == 2
        and "error: --concurrency above 1 needs a model served with --endpoint" in proc.stderr
    )
