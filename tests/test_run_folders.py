"""A `slmsql train` run folder is accepted where a checkpoint is: `train --base` and `export`.

Both take the run's final checkpoint (or, for a run that never finished, its last saved one)
and say which on stderr. The runs are real: a tiny random Qwen2 (training.tiny) trained on a
small SQLite database built here.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Slmsql

from slmsql_cli.quantize.checkpoint import resolve
from slmsql_cli.runs import run_checkpoint

pytestmark = pytest.mark.train

ROWS = [
    {"db_id": "shop", "question": "How many items are there?", "query": "SELECT count(*) FROM item"},
    {
        "db_id": "shop",
        "question": "What is the cheapest item?",
        "query": "SELECT name FROM item ORDER BY price LIMIT 1",
    },
]


def _model(folder: Path, kind: str = "config.json") -> Path:
    folder.mkdir(parents=True)
    (folder / kind).write_text("{}")
    return folder


# ---- which checkpoint a run folder means (no model needed) -------------------------------------


def test_final_wins_over_trainer_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for name in ("checkpoint-9", "checkpoint-10", "final"):
        _model(run / name)
    assert run_checkpoint(run) == run / "final"


def test_unfinished_run_gives_its_last_step_not_the_last_name(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _model(run / "checkpoint-10", "adapter_config.json")
    _model(run / "checkpoint-9", "adapter_config.json")  # written later, but an earlier step
    assert run_checkpoint(run) == run / "checkpoint-10"


def test_not_a_run_folder(tmp_path: Path) -> None:
    assert run_checkpoint(_model(tmp_path / "model")) is None  # a model folder is itself
    (tmp_path / "empty").mkdir()
    assert run_checkpoint(tmp_path / "empty") is None
    (tmp_path / "file.txt").write_text("x")
    assert run_checkpoint(tmp_path / "file.txt") is None
    assert run_checkpoint(tmp_path / "missing") is None


def test_resolve_names_the_export_after_the_run(tmp_path: Path) -> None:
    run = tmp_path / "my-sql-run"
    _model(run / "final")
    source = resolve(str(run))
    assert source.path == run / "final" and source.label == "my-sql-run"


# ---- real runs through the command line ---------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database, its questions and a trained run folder; runs/ is relative to the working directory."""
    path = tmp_path_factory.mktemp("runfolders")
    old = os.getcwd()
    os.chdir(path)
    (path / "db" / "shop").mkdir(parents=True)
    conn = sqlite3.connect(path / "db" / "shop" / "shop.sqlite")
    conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    conn.executemany("INSERT INTO item VALUES (?, ?, ?)", [(1, "pen", 1.5), (2, "ink", 7.0)])
    conn.commit()
    conn.close()
    (path / "train.json").write_text(json.dumps(ROWS))
    yield path
    os.chdir(old)


Train = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def train(slmsql: Slmsql, workdir: Path) -> Train:
    """`train(*args)`: `slmsql train --cpu` on workdir's data, every setting as small as a run can be."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return slmsql(
            "train", "--cpu", "--data", "train.json", "--db-dir", "db",
            "--set", "reward_workers=0", "--set", "per_device_train_batch_size=2", "--set", "num_generations=2",
            "--set", "max_completion_length=8", "--set", "gradient_accumulation_steps=1", *args,
            cwd=workdir, timeout=900,
        )  # fmt: skip

    return run


@pytest.fixture(scope="module")
def sft_run(train: Train, workdir: Path) -> Path:
    from slmsql_cli.database import open_database
    from slmsql_cli.prompt_builder import generation_message
    from slmsql_cli.training.tiny import build_tiny_qwen2

    db = open_database(workdir / "db" / "shop" / "shop.sqlite")
    model = build_tiny_qwen2(
        workdir / "tiny", [generation_message(db, r["question"]).text + r["query"] for r in ROWS]
    )
    proc = train("--stage", "sft", "--base", str(model), "--max-steps", "1", "--out", "runs/sft-run")
    assert proc.returncode == 0, proc.stderr
    assert "CPU training: about" in proc.stderr  # the estimate, said before the run
    return workdir / "runs" / "sft-run"


def test_grpo_from_a_run_folder(train: Train, sft_run: Path) -> None:
    proc = train("--stage", "grpo", "--base", "runs/sft-run", "--max-steps", "1", "--out", "runs/grpo-run")
    assert proc.returncode == 0, proc.stderr
    assert "base: runs/sft-run/final (the checkpoint of training run runs/sft-run)" in proc.stderr
    assert (sft_run.parent / "grpo-run" / "final" / "config.json").is_file()


def test_export_a_run_folder_says_which_checkpoint(slmsql: Slmsql, sft_run: Path, workdir: Path) -> None:
    hide_torch = "import sys\nsys.modules['torch'] = None"  # so the export cannot verify, and says so
    proc = slmsql("export", "runs/sft-run", "--q8", code=hide_torch, cwd=workdir, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "runs/sft-run is a training run: exporting its checkpoint runs/sft-run/final" in proc.stderr
    out = workdir / "sft-run-Q8_0.gguf"  # named after the run, not "final"
    assert proc.stdout.strip() == str(out)
    assert out.read_bytes()[:4] == b"GGUF"
    assert "install slmsql[train]" in proc.stderr  # brackets of the note survive rich


def test_export_of_a_folder_without_a_model(slmsql: Slmsql, workdir: Path) -> None:
    (workdir / "not-a-run").mkdir(exist_ok=True)
    proc = slmsql("export", "not-a-run", cwd=workdir, timeout=300)
    assert proc.returncode == 2
    assert "not a Hugging Face model folder (no config.json) nor a training run holding one" in proc.stderr
