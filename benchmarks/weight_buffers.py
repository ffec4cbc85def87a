"""`slmsql bench -n 1,8` under each weight placement (SLMSQL_WEIGHT_BUFFERS), for the AMX fix (issue 17).

The placements an AMX machine can choose between, all safe:

  guard  what slmsql does when llama.cpp offers AMX: no extra buffer types, CPU_REPACK put back
         per weight (the chosen fix)
  plain  no extra buffer types at all (use_extra_bufts = False: the simplest way around the crash)
  llama  llama.cpp's own placement; on a build without AMX (scripts/setup.sh builds one) this is
         what `auto` does everywhere, and it is safe

for the Qwen2.5-Coder-0.5B shape (benchmarks/make_shaped_model.py, then `slmsql export --quant`)
in Q8_0, Q4_K_M and IQ4_NL. Runs are interleaved (every placement once per round) so that drift
in the machine's load falls on all of them alike; each cell is the median over --repeat rounds.
Prints a Markdown table for docs/PERFORMANCE.md, with the machine's llama.cpp features.

  python benchmarks/weight_buffers.py --models models/qwen25-0.5b-shape-{q8_0,q4_k_m,iq4_nl}.gguf
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("guard", "plain", "llama")


def bench(model: Path, mode: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    cmd = [sys.executable, "-m", "slmsql_cli", "bench", "--db", str(args.db), "-m", str(model)]
    cmd += ["-n", args.n, "--max-tokens", str(args.max_tokens), "--threads", str(args.threads)]
    env = dict(os.environ, SLMSQL_WEIGHT_BUFFERS=mode)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, cwd=REPO)
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    return {str(r["n"]): r for r in doc["results"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", type=Path, required=True)
    ap.add_argument("--db", type=Path, default=REPO / "slmsql_cli" / "data" / "bookshop.sqlite")
    ap.add_argument("-n", default="1,8")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    from slmsql_cli import _internals

    info = _internals.build_info()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cells: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    for _ in range(args.repeat):
        for model in args.models:
            for mode in MODES:
                for n, row in bench(model, mode, args).items():
                    cells.setdefault((model.name, mode, n), []).append(row)
    print(f"llama.cpp: {info.describe()}; {args.threads} threads; started {started}")
    print(f"median of {args.repeat} interleaved runs; --max-tokens {args.max_tokens}; {args.db.name}\n")
    print("| model | placement | N | prompt tok/s | generated tok/s | s/question |")
    print("|---|---|---|---|---|---|")
    for (model_name, mode, n), rows in cells.items():

        def med(key: str, rows: list[dict[str, float]] = rows) -> float:
            return statistics.median(r[key] for r in rows)

        print(
            f"| {model_name} | {mode} | {n} | {med('prompt_tokens_per_s'):.1f} | "
            f"{med('generated_tokens_per_s'):.1f} | {med('seconds_per_question'):.2f} |"
        )


if __name__ == "__main__":
    main()
