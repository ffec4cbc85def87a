"""Check an exported GGUF against its source: same tokens in, (nearly) the same logits out.

The source runs in transformers (float32), the GGUF in llama.cpp, on the same token ids. Reported:

* whether llama.cpp tokenizes the probe text exactly as the Hugging Face tokenizer does;
* max |Δlogit| over every position and vocabulary entry, also relative to the spread (standard
  deviation) of the source logits, which makes one tolerance fit models whose logits are on
  different scales;
* top-1 agreement: the share of positions where both pick the same next token. A position counts
  as agreeing when the GGUF's pick is within 1% of a standard deviation of the source's best logit,
  so exact ties (common in tiny random test models) are not counted as disagreements.

Tolerances (relative max |Δ|, minimum top-1 agreement) by type. max |Δ| is an extreme value over
tens of thousands of logits, and llama.cpp also rounds activations to 8 bits for quantized
matmuls, so it is only a tight check for unquantized types; quantized types are judged mainly by
top-1 agreement. Measured (tests/test_export.py; tiny trained models of every architecture, and the
real Gemma 3 270M): f16 <= 0.01 std and 100% top-1; q8_0 0.05-0.46 std and 98-100%; q4_k_m
84-100% (Gemma 270M: 95%).

    f32              0.05   99%
    f16, bf16        0.10   97%
    q8_0             1.00   93%
    q6_k, q5_*       -      85%
    q4_*             -      80%
    q3_*, q2_k       -      70%

A failed check is an error: the export is not kept.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmsql_cli import llama_logs

PROBE_TEXT = (
    "Question: How many singers are older than 30, and what is their average age?\n"
    "SQL: SELECT COUNT(*), AVG(age) FROM singer WHERE age > 30;\n"
    "Answer: 42 singers, average 47.5 years (données: 東京)."
)


@dataclass(frozen=True)
class Tolerance:
    max_rel_delta: float | None  # max |Δlogit| / std(source logits); None: not checked
    min_top1: float


def tolerance(quant: str) -> Tolerance:
    if quant == "f32":
        return Tolerance(0.05, 0.99)
    if quant in ("f16", "bf16"):
        return Tolerance(0.10, 0.97)
    if quant == "q8_0":
        return Tolerance(1.0, 0.93)
    if quant.startswith(("q6", "q5")):
        return Tolerance(None, 0.85)
    if quant.startswith("q4"):
        return Tolerance(None, 0.80)
    return Tolerance(None, 0.70)


@dataclass
class VerifyReport:
    quant: str
    n_tokens: int
    tokens_match: bool
    first_token_mismatch: int | None
    max_abs_delta: float
    logit_std: float
    top1_agreement: float
    tolerance: Tolerance

    @property
    def rel_delta(self) -> float:
        return self.max_abs_delta / max(self.logit_std, 1e-12)

    @property
    def passed(self) -> bool:
        tol = self.tolerance
        delta_ok = tol.max_rel_delta is None or self.rel_delta <= tol.max_rel_delta
        return self.tokens_match and delta_ok and self.top1_agreement >= tol.min_top1

    def summary(self) -> str:
        tok = (
            "tokenizer matches"
            if self.tokens_match
            else f"tokenizer differs at token {self.first_token_mismatch}"
        )
        limit = f" (limit {self.tolerance.max_rel_delta})" if self.tolerance.max_rel_delta is not None else ""
        return (
            f"{tok}; max |Δlogit| {self.max_abs_delta:.4f} = {self.rel_delta:.3f} std{limit}; "
            f"top-1 agreement {self.top1_agreement:.0%} (min {self.tolerance.min_top1:.0%}) over {self.n_tokens} tokens"
        )


def available() -> bool:
    """Verification needs the source model in transformers (the [train] extra)."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


def compare(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float, float]:
    """(max |Δ|, mean per-position std of reference, top-1 agreement) for [positions, vocab] logits."""
    delta = float(np.abs(reference - candidate).max())
    std = float(reference.std(axis=-1).mean())
    picked = reference[np.arange(len(reference)), candidate.argmax(-1)]
    agree = float((picked >= reference.max(-1) - 0.01 * std).mean())
    return delta, std, agree


def gguf_logits(gguf_path: Path, ids: list[int], threads: int | None = None) -> np.ndarray:
    """llama.cpp's logits for every position of `ids`."""
    import llama_cpp

    llama_logs.silence()
    llm = llama_cpp.Llama(
        model_path=str(gguf_path),
        n_ctx=max(64, len(ids) + 8),
        n_batch=max(64, len(ids) + 8),
        logits_all=True,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()


def gguf_tokenize(gguf_path: Path, text: str) -> list[int]:
    import llama_cpp

    llama_logs.silence()
    llm = llama_cpp.Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    try:
        return llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    finally:
        llm.close()


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No "Loading weights" bar under our own progress display."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def verify(
    source_dir: Path, gguf_path: Path, quant: str, text: str = PROBE_TEXT, threads: int | None = None
) -> VerifyReport:
    """Run `text` through the source checkpoint (transformers) and the GGUF (llama.cpp) and compare."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = list(AutoTokenizer.from_pretrained(source_dir)(text)["input_ids"])
    gguf_ids = gguf_tokenize(gguf_path, text)
    mismatch = next((i for i, (a, b) in enumerate(zip(ids, gguf_ids)) if a != b), None)
    if mismatch is None and len(ids) != len(gguf_ids):
        mismatch = min(len(ids), len(gguf_ids))

    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(source_dir, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        reference = model(torch.tensor([ids])).logits[0].float().numpy()
    del model
    candidate = gguf_logits(gguf_path, ids, threads)
    delta, std, agree = compare(reference, candidate)
    return VerifyReport(quant, len(ids), mismatch is None, mismatch, delta, std, agree, tolerance(quant))
