"""A saved answer in a new process, next to the model's answer to the same question.

In a fresh cache folder, on the demo database:

1. `slmsql saved import` keeps one question with its SQL (as a team's shared file would);
2. `slmsql ask QUESTION` in a new process, `--repeats` times: answered from the store (no model
   loaded), wall time of the whole process;
3. with `--model`, `slmsql ask QUESTION --fresh` once: the model path, wall time of the whole process.

Prints one JSON line: the saved answer's wall seconds (each run, and the median) and CPU seconds
(its query worker included), the same for `slmsql --version` (the floor: the command line alone),
the load average, and the model path's seconds.
Target (issue 21): a saved question answers again in under 1 s in a new process.

    python benchmarks/saved_answers.py --model ~/.cache/slmsql/test-models/gemma-3-270m-q4_k_m.gguf
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"
QUESTION = "Which author wrote the most books?"
SQL = (
    "SELECT a.name FROM authors AS a JOIN books AS b ON b.author_id = a.author_id "
    "GROUP BY a.author_id ORDER BY count(*) DESC LIMIT 1"
)


CPU: list[float] = []  # CPU seconds (user + system) of each run, its worker processes included


def run(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "slmsql_cli", *args], capture_output=True, text=True, cwd=REPO, env=env
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return proc, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a GGUF for the model path (left out without it)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model-args", default="-n 4 --max-tokens 128 --no-merge")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SLMSQL_CACHE_DIR": cache, "PYTHONPATH": str(REPO)}
        shared = Path(cache) / "shared.jsonl"
        shared.write_text(json.dumps({"question": QUESTION, "sql": SQL}) + "\n")
        proc, _ = run(["saved", "import", str(shared), "--db", str(DEMO)], env)
        assert proc.returncode == 0, proc.stderr
        run(["ask", "--db", str(DEMO), "--json", QUESTION], env)  # the schema cache, made once
        saved, saved_cpu, floor, floor_cpu = [], [], [], []
        for _ in range(options.repeats):
            proc, seconds = run(["ask", "--db", str(DEMO), "--json", QUESTION], env)
            doc = json.loads(proc.stdout)
            assert proc.returncode == 0 and doc["saved_answer"] == 1, proc.stderr
            saved.append(round(seconds, 3))
            saved_cpu.append(round(CPU[-1], 3))
            _, seconds = run(["--version"], env)  # the floor: the command line starting and exiting
            floor.append(round(seconds, 3))
            floor_cpu.append(round(CPU[-1], 3))
        result: dict[str, object] = {
            "saved_seconds": saved,
            "saved_median": statistics.median(saved),
            "saved_cpu_median": statistics.median(saved_cpu),
            "version_median": statistics.median(floor),
            "version_cpu_median": statistics.median(floor_cpu),
            "load_average": round(os.getloadavg()[0], 1),
        }
        if options.model:
            args = [
                "ask",
                "--db",
                str(DEMO),
                "--json",
                "--fresh",
                "-m",
                options.model,
                *options.model_args.split(),
            ]
            proc, seconds = run([*args, QUESTION], env)
            assert proc.returncode in (0, 1), proc.stderr
            result.update(model_seconds=round(seconds, 3), model_args=options.model_args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
