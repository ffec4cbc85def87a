"""A run's results: the resumable JSONL file, and what it adds up to (EX overall and by level,
two runs compared question by question; for SParC/CoSQL turns, interactions with every turn right).

Results go to a JSONL file, one line per question, appended and flushed as each question
finishes; a rerun skips the questions already there, and an interrupted last line is dropped.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slmsql_cli.errors import UserError
from slmsql_cli.eval.questions import TURN_LEVELS, Question, read_text

LEVELS = {
    "bird": ["simple", "moderate", "challenging"],
    "spider": ["easy", "medium", "hard", "extra"],
    "sparc": list(TURN_LEVELS),
    "cosql": list(TURN_LEVELS),
}


class ResultsFile:
    """The resumable JSONL results: records already there are kept and skipped, new ones appended.

    Each record is one `os.write` of a complete line on an O_APPEND descriptor, so Ctrl-C leaves
    whole lines; a torn last line (a crash mid-write) is cut off when the file is reopened.
    """

    def __init__(self, path: Path, run: dict, questions: Sequence[Question]) -> None:
        self.path = Path(path)
        self.done: dict[int, dict] = {}
        if self.path.is_dir():
            raise UserError(f"--out {path} is a folder", "pass a file name, e.g. --out results.jsonl")
        if self.path.exists():
            self.done = self._load(run, questions)
        if self.path.parent.exists() and not self.path.parent.is_dir():
            raise UserError(
                f"--out {path}: {self.path.parent} is a file, not a folder", "pass a writable --out file"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise UserError(
                f"cannot write the results to {path}: {exc.strerror or exc}", "pass a writable --out file"
            ) from None

    def _load(self, run: dict, questions: Sequence[Question]) -> dict[int, dict]:
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        torn = data[len(whole) :]
        # Only a torn record of ours is cut off; any other file is refused before it is touched.
        not_ours = UserError(
            f"{self.path} is not a results file of slmsql eval",
            "pass a new --out file (slmsql does not overwrite other files)",
        )
        if torn and not (torn.startswith(b'{"index"') or b'{"index"'.startswith(torn)):
            raise not_ours
        try:
            text = whole.decode("utf-8")
        except UnicodeDecodeError:
            raise not_ours from None
        by_index = {q.index: q for q in questions}
        done: dict[int, dict] = {}
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                raise UserError(f"{self.path} line {n} is not JSON", "pass a fresh --out file") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("index"), int):
                raise not_ours
            if rec.get("run") != run:
                theirs = rec.get("run")
                if isinstance(theirs, dict) and theirs.keys() != run.keys():  # fields added or gone
                    raise UserError(
                        f"{self.path} holds results of another run, written by another version of slmsql",
                        "pass a new --out file; `slmsql eval compare` still reads the old one",
                    )
                raise UserError(
                    f"{self.path} holds results of another run ({_describe_run(theirs)})",
                    "pass a new --out file, or the same options as that run to resume it",
                )
            q = by_index.get(rec["index"])
            if q is not None and q.question != rec.get("question"):
                raise UserError(
                    f"{self.path} belongs to another questions file (question {q.index} differs)",
                    "pass a new --out file",
                )
            done[rec["index"]] = rec
        if torn:
            with self.path.open("r+b") as fh:
                fh.truncate(len(whole))
        return done

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        os.write(self._fd, line)
        self.done[record["index"]] = record

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe_run(run: Any) -> str:
    if not isinstance(run, dict):
        return "unknown"
    return ", ".join(f"{k}={v}" for k, v in run.items() if v not in (None, "", False))


def load_records(path: Path) -> list[dict]:
    """The records of a results file (a torn last line is skipped)."""
    hint = "pass a file written by slmsql eval --out"
    lines = read_text(path, "results file", hint).splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if n == len(lines):
                break
            raise UserError(f"{path} line {n} is not JSON", hint) from None
        if not isinstance(rec, dict) or not isinstance(rec.get("index"), int):
            raise UserError(f"{path} line {n} is not a result of slmsql eval", hint)
        records.append(rec)
    return records


def summarize(records: Sequence[dict], fmt: str | None = None) -> dict[str, Any]:
    """EX (percent), correct and total overall and per level, in the benchmark's level order; for
    SParC/CoSQL turns (records with an "interaction"), the turns are the questions, the levels
    their index, and `interactions` says how many interactions had every turn right.

    A question whose gold SQL does not execute counts in the total and is never right (there is no
    result to match), in every format; `gold_errors` says how many there were."""
    correct = sum(1 for r in records if r.get("correct"))
    total = len(records)
    by_level: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        if r.get("level"):
            by_level[r["level"]][0] += bool(r.get("correct"))
            by_level[r["level"]][1] += 1
    order = LEVELS.get(fmt or "", [])
    levels = [lv for lv in order if lv in by_level] + sorted(lv for lv in by_level if lv not in order)
    latencies = [r["latency"] for r in records if isinstance(r.get("latency"), (int, float))]
    summary = {
        "ex": _pct(correct, total),
        "correct": correct,
        "total": total,
        "by_level": {
            lv: {"ex": _pct(*by_level[lv]), "correct": by_level[lv][0], "total": by_level[lv][1]}
            for lv in levels
        },
        "gold_errors": sum(1 for r in records if r.get("gold_error")),
        "seconds_per_question": round(sum(latencies) / len(latencies), 3) if latencies else None,
    }
    interactions = summarize_interactions(records)
    if interactions is not None:
        summary["interactions"] = interactions
    return summary


def summarize_interactions(records: Sequence[dict]) -> dict[str, Any] | None:
    """Interaction accuracy: of the interactions whose every turn was scored, the share with every
    turn right (an interaction holding a turn whose gold does not run is never right); `partial`
    counts those with turns not scored (past --limit or the last prediction), left out. None when
    the records are not turns."""
    turns: dict[int, dict[int, bool]] = defaultdict(dict)
    length: dict[int, Any] = {}
    for r in records:
        if isinstance(r.get("interaction"), int) and isinstance(r.get("turn"), int):
            turns[r["interaction"]][r["turn"]] = bool(r.get("correct"))
            length[r["interaction"]] = r.get("turns")
    if not turns:
        return None
    whole = [i for i in turns if len(turns[i]) == length[i]]
    correct = sum(all(turns[i].values()) for i in whole)
    return {
        "ex": _pct(correct, len(whole)),
        "correct": correct,
        "total": len(whole),
        "partial": len(turns) - len(whole),
    }


def _pct(correct: int, total: int) -> float:
    return round(100.0 * correct / total, 2) if total else 0.0


def compare(a: Sequence[dict], b: Sequence[dict], fmt: str | None = None) -> dict[str, Any]:
    """Where two runs over the same questions differ, question by question (matched by index)."""
    ra, rb = {r["index"]: r for r in a}, {r["index"]: r for r in b}
    common = sorted(set(ra) & set(rb))
    outcome = Counter((bool(ra[i].get("correct")), bool(rb[i].get("correct"))) for i in common)
    differ = [
        {
            "index": i,
            "question": ra[i].get("question"),
            "a_correct": bool(ra[i].get("correct")),
            "b_correct": bool(rb[i].get("correct")),
            "a_pred": ra[i].get("pred"),
            "b_pred": rb[i].get("pred"),
            "gold": ra[i].get("gold"),
        }
        for i in common
        if bool(ra[i].get("correct")) != bool(rb[i].get("correct"))
    ]
    return {
        "common": len(common),
        "a": summarize([ra[i] for i in common], fmt),
        "b": summarize([rb[i] for i in common], fmt),
        "both_correct": outcome[(True, True)],
        "only_a": outcome[(True, False)],
        "only_b": outcome[(False, True)],
        "neither": outcome[(False, False)],
        "only_in_a": len(set(ra) - set(rb)),
        "only_in_b": len(set(rb) - set(ra)),
        "differ": differ,
    }


def run_label(records: Sequence[dict], fallback: str) -> str:
    run = records[0].get("run") if records else None
    if not isinstance(run, dict):
        return fallback
    if run.get("model"):
        return f"{Path(str(run['model'])).name} n={run.get('n')}" + ("" if run.get("merge") else " no-merge")
    return Path(str(run.get("predictions") or fallback)).name
