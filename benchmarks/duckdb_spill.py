"""Where a DuckDB query that outgrows its memory limit goes: beside the file (DuckDB's default,
even read-only), into a private folder with a size cap, or nowhere (spilling off: what
`duckdb_target` does).

A GROUP BY over --rows distinct strings under a --memory limit runs in a child process per
setting, on a read-only connection as the target opens it. The table shows how it ended, how
long it took, the child's peak RSS, the most bytes the temporary folder held (sampled every
20 ms) and what was left beside the database afterwards; last, what a process killed mid-query
(a crash, the OOM killer) leaves beside the file under DuckDB's default.

  python benchmarks/duckdb_spill.py --rows 20000000 --memory 256MB

docs/PERFORMANCE.md holds the figures and the choice they led to.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

QUERY = "SELECT s, count(*) FROM big GROUP BY s ORDER BY 2 DESC, 1 LIMIT 3"
CHILD = """
import json, resource, sys, time, duckdb
path, config = sys.argv[1], json.loads(sys.argv[2])
conn = duckdb.connect(path, read_only=True, config={"enable_external_access": False, **config})
conn.execute("SET enable_progress_bar = false")
start = time.perf_counter()
try:
    conn.execute(sys.argv[3]).fetchall()
    outcome = "finished"
except duckdb.Error as exc:
    outcome = str(exc).splitlines()[0][:60]
seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"outcome": outcome, "seconds": seconds, "rss": rss}))
"""


def folder_bytes(folder: Path) -> int:
    try:
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    except OSError:
        return 0


def run(path: Path, config: dict, watch: Path) -> dict:
    """The child's report, and the most bytes `watch` held while it ran."""
    most = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            most[0] = max(most[0], folder_bytes(watch))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), json.dumps(config), QUERY],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            return {
                "outcome": out.stderr.strip().splitlines()[-1][:60],
                "seconds": 0.0,
                "rss": 0,
                "temp": most[0],
            }
    finally:
        stop.set()
        sampler.join()
    return {**json.loads(out.stdout.splitlines()[-1]), "temp": most[0]}


def killed(path: Path, config: dict, watch: Path) -> int:
    """Bytes left in `watch` after the child is killed (SIGKILL: a crash, the OOM killer) once
    it has spilled 500 MB."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), json.dumps(config), QUERY], stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while folder_bytes(watch) < 500 * 2**20 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.kill()
    child.wait()
    return folder_bytes(watch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--memory", default="256MB", help="DuckDB's memory_limit for the query")
    parser.add_argument("--cap", default="1GB", help="max_temp_directory_size of the private folder")
    args = parser.parse_args()

    import duckdb

    with tempfile.TemporaryDirectory(prefix="slmsql-spill-") as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        path = folder / "shop.duckdb"
        conn = duckdb.connect(str(path))
        conn.execute(f"CREATE TABLE big AS SELECT md5(i::VARCHAR) AS s FROM range({args.rows}) r(i)")
        conn.close()
        private = Path(tmp) / "cache" / "duckdb-tmp"
        private.parent.mkdir(mode=0o700)
        settings = {
            "beside the file (DuckDB's default)": ({}, folder / "shop.duckdb.tmp"),
            f"private folder, {args.cap} cap": (
                {"temp_directory": str(private), "max_temp_directory_size": args.cap},
                private,
            ),
            "spilling off (slmsql)": ({"temp_directory": ""}, folder / "shop.duckdb.tmp"),
        }
        print(f"{args.rows:,} distinct strings, memory_limit {args.memory}: `{QUERY}`\n")
        print("| temporary files | outcome | seconds | peak RSS | temp folder peak | left beside the file |")
        print("|---|---|---:|---:|---:|---|")
        for label, (config, watch) in settings.items():
            report = run(path, {"memory_limit": args.memory, **config}, watch)
            left = sorted(p.name for p in folder.iterdir() if p.name != "shop.duckdb") or ["nothing"]
            print(
                f"| {label} | {report['outcome']} | {report['seconds']:.1f} | {report['rss'] / 2**20:.0f} MiB "
                f"| {report['temp'] / 2**20:.0f} MiB | {', '.join(left)} |",
                flush=True,
            )
        config, watch = settings["beside the file (DuckDB's default)"]
        left_bytes = killed(path, {"memory_limit": args.memory, **config}, watch)
        print(
            f"\nDuckDB's default, the process killed mid-query: {left_bytes / 2**20:.0f} MiB left in {watch.name}/"
        )


if __name__ == "__main__":
    main()
