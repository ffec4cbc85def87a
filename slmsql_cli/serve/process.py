"""`slmsql serve --http` as a child process: for scripts, notebooks, tests and benchmarks that
want a real server without knowing a free port in advance.

The server is started with `--port 0` (the system picks a free loopback port) unless the caller
passes `--port`, and its URL is read from its start line on stderr, which goes to a log file:
plain words, or a JSON line with `--json-logs` (`listening_url` reads either).
`stop()` sends SIGTERM, the signal the server finishes cleanly on, and returns the exit code.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

_LISTENING = re.compile(r"slmsql serve: listening on (http://\S+) ")


def listening_url(log: str) -> str | None:
    """The URL of the server's start line in `log` (its stderr so far), or None before it:
    `slmsql serve: listening on URL (…` as words, or the same words as the "message" of a
    --json-logs line (event "server"). Only whole lines count: a line still being written could
    hold half a port number."""
    for line in log.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            line = str(record.get("message", "")) if record.get("event") == "server" else ""
        if found := _LISTENING.match(line):
            return found.group(1)
    return None


class ServerDidNotStart(RuntimeError):
    pass


class ServerProcess:
    """`python -m slmsql_cli serve --http ARGS…`; `url` once it listens. A context manager."""

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        start_timeout: float = 300.0,
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        port = [] if "--port" in args else ["--port", "0"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slmsql_cli", "serve", "--http", *port, *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + start_timeout
        while not (url := listening_url(self.log())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServerDidNotStart(f"slmsql serve did not start:\n{self.log()}")
            time.sleep(0.2)
        self.url = url

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """The --json-logs lines, one JSON object each: a request, the server's own lines (event
        "server"), its libraries' (event "log")."""
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code (0 when the server stopped cleanly); killed after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
