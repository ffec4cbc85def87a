"""benchmarks/followup_curve.py (issue 29): the follow-up set split by the learning curve's
databases, and the table it prints. The benchmark itself trains and evaluates for hours."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("followup_curve", REPO / "benchmarks" / "followup_curve.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_interactions_are_split_by_the_learning_curves_databases(
    fc: ModuleType, data_dir: Path, tmp_path: Path
) -> None:
    source = data_dir / "sparc_dev" / "dev.json"  # world_1 (trained on) and concert_singer (held out)
    train_path, held_path = fc.write_turns(tmp_path, source, [source], None)
    train, held = (json.loads(p.read_text()) for p in (train_path, held_path))
    assert {r["database_id"] for r in train} == {"world_1"}
    assert {r["database_id"] for r in held} == {"concert_singer"} <= set(fc.lc.HELD_OUT)
    assert len(train) + len(held) == len(json.loads(source.read_text()))
    _, limited = fc.write_turns(tmp_path, source, [source], 2)
    assert len(json.loads(limited.read_text())) == 2  # whole interactions, not turns


def test_training_turns_come_from_every_set_and_never_a_held_out_database(
    fc: ModuleType, data_dir: Path, tmp_path: Path
) -> None:
    sparc = data_dir / "sparc_dev" / "dev.json"
    other = tmp_path / "other.json"  # a second set: one training and one held-out interaction
    rows = json.loads(sparc.read_text())
    other.write_text(json.dumps([rows[0] | {"database_id": "pets_1"}, rows[0] | {"database_id": "tvshow"}]))
    train_path, held_path = fc.write_turns(tmp_path, sparc, [sparc, other], None)
    train, held = (json.loads(p.read_text()) for p in (train_path, held_path))
    assert {r["database_id"] for r in train} == {"world_1", "pets_1"}
    assert not {r["database_id"] for r in train} & set(fc.lc.HELD_OUT)
    assert {r["database_id"] for r in held} == {"concert_singer"}  # the held-out set's own only


def test_every_row_names_a_model_the_script_builds(fc: ModuleType) -> None:
    assert {model for model, *_ in fc.ROWS.values()} == {"sft", "fu-questions", "fu-evidence"}
    assert set(fc.LABELS) == set(fc.ROWS)
    assert all(a in fc.ROWS and b in fc.ROWS for a, b in fc.PAIRS)


def test_table_shows_turns_interactions_and_single_questions(fc: ModuleType) -> None:
    turns = {
        "prompt_tokens": 812.4,
        "seconds_per_question": 1.25,
        "ex": 50.0,
        "correct": 5,
        "total": 10,
        "ci95": list(fc.lc.wilson(5, 10)),
        "by_level": {
            "1": {"correct": 3, "total": 4},
            "2": {"correct": 2, "total": 4},
            "3": {"correct": 0, "total": 2},
        },
        "interactions": {"ex": 25.0, "correct": 1, "total": 4, "partial": 0},
    }
    single = {"ex": 20.0, "correct": 2, "total": 10, "ci95": list(fc.lc.wilson(2, 10))}
    doc = {
        "setup": {"set": "sparc", "heldout_turns": 10, "heldout_interactions": 4},
        "stages": {"eval-sft-questions": {"wall_s": 60.0}, "train-sft": {"wall_s": 120.0}},
        "rows": {"sft-questions": turns, "sft-single": single},
        "pairs": {
            "sft-none -> sft-questions": {"questions": 10, "only_before": 1, "only_after": 3, "p": 0.625}
        },
        "pairs_follow_ups": {
            "sft-none -> sft-questions": {"questions": 6, "only_before": 0, "only_after": 2, "p": 0.5}
        },
    }
    text = fc.table(doc)
    assert "Held-out sparc turns (10 in 4 interactions)" in text
    # turns >= 2 on their own: 2 of 6 (2/4 + 0/2), with their Wilson interval
    lo, hi = fc.lc.wilson(2, 6)
    assert (
        "| SFT, earlier questions | **5/10 (50.0%)** | 23.7–76.3% | 3/4 | 2/6 | "
        f"{100 * lo:.1f}–{100 * hi:.1f}% | 2/4 | 0/2 | - | 1/4 | 812 | 1.25 | 1.0 min |" in text
    )
    assert "| SFT, single questions | **2/10 (20.0%)** |" in text
    assert "train-sft 2.0 min" in text
    assert "| sft-none → sft-questions | 10 | 1 | 3 | 0.625 | 0 vs 2 of 6, p=0.5 |" in text


def _turn(index: int, level: str, correct: bool) -> dict:
    return {"index": index, "level": level, "correct": correct, "interaction": 0, "turn": int(level[0])}


def test_follow_ups_are_paired_on_turns_after_the_first(fc: ModuleType, tmp_path: Path) -> None:
    """McNemar's test on turns >= 2 alone: turn 1 has no earlier turn, so no context to differ by."""
    before = [_turn(0, "1", True), _turn(1, "2", False), _turn(2, "3", False), _turn(3, "4+", True)]
    after = [_turn(0, "1", False), _turn(1, "2", True), _turn(2, "3", True), _turn(3, "4+", True)]
    for row, records in (("a", before), ("b", after)):
        lines = [json.dumps({**r, "prompt_tokens": 100 * (r["index"] + 1)}) for r in records]
        (tmp_path / f"{row}.jsonl").write_text("\n".join(lines) + "\n")
    assert fc.paired_follow_ups(tmp_path, "a", "b") == {
        "questions": 3,
        "only_before": 0,
        "only_after": 2,
        "p": 0.5,
    }
    assert fc.lc.paired(tmp_path, "a", "b")["only_before"] == 1  # turn 1 counts on every turn
    assert fc.prompt_tokens(tmp_path / "a.jsonl") == 250.0
