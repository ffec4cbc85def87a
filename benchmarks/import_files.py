"""Time `--db big.csv`: a generated CSV imported into slmsql's cached SQLite copy, and peak memory.

Each size is imported in a fresh Python process (`slmsql_cli.files.as_sqlite`, what `--db`
calls), with an empty cache, then imported again (the cache hit every later question pays). The
CSV has six columns (an integer id, a name, a REAL amount with empty cells, an ISO date, a
category code with leading zeros, a free-text note); about 18 million rows per GB. Peak RSS is the
import process's; CPU seconds (user + system) are the figure to compare on a shared machine. Prints a
markdown table.

  python benchmarks/import_files.py                    # 100 MB and 1 GB (about 5 minutes on 2 cores)
  python benchmarks/import_files.py --sizes-mb 10,100  # quicker
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

IMPORT = """
import sys, time, resource
from slmsql_cli.files import as_sqlite
start = time.perf_counter()
path = as_sqlite(sys.argv[1])
usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
cpu = sum(u.ru_utime + u.ru_stime for u in usage)  # the import runs in a worker process (a child)
print(time.perf_counter() - start, cpu, max(u.ru_maxrss for u in usage), path)
"""

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


def write_csv(path: Path, megabytes: float, seed: int = 0) -> int:
    """A CSV of about `megabytes` MB; returns its row count."""
    rng = random.Random(seed)
    target = int(megabytes * 1024 * 1024)
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("id,name,amount,day,category,note\n")
        written = 0
        while written < target:
            lines = []
            for _ in range(10_000):
                rows += 1
                amount = "" if rows % 17 == 0 else f"{rng.random() * 1000:.2f}"
                day = f"2024-{rows % 12 + 1:02d}-{rows % 28 + 1:02d}"
                note = " ".join(rng.choices(WORDS, k=3))
                lines.append(
                    f'{rows},{WORDS[rows % 10]} {rows % 997},{amount},{day},{rows % 50:04d},"{note}"\n'
                )
            chunk = "".join(lines)
            fh.write(chunk)
            written += len(chunk)
    return rows


def run_import(csv_path: Path, cache: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MB) of importing `csv_path` in a fresh process."""
    env = {**os.environ, "SLMSQL_CACHE_DIR": str(cache)}
    repo = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = f"{repo}{os.pathsep}{env.get('PYTHONPATH', '')}"
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT, str(csv_path)], capture_output=True, text=True, env=env, check=True
    )
    seconds, cpu, rss, _ = proc.stdout.split(maxsplit=3)
    per_mb = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return float(seconds), float(cpu), int(rss) / per_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="100,1024", help="comma-separated CSV sizes in MB")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write the CSVs (default: a temp folder)"
    )
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes_mb.split(",")]

    print("| CSV | rows | import s (wall) | CPU s | MB per CPU s | peak RSS MB | cached s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for size in sizes:
            folder = Path(tmp) / f"{size:g}"
            folder.mkdir()
            csv_path = folder / "sales.csv"
            rows = write_csv(csv_path, size)
            mb = csv_path.stat().st_size / 1024 / 1024
            seconds, cpu, rss = run_import(csv_path, folder / "cache")
            cached, _, _ = run_import(csv_path, folder / "cache")
            row = [
                f"{mb:,.0f} MB",
                f"{rows:,}",
                f"{seconds:.1f}",
                f"{cpu:.1f}",
                f"{mb / cpu:.1f}",
                f"{rss:.0f}",
            ]
            print("| " + " | ".join([*row, f"{cached:.2f}"]) + " |")
            sys.stdout.flush()
            for path in folder.rglob("*"):
                if path.is_file():
                    path.unlink()


if __name__ == "__main__":
    main()
