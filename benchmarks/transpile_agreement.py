"""How often SQLite SQL, transpiled, gives the SQLite result in DuckDB and PostgreSQL.

For each benchmark, `slmsql eval --engine duckdb|postgres` scores the gold SQL as the prediction:
the gold runs on the SQLite file, the same SQL transpiled (slmsql_cli/transpile.py) runs on the
database copied into the engine. Prints a markdown table, then every question that disagrees.

    python benchmarks/transpile_agreement.py --data ../shared/data

PostgreSQL: the server of --pg-url / SLMSQL_PG_URL, else a throwaway server started for the run
(tests/pg_server.py: the Debian postgresql binaries). docs/TRANSPILE.md holds the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = {  # name: (questions, databases, gold field)
    "spider": ("spider_dev/dev.json", "spider_dev/database", "query"),
    "bird": ("bird_dev/dev.json", "bird_dev/dev_databases", "SQL"),
}


def run_eval(data: Path, name: str, engine: str, pg_url: str | None, work: Path) -> list[dict]:
    questions, databases, gold_field = BENCHMARKS[name]
    gold = work / f"{name}-gold.json"  # a JSON list: gold SQL may span lines
    items = json.loads((data / questions).read_text(encoding="utf-8"))
    gold.write_text(json.dumps([i[gold_field] for i in items]), encoding="utf-8")
    out = work / f"{name}-{engine}.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if pg_url:
        env["SLMSQL_PG_URL"] = pg_url
    command = [sys.executable, "-m", "slmsql_cli", "eval", "-q", str(data / questions)]
    command += ["--db-dir", str(data / databases), "--predictions", str(gold), "--engine", engine]
    command += ["--out", str(out), "--json"]
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--pg-url", default=os.environ.get("SLMSQL_PG_URL"))
    parser.add_argument("--engines", default="duckdb,postgres")
    args = parser.parse_args()
    engines = args.engines.split(",")
    with contextlib.ExitStack() as stack:
        pg_url = args.pg_url
        if "postgres" in engines and not pg_url:
            sys.path.insert(0, str(REPO / "tests"))
            import pg_server

            server = pg_server.start()
            if isinstance(server, str):
                sys.exit(f"no PostgreSQL server: {server} (pass --pg-url)")
            stack.callback(server.stop)
            pg_url = server.url()
            os.environ["PGPASSWORD"] = pg_server.PASSWORD  # the libpq way; never in a URL
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        results = {(n, e): run_eval(args.data, n, e, pg_url, work) for n in BENCHMARKS for e in engines}
    print("| benchmark | engine | questions | same result | agreement |")
    print("|---|---|---:|---:|---:|")
    for (name, engine), records in results.items():
        same = sum(bool(r["correct"]) for r in records)
        print(f"| {name} dev | {engine} | {len(records)} | {same} | {100 * same / len(records):.2f}% |")
    for (name, engine), records in results.items():
        for r in records:
            if not r["correct"]:
                why = r["error"] or r["gold_error"] or "different rows"
                print(f"\n{name} #{r['index']} on {engine}: {why}\n    {r['gold']}")


if __name__ == "__main__":
    main()
