"""`ask` on a 300-table database against the same question on a 10-table one (issue 9, item 3).

Both databases come from one generator: 60 business entities (customer, invoice, product, …),
each with five tables (`customer`, `customer_line`, `customer_history`, `customer_status`,
`customer_note`), a few typed columns, foreign keys to the entity's own table and to an earlier
entity, and three rows each. The 10-table database holds the first two entities (customer and
invoice), the 300-table one all sixty. The question names those two entities, so both prompts
should show about the same tables: the 300-table prompt is pruned to the question's tables by the
prompt budget, and the figure measures what that costs (building the prompt: serializing,
counting tokens, choosing tables) next to a database that fits.

Each run is a new `slmsql ask -n 1 --max-tokens 16 --json` process (model load included); the
table shows the median of --repeat runs, the two databases taking turns.
Target (issue 9): 300 tables at most 2x the 10-table time.

  python benchmarks/make_shaped_model.py        # once: models/qwen25-0.5b-shape-q4_k_m.gguf
  python benchmarks/large_schema.py --model models/qwen25-0.5b-shape-q4_k_m.gguf
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUESTION = "How many invoices does each customer have, and what is their total amount?"

ENTITIES = (
    "customer invoice product supplier warehouse shipment employee department payment purchase "
    "contract project task ticket campaign lead account budget asset vehicle route driver "
    "store region promotion coupon review rating category brand manufacturer part batch "
    "inspection defect repair technician schedule shift timesheet payroll benefit training "
    "course student teacher classroom exam grade library book author publisher loan member "
    "subscription plan device sensor vendor"
).split()
VARIANTS = ("", "_line", "_history", "_status", "_note")
EXTRA_COLUMNS = (
    ("amount", "REAL", lambda i: round(10.5 * i, 2)),
    ("created_at", "TEXT", lambda i: f"2024-0{1 + i % 9}-1{i % 10}"),
    ("status", "TEXT", lambda i: ("open", "closed", "pending")[i % 3]),
    ("quantity", "INTEGER", lambda i: i * 3),
    ("code", "TEXT", lambda i: f"C-{1000 + i}"),
    ("description", "TEXT", lambda i: f"entry number {i}"),
)


def build(path: Path, entities: int) -> Path:
    """A SQLite file with `entities` x 5 tables (see the module docstring)."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    for e, entity in enumerate(ENTITIES[:entities]):
        earlier = ENTITIES[e - 1] if e else None
        for v, variant in enumerate(VARIANTS):
            name = entity + variant
            extras = [EXTRA_COLUMNS[(e + v + k) % len(EXTRA_COLUMNS)] for k in range(4)]
            cols = [f"{name}_id INTEGER PRIMARY KEY", "name TEXT"]
            cols += [f"{c} {t}" for c, t, _ in extras]
            fks = []
            if variant:
                cols.append(f"{entity}_id INTEGER")
                fks.append(f"FOREIGN KEY ({entity}_id) REFERENCES {entity} ({entity}_id)")
            elif earlier:
                cols.append(f"{earlier}_id INTEGER")
                fks.append(f"FOREIGN KEY ({earlier}_id) REFERENCES {earlier} ({earlier}_id)")
            conn.execute(f"CREATE TABLE {name} ({', '.join(cols + fks)})")
            for i in range(1, 4):
                row = [i, f"{name.replace('_', ' ')} {i}"] + [f(i) for _, _, f in extras]
                if variant or earlier:
                    row.append(1 + i % 3)
                conn.execute(f"INSERT INTO {name} VALUES ({', '.join('?' * len(row))})", row)
    conn.commit()
    conn.close()
    return path


def ask(model: str, db: Path, cache: Path, threads: int | None) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "slmsql_cli", "ask", "--db", str(db), "-m", model]
    # --no-prompt-cache: every run evaluates its whole prompt, as a first question on a database does.
    cmd += ["-n", "1", "--max-tokens", "16", "--json", "--no-prompt-cache", QUESTION]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "SLMSQL_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"ask failed ({proc.returncode}): {proc.stderr.strip()}")
    return seconds, json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "models" / "qwen25-0.5b-shape-q4_k_m.gguf"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cache = folder / "cache"
        dbs = {
            entities * 5: build(folder / f"synthetic_{entities * 5}.sqlite", entities)
            for entities in (2, len(ENTITIES))
        }
        for db in dbs.values():
            ask(args.model, db, cache, args.threads)  # warm: schema and value caches, page cache
        runs: dict[int, list[tuple[float, dict]]] = {tables: [] for tables in dbs}
        for _ in range(args.repeat):  # interleaved, so that a change in the machine's load hits both
            for tables, db in dbs.items():
                runs[tables].append(ask(args.model, db, cache, args.threads))
        rows = []
        for tables, results in runs.items():
            seconds = statistics.median(s for s, _ in results)
            doc = results[0][1]
            pruned = doc["schema_pruned"]
            kept = f"{pruned['kept_tables']} of {pruned['total_tables']}" if pruned else f"all {tables}"
            build_s = statistics.median(d["timings"].get("prompt", 0.0) for _, d in results)
            rows.append((tables, kept, doc["generation"]["prompt_tokens"], build_s, seconds))
    base = rows[0][4]
    print(f"model: {Path(args.model).name}; question: {QUESTION!r}; median of {args.repeat} runs\n")
    print(
        "| tables | tables in the prompt | prompt tokens | prompt build s | ask s (whole process) | vs 10 tables |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for tables, kept, tokens, build_s, seconds in rows:
        print(f"| {tables} | {kept} | {tokens} | {build_s:.3f} | {seconds:.1f} | {seconds / base:.2f}x |")


if __name__ == "__main__":
    main()
