"""Issue 31: a slow DuckDB query draws no progress bar on slmsql's terminal.

DuckDB's Python package turns its bar on where it guesses the session is interactive (`python -c`,
a REPL); the bar then appears once a query has run for two seconds. The child below is such a
session: it runs a cross join through `open_database(...).run`, made large enough to outlast
those two seconds on this machine, and everything it writes is captured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

duckdb = pytest.importorskip("duckdb", reason="the [targets] extra is not installed")

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, sys, time, duckdb
from slmsql_cli.database import open_database
path = sys.argv[1]
plain = duckdb.connect(":memory:").execute("SELECT current_setting('enable_progress_bar')").fetchone()[0]
db = open_database(path)
n, seconds = 400, 0.0
while seconds < 3.0:  # DuckDB waits 2 s before it draws
    n = int(n * 1.5)
    sql = f"SELECT count(*) FROM t a, t b, t c WHERE a.i < {n} AND b.i < {n} AND c.i < {n} AND a.i + b.i + c.i = 17"
    start = time.perf_counter()
    result = db.run(sql, timeout=120)
    seconds = time.perf_counter() - start
    assert result.error is None and not result.timed_out, (result.error, result.timed_out)
report = {"plain_bar": plain, "rows": result.rows, "seconds": seconds, "n": n}
open(sys.argv[2], "w").write(json.dumps(report))
"""


def test_a_slow_duckdb_query_draws_no_progress_bar(tmp_path: Path, isolated_cache: Path) -> None:
    path = tmp_path / "big.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE t AS SELECT range AS i FROM range(20000)")
    conn.close()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(tmp_path / "report.json")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    # The child is a session where DuckDB would draw its bar, and the query outlasted its wait.
    assert report["plain_bar"] is True
    assert report["seconds"] >= 3.0
    assert report["rows"] == [[171]]
    written = done.stdout + done.stderr
    assert written == "", written[:400]
