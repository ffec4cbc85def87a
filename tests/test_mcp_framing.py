"""`serve --mcp`'s transport at the JSON-RPC 2.0 edges (issue 31): every line that is not a
message gets an error reply (never silence), ids that are not strings or integers are answered
with `id: null`, and a line over the size cap is dropped as it streams in, never held whole.

In process through `mcp_server.run_stdio` with a scripted model, and once as the real
`slmsql serve --mcp` process (descriptors 0 and 1 claimed, a 200 MB line through the pipe).
"""

from __future__ import annotations

import itertools
import json
import select
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="needs the [serve] extra")

import scripted_cli
from test_fuzz_edges import mcp_exchange

PING = b'{"jsonrpc": "2.0", "id": 99, "method": "ping"}'


@pytest.fixture()
def service(pets_db: Path, scripted_engine) -> Iterator[Any]:
    from test_serve_http import make_service

    scripted_engine([])
    svc = make_service(pets_db)
    try:
        yield svc
    finally:
        svc.close()


def by_id(replies: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {json.dumps(r.get("id")): r for r in replies}


@pytest.mark.parametrize("rid", ["{}", '{"a": 1}', "1.5", "1.0", "true", "false", "null", "[1]"])
def test_an_id_that_is_not_a_string_or_integer_gets_an_error_with_a_null_id(service: Any, rid: str) -> None:
    line = f'{{"jsonrpc": "2.0", "id": {rid}, "method": "ping"}}'.encode()
    replies = mcp_exchange(service, [line, PING])
    assert replies[0] == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": "Invalid Request: the id must be a string or an integer"},
    }
    assert replies[1] == {"jsonrpc": "2.0", "id": 99, "result": {}}  # still serving


@pytest.mark.parametrize(
    ("line", "rid"),
    [
        (b'"hello"', None),
        (b"null", None),
        (b"5", None),
        (b"[]", None),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', None),  # MCP has no batches
        (b'{"jsonrpc": "2.0", "id": 3, "method": "ping", "params": "x"}', 3),
        (b'{"jsonrpc": "2.0", "id": "a", "method": "ping", "params": [1]}', "a"),
        (b'{"jsonrpc": "2.0", "id": 4, "method": 7}', 4),
        (b'{"jsonrpc": "1.0", "id": 5, "method": "ping"}', 5),
        (b'{"id": 6, "method": "ping"}', 6),
        (b'{"jsonrpc": "2.0", "id": 8}', 8),
        (b'{"jsonrpc": "2.0", "id": 9, "result": {}, "error": {"code": 1, "message": "x"}}', 9),
        (b'{"jsonrpc": "2.0", "id": 10, "method": "ping", "params": {"q": "\\ud800"}}', 10),
        (b'{"jsonrpc": "2.0", "id": "\\udc00", "method": "ping"}', None),
        (b"[" * 100_000 + b"]" * 100_000, None),  # nested too deeply to read
    ],
)
def test_valid_json_that_is_not_a_request_gets_32600(service: Any, line: bytes, rid: Any) -> None:
    replies = mcp_exchange(service, [line, PING])
    assert replies[0]["id"] == rid and replies[0]["error"]["code"] == -32600, replies
    assert replies[1]["id"] == 99 and "result" in replies[1]


@pytest.mark.parametrize(
    "line", [b"{this is not json", b'{"id": NaN}', b"\xff\xfe{}", b'{"jsonrpc": "2.0"', b"1" * 5000]
)
def test_a_line_that_is_not_json_gets_32700(service: Any, line: bytes) -> None:
    replies = mcp_exchange(service, [line, b"", b"  \r", PING])  # blank lines are skipped
    assert replies == [
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}},
        {"jsonrpc": "2.0", "id": 99, "result": {}},
    ]


def test_a_line_over_the_cap_is_one_error_and_the_next_line_is_read(service: Any) -> None:
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "y" * 5000}}).encode()
    fits = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"x": "y" * 900}}).encode()
    replies = mcp_exchange(service, [big, fits, big + b"\r", PING], limit=1000)
    got = sorted((str(r["id"]), r.get("error", {}).get("code", 0)) for r in replies)  # any order
    assert got == [("2", 0), ("99", 0), ("None", -32600), ("None", -32600)]
    assert all("1,000-byte limit" in r["error"]["message"] for r in replies if "error" in r)


def test_a_300_mb_line_is_never_held_in_memory(service: Any) -> None:
    """The issue's 300 MB message took the server to 3.35 GB; read in chunks, it costs a chunk."""
    import tracemalloc

    chunk = b"x" * (1024 * 1024)
    line = itertools.chain((chunk for _ in range(300)), [b"\n" + PING + b"\n"])
    tracemalloc.start()
    try:
        replies = mcp_exchange(service, line, raw=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert replies[0]["id"] is None and replies[0]["error"]["code"] == -32600
    assert replies[1] == {"jsonrpc": "2.0", "id": 99, "result": {}}
    assert peak < 16 * 1024**2, f"peak {peak / 1024**2:.0f} MB"


# ---- the real process: descriptors 0 and 1 claimed, a 200 MB line through the pipe ---------------


def test_the_real_mcp_server_survives_a_200_mb_line_within_its_memory(pets_db: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        scripted_cli.argv(
            "SELECT count(*) FROM pets", "serve", "--mcp", "--db", f"pets={pets_db}", "-m", "scripted"
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=scripted_cli.REPO,
        env=scripted_cli.environ({"SLMSQL_CACHE_DIR": str(tmp_path / "cache")}),
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

    def reply() -> dict[str, Any]:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "no reply"
        return json.loads(proc.stdout.readline())

    def send(data: bytes) -> None:
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.flush()

    try:
        send(PING + b"\n")
        assert reply() == {"jsonrpc": "2.0", "id": 99, "result": {}}
        before = _peak_rss(proc.pid)
        chunk = b"y" * (1024 * 1024)
        writer = threading.Thread(
            target=lambda: [send(chunk) for _ in range(200)] and send(b"\n" + PING + b"\n")
        )
        writer.start()
        first = reply()
        writer.join(120)
        assert first["id"] is None and first["error"]["code"] == -32600, first
        assert reply()["id"] == 99
        grown = _peak_rss(proc.pid) - before
        assert grown < 64 * 1024**2, f"the server grew by {grown / 1024**2:.0f} MB"
        send(b'{"jsonrpc": "2.0", "id": {}, "method": "ping"}\n')
        assert reply()["id"] is None
    finally:
        proc.stdin.close()
        proc.wait(60)
    stderr = proc.stderr.read().decode()
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")
