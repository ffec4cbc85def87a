"""`slmsql train` on a CPU says roughly how long it will take before it starts, and warns with the
way to a quick run (`--config tiny-cpu`) when that is hours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Slmsql

from slmsql_cli.training.config import load_config
from slmsql_cli.training.estimate import duration, estimate, parameter_count

pytestmark = pytest.mark.train

# Qwen/Qwen2.5-Coder-0.5B-Instruct's config.json (the base of the shipped recipes): 494M parameters.
QWEN25_05B = {
    "model_type": "qwen2",
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
}


@pytest.fixture()
def shaped_base(tmp_path: Path) -> Path:
    """A 0.5B-shaped base: its config only (the parameter count needs nothing more)."""
    folder = tmp_path / "qwen25-0.5b-config"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(QWEN25_05B))
    return folder


def test_parameters_from_the_config(shaped_base: Path) -> None:
    assert parameter_count(str(shaped_base)) == 493_961_216  # 0.49B, as the model card says (+ biases)


def test_parameters_from_a_gguf(gemma_gguf: Path) -> None:
    count = parameter_count(str(gemma_gguf.parent), gemma_gguf.name)
    assert count is not None and 250e6 < count < 290e6  # Gemma 3 270M


def test_full_recipe_is_days_and_tiny_recipe_is_minutes() -> None:
    given = {"cpu": True, "data": "train.json"}
    full = estimate(load_config("generate-0.5b", given, "sft"), 916_000, 494_000_000, 8)
    assert full.seconds > 30 * 86400 and "--config tiny-cpu" in full.line()
    tiny = estimate(load_config("tiny-cpu", given, "sft"), 16, 494_000_000, 8)
    assert tiny.steps == 4 and tiny.seconds < 30 * 60 and "warning" not in tiny.line()
    grpo = estimate(load_config("generate-0.5b", given, "grpo"), 9428, 494_000_000, 8)
    assert grpo.steps == 9428 // 2 and grpo.seconds > full.seconds / 1000


def test_durations_read_as_words() -> None:
    assert duration(5) == "5 s"
    assert duration(600) == "10 min"
    assert duration(5 * 3600) == "5.0 h"
    assert duration(3 * 365 * 86400) == "3.0 years"


@pytest.mark.slow  # the train command itself: torch, datasets and the recipe load
def test_cli_warns_before_loading_anything(slmsql: Slmsql, shaped_base: Path, tmp_path: Path) -> None:
    """The full-size recipe on the CPU: the warning comes first; the run then stops (this base has
    no tokenizer), so nothing trains here."""
    data = tmp_path / "think.jsonl"
    row = {"prompt": "How many singers?", "completion": "<think>\n</think>\n<answer>\nSELECT 1\n</answer>"}
    data.write_text("\n".join(json.dumps(row) for _ in range(2000)) + "\n")
    proc = slmsql(
        "train", "--config", "generate-0.5b", "--stage", "sft", "--cpu", "--base", shaped_base,
        "--data", data, "--out", tmp_path / "run", cwd=tmp_path, timeout=600,
    )  # fmt: skip
    lines = proc.stderr.splitlines()
    warning = next(
        (i for i, line in enumerate(lines) if line.startswith("warning: training on the CPU")), None
    )
    assert warning is not None, proc.stderr
    assert "--config tiny-cpu" in proc.stderr and "494M-parameter" in proc.stderr
    assert proc.returncode == 2 and "tokenizer" in proc.stderr  # stopped after the warning, not before
    assert all("loading" not in line for line in lines[:warning]), "the warning must come before loading"
