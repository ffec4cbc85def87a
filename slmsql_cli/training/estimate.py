"""How long a CPU training run will take, roughly, said before it starts.

A full-size recipe on a CPU runs for days; nothing else would tell the user before the first
progress bar. The estimate is the usual transformer arithmetic (Kaplan et al. 2020, "Scaling Laws
for Neural Language Models", §2.1): training costs about 6·N FLOPs per trained token for N
parameters (forward 2N, backward 4N; about 4N with LoRA, which computes no weight gradients),
generating costs 2N per token. Token counts are not known before the data is built, so a row is
taken as `ROW_TOKENS` (prompt with its schema plus the answer, capped by the recipe's lengths) and a
GRPO completion as its full `max_completion_length`.

The throughputs are measured constants (fp32, torch's CPU kernels), FLOPs per CPU-second of one
thread, from `python benchmarks/train_cpu_throughput.py --hidden 896 --layers 6 --vocab 151936`
(Qwen2.5-0.5B's width, heads and vocabulary with 6 of its 24 layers: 227M parameters) on a 2-core
x86-64 VM with torch 2.13: 21.8 GFLOP/s training (AdamW steps on 256-token rows) and 1.78 GFLOP/s
generating (`generate()`, 4 sequences; decoding is bound by memory and per-token overhead, not by
arithmetic). The default 56M shape measured 14.0 and 0.43: smaller models use the CPU less well.
A real run can differ by 2x either way; the point is minutes versus days.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmsql_cli.training.config import TrainConfig

# Measured (see the module docstring), rounded down.
TRAIN_FLOPS_PER_THREAD = 20e9
GENERATE_FLOPS_PER_THREAD = 1.8e9
ROW_TOKENS = 1200  # a Spider/BIRD prompt with its schema (~900 tokens) and a short reasoned answer
SLOW_SECONDS = 30 * 60  # longer than this gets a warning and the way to a quick run


@dataclass
class Estimate:
    seconds: float
    steps: int
    tokens_per_step: int
    parameters: int

    def line(self) -> str:
        what = (
            f"{self.steps:,} steps × ~{self.tokens_per_step:,} tokens on a "
            f"{self.parameters / 1e6:,.0f}M-parameter model"
        )
        if self.seconds > SLOW_SECONDS:
            return (
                f"warning: training on the CPU will take about {duration(self.seconds)} ({what}; a rough "
                "estimate). For a quick check use --config tiny-cpu, or lower --max-steps / --max-samples; "
                "for the real recipe use a GPU."
            )
        return f"CPU training: about {duration(self.seconds)} ({what}; a rough estimate)"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("h", 3600)):
        if seconds >= 1.5 * size:
            return f"{seconds / size:,.1f} {unit}" if seconds < 10 * size else f"{seconds / size:,.0f} {unit}"
    return f"{seconds / 60:.0f} min"


def steps_of(cfg: TrainConfig, rows: int) -> int:
    """Optimizer steps: --max-steps, else one pass over the rows as TRL batches them (one process)."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    per_step = cfg.stage_default("per_device_train_batch_size") * cfg.stage_default(
        "gradient_accumulation_steps"
    )
    if cfg.stage == "grpo":  # a GRPO batch counts completions: num_generations per prompt
        per_step = max(per_step // max(cfg.num_generations, 1), 1)
    return max(math.ceil(rows * cfg.num_train_epochs / per_step), 1)


def estimate(cfg: TrainConfig, rows: int, parameters: int, threads: int) -> Estimate:
    """Seconds for `cfg` over `rows` data rows on `threads` CPU threads."""
    rows = min(rows, cfg.max_samples or rows)
    steps = steps_of(cfg, rows)
    sequences = cfg.stage_default("per_device_train_batch_size") * cfg.stage_default(
        "gradient_accumulation_steps"
    )
    train_flops_per_token = (4 if cfg.lora else 6) * parameters
    train_rate = TRAIN_FLOPS_PER_THREAD * max(threads, 1)
    if cfg.stage == "sft":
        tokens = sequences * min(ROW_TOKENS, cfg.max_length)
        seconds = steps * tokens * train_flops_per_token / train_rate
    else:
        prompt = min(ROW_TOKENS, cfg.max_prompt_length)
        completion = cfg.max_completion_length
        tokens = sequences * (prompt + completion)
        generate = sequences * completion * 2 * parameters / (GENERATE_FLOPS_PER_THREAD * max(threads, 1))
        reference = 2 * parameters * tokens if cfg.beta and not cfg.lora else 0
        seconds = steps * (generate + (tokens * train_flops_per_token + reference) / train_rate)
    return Estimate(seconds, steps, tokens, parameters)


def parameter_count(source: str, gguf_file: str | None = None) -> int | None:
    """The base model's parameter count without loading it: GGUF tensor shapes, safetensors headers,
    or (for a Hub repo id) its config.json. None when it cannot be known cheaply."""
    from slmsql_cli.errors import UserError

    try:
        if gguf_file:
            from gguf import GGUFReader

            return sum(int(t.n_elements) for t in GGUFReader(Path(source) / gguf_file).tensors)
        folder = Path(source)
        if folder.is_dir():
            from slmsql_cli.quantize.weights import Checkpoint

            try:
                return Checkpoint(folder).n_parameters  # exact, from the safetensors headers
            except UserError:  # no safetensors: the config says it too
                return _from_config(json.loads((folder / "config.json").read_text(encoding="utf-8")))
        from slmsql_cli import hub

        config = hub.download_file(source, "config.json")
        return _from_config(json.loads(config.read_text(encoding="utf-8")))
    except (UserError, OSError, ValueError, KeyError, TypeError):
        return None


def _from_config(config: dict[str, Any]) -> int | None:
    """Parameters of a decoder-only transformer from its Hugging Face config (norms left out)."""
    c = config.get("text_config") or config
    hidden, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    heads = c["num_attention_heads"]
    kv_heads = c.get("num_key_value_heads") or heads
    head_dim = c.get("head_dim") or hidden // heads
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    mlp = 3 * hidden * c["intermediate_size"]
    tied = config.get("tie_word_embeddings", c.get("tie_word_embeddings", True))
    return layers * (attention + mlp) + vocab * hidden * (1 if tied else 2)
