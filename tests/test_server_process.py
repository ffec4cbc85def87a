"""`slmsql_cli.serve.process.ServerProcess`: the child-process server the web app's test and the
load benchmark start. Starting one for real with a model is in test_webapp.py; here, the start
failing says why, without a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmsql_cli.serve.process import ServerDidNotStart, ServerProcess

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a CLI process start: several seconds on a busy machine
def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with pytest.raises(ServerDidNotStart, match="database not found"):
        ServerProcess(["--db", f"x={tmp_path / 'missing.sqlite'}"], log, cwd=REPO, start_timeout=120)
    assert "Traceback" not in log.read_text()
