"""Quantization types and llama.cpp's own quantizer.

K-quants (Q4_K_M, Q5_K_M, ...) have no Python implementation, and llama.cpp's quantizer also picks
a per-tensor mix (e.g. Q6_K for some tensors in Q4_K_M), so we call `llama_model_quantize` from
llama-cpp-python on an f16 GGUF rather than reimplementing it.

A *recipe* is a llama.cpp file type plus the quantizer's own per-tensor overrides
(`llama_model_quantize_params`: the output tensor's type, which a model with tied embeddings also
gives its token embedding; the token embedding's; and regex-named tensors): `RECIPES` names the
mixes `--quant` accepts beside the plain types. docs/PERFORMANCE.md measures them.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from dataclasses import dataclass
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
    "iq4_nl": (25, 4.5),
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
# ggml_type values (ggml.h) a recipe may give single tensors
GGML_TYPES: dict[str, int] = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 6,
    "q5_1": 7,
    "q8_0": 8,
    "q4_k": 12,
    "q5_k": 13,
    "q6_k": 14,
    "iq4_nl": 20,
    "bf16": 30,
}


@dataclass(frozen=True)
class Recipe:
    """A llama.cpp file type with per-tensor overrides (see the module docstring)."""

    ftype: str  # a key of FTYPES: every tensor the overrides do not name
    output: str | None = None  # GGML_TYPES key for output.weight (or the tied token embedding)
    token_embd: str | None = None  # GGML_TYPES key for token_embd.weight when it is not tied
    tensors: tuple[tuple[str, str], ...] = ()  # (regex searched in tensor names, GGML_TYPES key)
    note: str = ""


# Mixed recipes by name; every plain FTYPES name is the Recipe of that type alone. (A plain type
# with only a Q8_0 output is no recipe of its own: for widths that are not a multiple of 256, as
# the 0.5B models' 896, llama.cpp already falls back from Q6_K to Q8_0 for the output tensor.)
RECIPES: dict[str, Recipe] = {
    "iq4_nl_mix": Recipe(
        "iq4_nl",
        output="q8_0",
        tensors=((r"attn_v\.weight", "q8_0"), (r"ffn_down\.weight", "q8_0")),
        note="IQ4_NL, output, attn_v and ffn_down Q8_0 (Q4_K_M's choice of tensors to keep finer)",
    ),
}


def normalize(quant: str) -> str:
    name = quant.strip().lower().replace("-", "_")
    name = ALIASES.get(name, name)
    if name not in FTYPES and name not in RECIPES:
        raise UserError(
            f"unknown quantization type {quant!r}", f"choose one of: {', '.join([*FTYPES, *RECIPES])}"
        )
    return name


def recipe(quant: str) -> Recipe:
    """The recipe of a normalized name: a mixed one from RECIPES, or a plain type alone."""
    return RECIPES.get(quant) or Recipe(quant)


def file_tag(quant: str) -> str:
    """The name a cached export of this recipe carries: a plain type's name, or a mix's name and a
    digest of its definition (a redefined mix is a different file)."""
    if quant not in RECIPES:
        return quant
    return f"{quant}-{hashlib.sha256(repr(RECIPES[quant]).encode()).hexdigest()[:8]}"


def estimated_size(n_parameters: int, quant: str) -> int:
    """Bytes the GGUF will take, with 5% headroom for metadata and the tensors kept at higher precision."""
    return int(n_parameters * FTYPES[recipe(quant).ftype][1] / 8 * 1.05) + 16 * 2**20


def quantize(src: Path, dst: Path, quant: str, threads: int | None = None) -> None:
    """Quantize the f16/f32 GGUF `src` into `dst` with llama.cpp, by the recipe named `quant`."""
    try:
        import llama_cpp
    except ImportError:
        raise UserError(
            "quantizing needs llama-cpp-python", "pip install llama-cpp-python, or export with --f16"
        ) from None
    llama_logs.silence()
    mix = recipe(quant)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[mix.ftype][0]
    params.nthread = threads or os.cpu_count() or 1
    if mix.output:
        params.output_tensor_type = GGML_TYPES[mix.output]
    if mix.token_embd:
        params.token_embedding_type = GGML_TYPES[mix.token_embd]
    # a C array ending in a NULL pattern; kept referenced until the call returns
    overrides = (llama_cpp.llama_model_tensor_override * (len(mix.tensors) + 1))(
        *[llama_cpp.llama_model_tensor_override(p.encode(), GGML_TYPES[t]) for p, t in mix.tensors]
    )
    if mix.tensors:
        params.tt_overrides = overrides
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise UserError(f"llama.cpp could not quantize the model to {quant.upper()} (code {rc})")
