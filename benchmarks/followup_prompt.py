"""A follow-up's prompt read with and without the earlier prompt in llama.cpp's cache (issue 29).

In `chat` (and `serve`) the context keeps the last prompt's KV cells, and a follow-up's prompt
(conversation.DEFAULT_RENDERING, `questions`) starts as the earlier one did: system prompt, task,
schema, then the question field, now holding the earlier questions before the new one. So the
follow-up should read only what comes after the shared prefix. For real SParC dev interactions
(their first two turns, on the Spider dev databases), in one process with one loaded model:

* cold: a fresh context, turn 2's follow-up prompt read whole;
* warm: turn 1's prompt (asked alone) read first, then turn 2's follow-up prompt;
* alone: turn 1's prompt, then turn 2 asked alone (what `chat --no-context` reads), for scale.

Each with value retrieval on (the default: a question's matched values reorder a column's
examples inside the schema, so the prompts can part there) and off (`--no-values`). One candidate,
16 new tokens, temperature 0, no merge, no disk prompt cache. Prints a markdown table and the
medians, then one JSON line per interaction and setting.

    python benchmarks/followup_prompt.py --model ~/.cache/slmsql/test-models/gemma-3-270m-q4_k_m.gguf
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slmsql_cli.config import AskConfig  # noqa: E402
from slmsql_cli.conversation import Turn  # noqa: E402
from slmsql_cli.database import open_database  # noqa: E402
from slmsql_cli.pipeline import Pipeline  # noqa: E402

DATA = REPO.parent / "shared" / "data"
GEMMA = Path.home() / ".cache" / "slmsql" / "test-models" / "gemma-3-270m-q4_k_m.gguf"


def interactions(data: Path, count: int) -> list[dict[str, Any]]:
    """`count` SParC dev interactions with at least two turns, one per database first."""
    rows = [
        r for r in json.loads((data / "sparc_dev" / "dev.json").read_text()) if len(r["interaction"]) >= 2
    ]
    chosen: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in rows:  # one per database, then more
        if row["database_id"] not in seen:
            chosen.append(row)
            seen.add(row["database_id"])
    chosen += [r for r in rows if r not in chosen]
    return chosen[:count]


def measure(pipeline: Pipeline, db: Any, first: Turn, second: str) -> dict[str, Any]:
    engine = pipeline.engine

    def read(question: str, turns: list[Turn]) -> dict[str, Any]:
        stats = pipeline.generate(db, question, turns=turns).stats
        return {
            "tokens": stats.prompt_tokens,
            "evaluated": stats.prompt_tokens_evaluated,
            "seconds": round(stats.prompt_seconds, 3),
        }

    engine.close_context()  # type: ignore[attr-defined]
    cold = read(second, [first])
    engine.close_context()  # type: ignore[attr-defined]
    read(first.question, [])
    warm = read(second, [first])
    engine.close_context()  # type: ignore[attr-defined]
    read(first.question, [])
    alone = read(second, [])
    return {"cold": cold, "warm": warm, "alone": alone}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(GEMMA))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--interactions", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    config = AskConfig(
        n=1, max_tokens=16, temperature=0.0, merge=False, prompt_cache=False, threads=args.threads
    )
    pipeline = Pipeline.load(args.model, config=config)
    spider = args.data / "spider_dev"
    rows: list[dict[str, Any]] = []
    with pipeline:
        for row in interactions(args.data, args.interactions):
            db_id = row["database_id"]
            db = open_database(spider / "database" / db_id / f"{db_id}.sqlite", spider / "tables.json", db_id)
            one, two = row["interaction"][:2]
            first = Turn(one["utterance"], one["query"])
            for values in (True, False):
                pipeline.config = replace(config, use_values=values)
                result = measure(pipeline, db, first, two["utterance"])
                rows.append({"db": db_id, "values": values, "follow_up": two["utterance"], **result})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    print(f"model {Path(args.model).name}, threads {pipeline.engine.threads}\n")
    print(
        "| db | values | follow-up | prompt tokens | warm: evaluated | warm s | cold s | alone: evaluated |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        w, c, a = r["warm"], r["cold"], r["alone"]
        print(
            f"| {r['db']} | {'on' if r['values'] else 'off'} | {r['follow_up'][:40]} | {w['tokens']} | "
            f"{w['evaluated']} ({w['evaluated'] / w['tokens']:.0%}) | {w['seconds']:.2f} | {c['seconds']:.2f} | "
            f"{a['evaluated']} |"
        )
    for values in (True, False):
        chosen = [r for r in rows if r["values"] == values]
        share = statistics.median(r["warm"]["evaluated"] / r["warm"]["tokens"] for r in chosen)
        warm = statistics.median(r["warm"]["seconds"] for r in chosen)
        cold = statistics.median(r["cold"]["seconds"] for r in chosen)
        print(
            f"\nvalues {'on' if values else 'off'}: median evaluated share {share:.0%}, "
            f"median prompt read {warm:.2f}s warm vs {cold:.2f}s cold ({cold / max(warm, 1e-9):.1f}x)"
        )
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
