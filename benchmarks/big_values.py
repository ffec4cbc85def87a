"""Serve's memory for huge values: the issue 31 queries through POST /v1/sql on a real
`slmsql serve --http`, on a DuckDB file and on PostgreSQL.

Each query's row is over the 64 MB result cap: `SELECT repeat('x', 600000000)` (one 600 MB value)
and the same size split over three columns (DuckDB) or two (PostgreSQL), as in the issue. The
resident memory of serve's process tree (serve and any query workers) is sampled every 20 ms;
the table shows it before each request, its peak during the request, and what the request
answered, and whether the peak stays under the issue's bound, the model's size + 512 MB. The
server runs with the test model (no question is asked) and --timeout 120, so each query finishes
instead of being stopped at the deadline.

  python benchmarks/big_values.py --mb 600

PostgreSQL is the server at --pg-url (or $SLMSQL_PG_URL, the password from PGPASSWORD), else a
throwaway server started as the tests start it (tests/pg_server.py). docs/PERFORMANCE.md holds
the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
from slmsql_cli.serve.process import ServerProcess  # noqa: E402

SAMPLE_SECONDS = 0.02


def tree_rss(process: psutil.Process) -> int:
    """Bytes resident in `process` and its children (serve's query workers)."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


@contextlib.contextmanager
def peak_of(process: psutil.Process) -> Iterator[list[int]]:
    """[before, peak] of the tree's RSS while the block runs (sampled every SAMPLE_SECONDS)."""
    seen = [tree_rss(process), 0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen[1] = max(seen[1], tree_rss(process))
            time.sleep(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        stop.set()
        sampler.join()


def queries(engine: str, size: int) -> list[tuple[str, str]]:
    """(label, SQL) of the issue's shapes at `size` bytes a row, in the engine's SQL."""
    one = f"SELECT repeat('x', {size})"
    parts = 3 if engine == "duckdb" else 2
    split = ", ".join(f"repeat('{c}', {size // parts})" for c in "xyz"[:parts])
    return [("1 value", one), (f"{parts} columns", f"SELECT {split}")]


def answer(doc: dict) -> str:
    if doc.get("error"):
        return "error: " + str(doc["error"])[:60]
    return f"{len(doc.get('rows') or [])} rows, truncated={doc.get('truncated')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=600, help="bytes of the row, in MB (default 600)")
    parser.add_argument("--pg-url", default=os.environ.get("SLMSQL_PG_URL"))
    parser.add_argument("--model", help="a .gguf (default: the test suite's Gemma 3 270M)")
    args = parser.parse_args()
    size = args.mb * 1_000_000

    import duckdb
    from serve_load import test_model

    model = args.model or str(test_model())
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="slmsql-big-")))
        duck = tmp / "shop.duckdb"
        conn = duckdb.connect(str(duck))
        conn.execute("CREATE TABLE t AS SELECT 1 AS a")
        conn.close()
        pg_url = args.pg_url
        if not pg_url:
            import pg_server

            server = pg_server.start()
            if isinstance(server, str):
                raise SystemExit(f"no PostgreSQL: {server} (or pass --pg-url)")
            stack.callback(server.stop)
            os.environ["PGPASSWORD"] = pg_server.PASSWORD
            pg_url = server.url()
            import psycopg

            with psycopg.connect(pg_url, autocommit=True) as pg_conn:
                pg_conn.execute("CREATE TABLE IF NOT EXISTS t AS SELECT 1 AS a")
        serve = ServerProcess(
            ["--db", f"duckdb={duck}", "--db", f"postgres={pg_url}", "--model", model, "--timeout", "120"],
            tmp / "serve.log",
            cwd=REPO,
            env={"SLMSQL_CACHE_DIR": str(tmp / "cache")},
        )
        stack.callback(serve.stop)
        process = psutil.Process(serve.pid)
        bound = Path(model).stat().st_size / 2**20 + 512  # the issue's: model + 512 MB
        print(f"model {Path(model).name}: {bound - 512:.0f} MiB; serve's bound: {bound:.0f} MiB")
        print(
            f"| {args.mb} MB a row | query | answer | seconds | serve before | serve peak | growth | under the bound |"
        )
        print("|---|---|---|---:|---:|---:|---:|---|")
        with httpx.Client(timeout=600) as client:
            for engine in ("duckdb", "postgres"):
                for label, sql in queries(engine, size):
                    time.sleep(1)  # let the previous request's memory settle
                    start = time.monotonic()
                    with peak_of(process) as seen:
                        doc = client.post(f"{serve.url}/v1/sql", json={"database": engine, "sql": sql}).json()
                    before, peak = seen[0] / 2**20, seen[1] / 2**20
                    print(
                        f"| {engine} | {label} | {answer(doc)} | {time.monotonic() - start:.1f} "
                        f"| {before:.0f} MiB | {peak:.0f} MiB | {peak - before:+.0f} MiB "
                        f"| {'yes' if peak < bound else 'NO'} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
