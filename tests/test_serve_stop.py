"""`slmsql serve` stopping (issue 31): after SIGTERM the server printed 'stopped', logged 63
CancelledError tracebacks and ran the abandoned queries for ~6 minutes.

Now SIGTERM cancels every running query on every engine (`WorkerPool.cancel_all`: SQLite workers
killed, DuckDB interrupted, PostgreSQL cancelled), each client gets a 503 in JSON, and the process
exits 0 within --request-timeout with no traceback; with --json-logs uvicorn's own lines are JSON.
The server runs as a real process with the scripted model (`tests/scripted_cli.py`).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="needs the [serve] extra")
pytest.importorskip("fastapi", reason="needs the [serve] extra")

import scripted_cli

from slmsql_cli.database import open_database
from slmsql_cli.serve.process import listening_url
from slmsql_cli.targets import worker

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


class Server:
    """`serve --http` with the scripted model (every completion writes `sql`) as a child process."""

    def __init__(self, folder: Path, sql: str, *args: str) -> None:
        self.log_path = folder / f"serve-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("w")
        argv = scripted_cli.argv(sql, "serve", "--http", "--port", "0", "-m", "scripted", *args)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            cwd=scripted_cli.REPO,
            env=scripted_cli.environ({"SLMSQL_CACHE_DIR": str(folder / "cache")}),
        )
        deadline = time.monotonic() + 120
        while not (url := listening_url(self.log())):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log()
            time.sleep(0.1)
        self.url = url

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> set[int]:
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                found.add(int(stat.parent.name))
        return found

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture()
def folder(pets_db: Path) -> Path:
    return pets_db.parent


def test_sigterm_cancels_running_queries_and_exits_within_the_request_timeout(folder: Path) -> None:
    db = folder / "pets.sqlite"
    server = Server(
        folder,
        ENDLESS,
        *("--db", f"pets={db}", "-n", "2", "--no-merge", "--timeout", "300"),
        *("--request-timeout", "30", "--max-queries", "4", "--json-logs"),
    )
    replies: list[httpx.Response] = []

    def post(path: str, body: dict[str, Any]) -> None:
        replies.append(httpx.post(server.url + path, json=body, timeout=120))

    clients = [
        threading.Thread(target=post, args=("/v1/sql", {"database": "pets", "sql": ENDLESS}))
        for _ in range(6)
    ]
    clients.append(
        threading.Thread(target=post, args=("/v1/ask", {"database": "pets", "question": "How many?"}))
    )
    try:
        for c in clients:
            c.start()
        deadline = time.monotonic() + 60
        while len(server.children()) < 4 and time.monotonic() < deadline:  # the query workers run
            time.sleep(0.1)
        workers = server.children()
        assert len(workers) >= 4, server.log()
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(60)
        took = time.monotonic() - start
        for c in clients:
            c.join(30)
    finally:
        server.close()
    log = server.log()
    assert code == 0 and took < 20, (code, took, log)  # the grace (5 s), then everything stops
    assert len(replies) == 7 and all(r.status_code == 503 for r in replies), [r.text for r in replies]
    assert all("shutting down" in r.json()["error"] for r in replies)
    assert "Traceback" not in log and "CancelledError" not in log, log
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert sum(r.get("status") == 503 for r in records) == 7, log
    time.sleep(1)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists() and _alive(pid)], "workers left"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_json_logs_are_json_for_uvicorns_own_lines_and_the_commands_too(folder: Path) -> None:
    db = folder / "pets.sqlite"
    server = Server(folder, "SELECT 1", "--db", f"pets={db}", "--json-logs")
    try:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port))) as sock:  # not HTTP: uvicorn warns
            sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
            sock.settimeout(10)
            sock.recv(1024)
        assert httpx.get(server.url + "/healthz").status_code == 200
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(60) == 0
    finally:
        server.close()
    records = [json.loads(line) for line in server.log().splitlines()]  # every line: JSON
    said = [r["message"] for r in records if r.get("event") == "server"]  # the command's own lines
    assert said[:2] == ["loading the model…", "loading model scripted…"], said
    assert said[2].startswith(f"slmsql serve: listening on {server.url} (1 database(s), model scripted.gguf)")
    assert said[3:] == ["slmsql serve: stopped"] and records[-1]["message"] == said[-1], records
    warned = [r for r in records if r.get("event") == "log"]
    assert warned and warned[0]["logger"].startswith("uvicorn") and warned[0]["level"] == "warning", records


# ---- the pool's cancel_all, on each engine ---------------------------------------------------------


def _run_then_cancel(database: Any, sql: str) -> Any:
    """`sql` run through the one door in a thread, cancel_all a second later: its result."""
    pool = worker.default_pool()
    done: list[Any] = []
    runner = threading.Thread(target=lambda: done.append(database.run(sql, timeout=120)))
    runner.start()
    time.sleep(1.5)
    start = time.monotonic()
    pool.cancel_all()
    try:
        runner.join(20)
        assert done, "the query was not stopped"
        assert time.monotonic() - start < 10
        with pytest.raises(worker.PoolStopped):  # and no new one starts
            database.run("SELECT 1", timeout=10)
    finally:
        pool.limit(None)  # takes calls again
    assert database.run("SELECT 1", timeout=10).rows == [(1,)]
    return done[0]


def test_cancel_all_kills_a_running_sqlite_query(pets_db: Path) -> None:
    result = _run_then_cancel(open_database(pets_db), ENDLESS)
    assert result.error or result.timed_out


def test_cancel_all_interrupts_a_running_duckdb_query(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb", reason="the [targets] extra is not installed")
    path = tmp_path / "big.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE t AS SELECT 1 AS x")
    conn.close()
    result = _run_then_cancel(open_database(str(path)), ENDLESS)
    assert result.error and "nterrupt" in result.error, result


def test_cancel_all_cancels_a_running_postgres_query(
    pg: Any, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("psycopg", reason="the [targets] extra is not installed")
    import pg_server
    from test_one_door import _connect, _fresh_database

    monkeypatch.setenv("PGPASSWORD", pg_server.PASSWORD)
    name = _fresh_database(pg, request, pg_server.USER)
    with _connect(pg, name) as conn:
        conn.execute("CREATE TABLE t (x integer)")
    result = _run_then_cancel(open_database(pg.url(name)), ENDLESS)
    assert result.error or result.timed_out, result


@pytest.fixture(autouse=True)
def _pool_open(isolated_cache: Path) -> Iterator[None]:
    """The pool is process-wide: leave it taking calls for the next test, whatever happened."""
    yield
    worker.default_pool().limit(None)
