"""Quantization types and llama.cpp's own quantizer.

K-quants (Q4_K_M, Q5_K_M, ...) have no Python implementation, and llama.cpp's quantizer also picks
a per-tensor mix (e.g. Q6_K for some tensors in Q4_K_M), so we call `llama_model_quantize` from
llama-cpp-python on an f16 GGUF rather than reimplementing it.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from slmsql_cli import llama_logs
from slmsql_cli.errors import UserError

# llama.cpp's `llama_ftype` values (llama.h) and the approximate size of one weight in bits,
# used to check free disk space before starting.
FTYPES: dict[str, tuple[int, float]] = {
    "f32": (0, 32.0),
    "f16": (1, 16.0),
    "bf16": (32, 16.0),
    "q8_0": (7, 8.5),
    "q6_k": (18, 6.6),
    "q5_k_m": (17, 5.7),
    "q5_k_s": (16, 5.5),
    "q5_0": (8, 5.5),
    "q5_1": (9, 6.0),
    "q4_k_m": (15, 4.9),
    "q4_k_s": (14, 4.6),
    "q4_0": (2, 4.5),
    "q4_1": (3, 5.0),
    "q3_k_l": (13, 4.3),
    "q3_k_m": (12, 3.9),
    "q3_k_s": (11, 3.5),
    "q2_k": (10, 3.4),
}
ALIASES = {
    "q4": "q4_k_m",
    "q5": "q5_k_m",
    "q8": "q8_0",
    "q6": "q6_k",
    "fp16": "f16",
    "fp32": "f32",
    "float16": "f16",
}
DIRECT = ("f16", "f32")  # written by the converter itself, no quantizer pass


def normalize(quant: str) -> str:
    name = quant.strip().lower().replace("-", "_")
    name = ALIASES.get(name, name)
    if name not in FTYPES:
        raise UserError(f"unknown quantization type {quant!r}", f"choose one of: {', '.join(FTYPES)}")
    return name


def estimated_size(n_parameters: int, quant: str) -> int:
    """Bytes the GGUF will take, with 5% headroom for metadata and the tensors kept at higher precision."""
    return int(n_parameters * FTYPES[quant][1] / 8 * 1.05) + 16 * 2**20


def quantize(src: Path, dst: Path, quant: str, threads: int | None = None) -> None:
    """Quantize the f16/f32 GGUF `src` into `dst` with llama.cpp."""
    try:
        import llama_cpp
    except ImportError:
        raise UserError(
            "quantizing needs llama-cpp-python", "pip install llama-cpp-python, or export with --f16"
        ) from None
    llama_logs.silence()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[quant][0]
    params.nthread = threads or os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise UserError(f"llama.cpp could not quantize the model to {quant.upper()} (code {rc})")
