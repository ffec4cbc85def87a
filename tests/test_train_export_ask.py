"""The whole path a user takes with their own model: train (SFT, CPU) → export (GGUF) → ask."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import pytest
from conftest import Slmsql

pytestmark = [
    pytest.mark.slow,
    pytest.mark.train,
    pytest.mark.skipif(find_spec("torch") is None, reason="needs the [train] extra"),
]

QUESTION = "How many singers do we have?"
GOLD = "SELECT count(*) FROM singer"


def test_train_then_export_then_ask(slmsql: Slmsql, data_dir: Path, tmp_path: Path) -> None:
    from slmsql_cli.training.tiny import build_tiny_qwen2

    spider = data_dir / "spider_dev"
    base = build_tiny_qwen2(tmp_path / "tiny-base")
    data = tmp_path / "one.json"
    data.write_text(json.dumps([{"db_id": "concert_singer", "question": QUESTION, "query": GOLD}]))

    train = slmsql(
        "train",
        "--stage",
        "sft",
        "--base",
        str(base),
        "--data",
        str(data),
        "--db-dir",
        str(spider / "database"),
        "--tables",
        str(spider / "tables.json"),
        "--cpu",
        "--max-steps",
        "100",
        "--out",
        "runs/tiny-sft",
        "--set",
        "learning_rate=1e-2",
        "--set",
        "lr_scheduler_type=constant",
        "--set",
        "warmup_steps=0",
        "--set",
        "per_device_train_batch_size=1",
        "--set",
        "gradient_accumulation_steps=1",
        cwd=tmp_path,
        cache=tmp_path / "cache",
        timeout=900,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert (tmp_path / "runs" / "latest").exists()

    export = slmsql(
        "export", "--q8", "--out", "tiny.gguf", cwd=tmp_path, cache=tmp_path / "cache", timeout=900
    )  # no CHECKPOINT: runs/latest
    assert export.returncode == 0, export.stderr[-3000:]
    assert (tmp_path / "tiny.gguf").read_bytes()[:4] == b"GGUF"

    db = spider / "database" / "concert_singer" / "concert_singer.sqlite"
    ask = slmsql(
        "ask",
        "--db",
        str(db),
        "--tables",
        str(spider / "tables.json"),
        "--model",
        "tiny.gguf",
        "--no-merge",
        "-n",
        "4",
        "--max-tokens",
        "64",
        "--json",
        QUESTION,
        cwd=tmp_path,
        cache=tmp_path / "cache",
        timeout=900,
    )
    assert ask.returncode == 0, ask.stderr[-3000:]
    answer = json.loads(ask.stdout.strip().splitlines()[-1])
    # The model saw this question 100 times with the exact prompt `ask` builds: it answers it.
    assert answer["rows"] == [[6]]
    assert answer["votes"] >= 3
