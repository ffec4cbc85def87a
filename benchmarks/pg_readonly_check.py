"""What PostgreSQL's read-only rule costs per query: the statement parsed for the functions it calls
and those looked up in pg_proc (`postgres_target._refusal`), against the same query without it.

Runs on a throwaway server started as the tests start it (tests/pg_server.py).

  python benchmarks/pg_readonly_check.py --queries 300

Prints the median milliseconds of one `PostgresTarget.run`, with and without the check.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

SQL = "SELECT count(*), max(a) FROM t WHERE a > 10"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()

    import pg_server
    import psycopg

    from slmsql_cli.targets import postgres_target

    server = pg_server.start()
    if isinstance(server, str):
        sys.exit(f"PostgreSQL cannot start here: {server}")
    os.environ["PGPASSWORD"] = pg_server.PASSWORD
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (a integer)")
            conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
        target = postgres_target.PostgresTarget(server.url())

        def median_ms() -> float:
            times = []
            for _ in range(args.queries):
                start = time.perf_counter()
                assert target.run(SQL, 5, 100).ok
                times.append(time.perf_counter() - start)
            return 1000 * statistics.median(times)

        checked = median_ms()
        rule = postgres_target._refusal
        postgres_target._refusal = lambda _cursor, _sql: None  # type: ignore[assignment]
        unchecked = median_ms()
        postgres_target._refusal = rule
        target.close()
    finally:
        server.stop()
    print(f"median per query: {checked:.2f} ms with the volatile-function check, {unchecked:.2f} ms without")


if __name__ == "__main__":
    main()
