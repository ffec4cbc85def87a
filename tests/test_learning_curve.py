"""benchmarks/learning_curve.py (issue 23): the split by database and the interval it reports.

The benchmark itself trains and evaluates for hours; its numbers are in docs/ACCURACY.md. What
can be wrong in a way no number would show is checked here: that no training database reaches
evaluation, and that the interval is the Wilson interval.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from slmsql_cli.pipeline import CUT, OUTSIDE

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("learning_curve", REPO / "benchmarks" / "learning_curve.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split_is_by_database(lc: ModuleType, data_dir: Path, tmp_path: Path) -> None:
    train_path, held_path = lc.write_split(tmp_path, data_dir / "spider_dev", None)
    train = json.loads(train_path.read_text())
    held = json.loads(held_path.read_text())
    everything = json.loads((data_dir / "spider_dev" / "dev.json").read_text())
    assert {q["db_id"] for q in held} == set(lc.HELD_OUT)
    assert not {q["db_id"] for q in train} & set(lc.HELD_OUT)
    assert len(train) + len(held) == len(everything)


def test_a_limited_split_spans_every_held_out_database(
    lc: ModuleType, data_dir: Path, tmp_path: Path
) -> None:
    _, held_path = lc.write_split(tmp_path, data_dir / "spider_dev", 8)
    held = json.loads(held_path.read_text())
    assert len(held) == 8 and {q["db_id"] for q in held} == set(lc.HELD_OUT)


def test_wilson_interval(lc: ModuleType) -> None:
    assert lc.wilson(20, 100) == pytest.approx((0.1333, 0.2888), abs=5e-4)
    low, high = lc.wilson(0, 229)
    assert low == 0.0 and high == pytest.approx(0.0165, abs=5e-4)
    assert lc.wilson(0, 0) == (0.0, 0.0)


def test_table_lists_the_rows_that_ran(lc: ModuleType) -> None:
    doc = {
        "stages": {"eval-base": {"wall_s": 120.0}, "train-sft": {"wall_s": 600.0}},
        "rows": {
            "base": {
                "ex": 10.0,
                "correct": 2,
                "total": 20,
                "ci95": list(lc.wilson(2, 20)),
                "by_level": {"easy": {"correct": 2, "total": 5}},
            }
        },
    }
    text = lc.table(doc)
    assert "| base, N=1 greedy | **2/20 (10.0%)** | 2.8–30.1% | 2/5 | - | - | - | 2.0 min |" in text
    assert "SFT" not in text.splitlines()[-3] and "train-sft 10.0 min" in text


def test_chart_draws_the_rows(lc: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rows = {
        name: {"ex": 100 * c / 229, "correct": c, "total": 229, "ci95": list(lc.wilson(c, 229))}
        for name, c in (("base", 0), ("sft", 20), ("sft-n8", 31))
    }
    png = lc.chart({"rows": rows, "setup": {"heldout_questions": 229}}, tmp_path / "lc.png")
    assert png is not None and png.read_bytes().startswith(b"\x89PNG")


def test_mcnemar_exact(lc: ModuleType) -> None:
    assert lc.mcnemar(0, 0) == 1.0
    assert lc.mcnemar(3, 3) == 1.0
    assert lc.mcnemar(0, 6) == pytest.approx(2 / 64)  # six discordant, all one way
    assert lc.mcnemar(2, 10) == pytest.approx(2 * (1 + 12 + 66) / 4096)


def test_constrained_rows_count_candidates_naming_missing_names(lc: ModuleType, tmp_path: Path) -> None:
    """Issue 30: the --constrain rows, and each row's count of candidates that named a table or
    column the database lacks, read from eval's results file."""
    assert lc.ROWS["sft-con"] == lc.ROWS["sft"] and lc.ROWS["sft-n8-con"] == lc.ROWS["sft-n8"]
    assert set(lc.CONSTRAINED) == {"sft-con", "sft-n8-con"}
    assert ("sft-n8", "sft-n8-con") in lc.PAIRS
    candidates = [
        {"sql": "SELECT x FROM t", "error": "no such column: x", "finish_reason": "stop"},
        {"sql": "SELECT a FROM u", "error": "no such table: u", "finish_reason": "stop"},
        {"sql": "SELECT a FROM", "error": 'near "FROM": syntax error', "finish_reason": "constrained"},
        {"sql": "SELECT a FROM t", "error": None, "finish_reason": "eog"},
        {"sql": "SELECT a FROM sin", "error": CUT, "finish_reason": "length"},
        {"sql": "SELECT a FROM u", "error": OUTSIDE, "finish_reason": "eog"},
    ]
    results = tmp_path / "row.jsonl"
    results.write_text(json.dumps({"index": 0, "candidates": candidates}) + "\n")
    counts = lc.candidate_counts(results)
    assert counts == {"candidates": 6, "naming_missing": 2, "ended_by_constraint": 1, "not_admitted": 2}
    row = {"correct": 1, "total": 2, "ci95": list(lc.wilson(1, 2)), **counts}
    text = lc.table({"stages": {}, "rows": {"sft-n8-con": row}})
    assert "| + SFT, N=8 vote, --constrain | **1/2 (50.0%)** |" in text and text.splitlines()[2].endswith(
        "| 2/6 | 1/6 | 2/6 |"
    )
