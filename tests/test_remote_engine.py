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
    """A small OpenAI-shaped server: GET /v1/models lists one model; each POST /v1/completions
    takes the next scripted reply: ("status", code), ("hang", seconds), ("garbage",) or ("ok", text)."""

    def __init__(self, script: list[tuple[Any, ...]]) -> None:
        self.script = list(script)
        self.posts = 0
        self.headers: list[str] = []
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
                self._send(200, json.dumps({"data": [{"id": "stand-in"}]}).encode())

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

    def start(script: list[tuple[Any, ...]]) -> StandIn:
        servers.append(StandIn(script))
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


# ---- option plumbing --------------------------------------------------------------------------


def test_endpoints_normalize_and_never_keep_credentials() -> None:
    main, merge = endpoints("http://user:pw@host:8000", None, None, "merger", 30)
    assert main is not None and merge is not None
    assert main.url == "http://user:pw@host:8000/v1" and main.shown == "http://host:8000/v1"
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
