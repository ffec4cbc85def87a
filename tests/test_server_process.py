"""`slmsql_cli.serve.process.ServerProcess`: the child-process server the web app's test and the
load benchmark start. Starting one for real with a model is in test_webapp.py; here, the start
failing says why, without a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmsql_cli.serve.process import ServerDidNotStart, ServerProcess, listening_url

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a CLI process start: several seconds on a busy machine
def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with pytest.raises(ServerDidNotStart, match="database not found"):
        ServerProcess(["--db", f"x={tmp_path / 'missing.sqlite'}"], log, cwd=REPO, start_timeout=120)
    assert "Traceback" not in log.read_text()


PLAIN = "slmsql serve: listening on http://127.0.0.1:8123 (1 database(s), model m.gguf); no token: loopback only\n"
JSON_LINE = (
    '{"time": 1.0, "event": "server", "message": "slmsql serve: listening on http://[::1]:8123 '
    '(1 database(s), model m.gguf); no token: loopback only"}\n'
)


def test_the_start_line_is_read_in_either_form() -> None:
    loading = "loading the model…\nloading model m…\n"
    assert listening_url(loading + PLAIN) == "http://127.0.0.1:8123"
    json_loading = '{"time": 0.5, "event": "server", "message": "loading the model…"}\n'
    assert listening_url(json_loading + JSON_LINE + '{"time": 2.0, "event": "server"') == "http://[::1]:8123"
    # not yet: the line is still being written (half a port), or not there at all
    assert listening_url(loading + PLAIN[:45]) is None
    assert listening_url(JSON_LINE[:-1]) is None
    assert listening_url(loading) is None
    # a request's line quoting those words is not the server's own
    forged = JSON_LINE.replace('"event": "server"', '"event": "request"')
    assert listening_url(forged) is None
    assert listening_url('path="/slmsql serve: listening on http://evil:1 (x"\n') is None
