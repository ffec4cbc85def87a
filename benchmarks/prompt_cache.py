"""The on-disk prompt cache across processes: a first `ask`, then a different question in a new process.

For each database and each pair of real questions (Chinook's questions.json; BIRD dev's
student_club questions with their evidence), with value retrieval on, in a fresh cache folder:

1. `slmsql ask Q1` fills the cache (a new process);
2. `slmsql ask Q2` in another new process: how many of its prompt tokens it evaluated;
3. `slmsql ask Q2 --no-prompt-cache`: the same question without the cache, for the time and to
   check that the candidates (temperature 0) are identical.

Prints a markdown table, then one JSON line per pair. Target (issue 9): the second ask evaluates
at most half of its prompt tokens.

    python benchmarks/prompt_cache.py --model ~/.cache/slmsql/test-models/gemma-3-270m-q4_k_m.gguf
    python benchmarks/prompt_cache.py --model models/qwen25-0.5b-shape-q4_k_m.gguf --pairs 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def chinook_pairs(data: Path, pairs: int) -> tuple[Path, list[tuple[tuple[str, str], tuple[str, str]]]]:
    rows = json.loads((data / "chinook" / "questions.json").read_text())
    # questions come in pairs of paraphrases: take one of each, then pair neighbours
    questions = [(r["question"], "") for r in rows[::2]]
    return data / "chinook" / "Chinook_Sqlite.sqlite", _pairs(questions, pairs)


def student_club_pairs(data: Path, pairs: int) -> tuple[Path, list[tuple[tuple[str, str], tuple[str, str]]]]:
    rows = [
        r for r in json.loads((data / "bird_dev" / "dev.json").read_text()) if r["db_id"] == "student_club"
    ]
    questions = [(r["question"], r.get("evidence", "")) for r in rows]
    db = data / "bird_dev" / "dev_databases" / "student_club" / "student_club.sqlite"
    return db, _pairs(questions, pairs)


def _pairs(questions: list[tuple[str, str]], pairs: int) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    step = max(len(questions) // (pairs + 1), 2)  # spread over the file, not only its first rows
    return [(questions[i * step], questions[i * step + 1]) for i in range(pairs)]


def ask(
    db: Path, model: str, question: tuple[str, str], cache: Path, threads: int | None, *extra: str
) -> tuple[dict[str, Any], float]:
    args = [sys.executable, "-m", "slmsql_cli", "ask", "--db", str(db), "-m", model, "--json"]
    args += ["-n", "1", "--max-tokens", "16", "--temperature", "0", "--no-merge", *extra]
    if threads:
        args += ["--threads", str(threads)]
    if question[1]:
        args += ["--evidence", question[1]]
    args.append(question[0])
    env = {**os.environ, "SLMSQL_CACHE_DIR": str(cache)}
    env.pop("SLMSQL_KV_CACHE_MB", None)
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=3600)
    wall = time.perf_counter() - start
    if not proc.stdout:
        raise SystemExit(f"ask failed: {proc.stderr}")
    return json.loads(proc.stdout), wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding chinook/ and bird_dev/")
    parser.add_argument("--pairs", type=int, default=3, help="question pairs per database")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    results = []
    for name, (db, pairs) in {
        "chinook": chinook_pairs(args.data, args.pairs),
        "student_club": student_club_pairs(args.data, args.pairs),
    }.items():
        for first, second in pairs:
            with tempfile.TemporaryDirectory(prefix="slmsql-kvbench-") as tmp:
                cache = Path(tmp)
                ask(db, args.model, first, cache, args.threads)
                cached, wall_cached = ask(db, args.model, second, cache, args.threads)
                plain, wall_plain = ask(db, args.model, second, cache, args.threads, "--no-prompt-cache")
            stats, base = cached["generation"], plain["generation"]
            results.append(
                {
                    "db": name,
                    "first": first[0],
                    "second": second[0],
                    "prompt_tokens": stats["prompt_tokens"],
                    "evaluated": stats["prompt_tokens_evaluated"],
                    "from_disk": stats["prompt_tokens_from_disk"],
                    "evaluated_share": round(stats["prompt_tokens_evaluated"] / stats["prompt_tokens"], 3),
                    "prompt_s_cached": stats["prompt_seconds"],
                    "prompt_s_plain": base["prompt_seconds"],
                    "wall_s_cached": round(wall_cached, 2),
                    "wall_s_plain": round(wall_plain, 2),
                    "identical": cached["candidates"] == plain["candidates"]
                    and cached["sql"] == plain["sql"],
                }
            )
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)

    print(f"model: {Path(args.model).name}\n")
    print(
        "| db | second question | prompt tokens | evaluated | from disk | evaluated share | prompt s (cache / none) | process s (cache / none) | same candidates |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        short = r["second"] if len(r["second"]) <= 60 else r["second"][:57] + "..."
        print(
            f"| {r['db']} | {short} | {r['prompt_tokens']} | {r['evaluated']} | {r['from_disk']} | "
            f"{r['evaluated_share']:.0%} | {r['prompt_s_cached']:.2f} / {r['prompt_s_plain']:.2f} | "
            f"{r['wall_s_cached']:.1f} / {r['wall_s_plain']:.1f} | {'yes' if r['identical'] else 'NO'} |"
        )
    for name in ("chinook", "student_club"):
        shares = sorted(r["evaluated_share"] for r in results if r["db"] == name)
        if shares:
            met = sum(s <= 0.5 for s in shares)
            print(
                f"\n{name}: median evaluated share {shares[len(shares) // 2]:.0%}; {met} of {len(shares)} pairs at most half"
            )
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
