"""`slmsql serve --http` as a child process: for scripts, notebooks, tests and benchmarks that
want a real server without knowing a free port in advance.

The server is started with `--port 0` (the system picks a free loopback port) unless the caller
passes `--port`, and its URL is read from its start line on stderr, which goes to a log file.
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

_LISTENING = re.compile(r"listening on (http://\S+)")


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
        while not (found := _LISTENING.search(self.log())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServerDidNotStart(f"slmsql serve did not start:\n{self.log()}")
            time.sleep(0.2)
        self.url = found.group(1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """The --json-logs lines: one JSON object per request."""
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
