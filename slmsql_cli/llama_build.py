"""What the installed llama.cpp build can do, and where a model's weights may safely go.

Pure functions over plain strings and tuples, so that every decision here is tested with faked
feature lists on any machine (tests/test_llama_build.py); `_internals.py` feeds them the real
values and applies the result.

Why this exists: a llama.cpp compiled with AMX (`-march=native` on a 4th-generation or later Xeon)
puts quantized weights in its AMX buffer type, and `ggml_backend_amx_mul_mat` segfaults at the
first decode (llama.cpp issue 20824, closed as stale without a fix). `scripts/setup.sh` now builds
without AMX, but a user's own wheel may have it compiled in. When the AMX buffer type is offered
at run time, slmsql loads the model with llama.cpp's extra buffer types off (no AMX) and puts back,
tensor by tensor through `tensor_buft_overrides`, the CPU_REPACK buffer for exactly the weights
that llama.cpp would repack itself, so Q4_0, Q4_K and IQ4_NL keep their repacked kernels (the
1.4x decode). AMX is never used: no AMX machine was at hand to prove any case of it safe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# The features llama.cpp's system info reports as "NAME = 1" that matter to a CPU build here.
_FEATURE = re.compile(r"\b([A-Z][A-Z0-9_]*) = ([01])\b")

# Weight tensors used as the left operand of a plain matrix multiplication in the dense
# architectures slmsql serves (llama, qwen2, gemma3, ...). The token embedding is read by
# GET_ROWS and must never be repacked; a tied output layer is loaded under the embedding's name.
_MATMUL_WEIGHT = re.compile(
    r"^(?:blk\.(?P<layer>\d+)\.(?P<kind>attn_q|attn_k|attn_v|attn_qkv|attn_output|ffn_gate|ffn_up|ffn_down)"
    r"|(?P<output>output))\.weight$"
)

# ggml types llama.cpp repacks on x86 (ggml-cpu/repack.cpp, ggml_repack_get_optimal_repack_type):
# the instruction set each needs. Every one also needs a row count (ne[1]) divisible by 8.
# Types repacked only on ARM (Q8_0, Q5_K, Q6_K) are absent: overriding a tensor that llama.cpp
# cannot repack would crash while loading, so the list errs on the side of fewer.
X86_REPACK: Mapping[str, str] = {"Q4_0": "AVX2", "Q4_K": "AVX2", "IQ4_NL": "AVX2", "Q2_K": "AVX512"}


@dataclass(frozen=True)
class BuildInfo:
    """llama.cpp's own account of a build: its system-info features and its CPU extra buffer types."""

    features: frozenset[str] = frozenset()  # every "NAME = 1" in llama_print_system_info()
    extra_bufts: tuple[str, ...] = ()  # the CPU device's extra buffer types, e.g. ("AMX", "CPU_REPACK")

    @property
    def amx_compiled(self) -> bool:
        return "AMX_INT8" in self.features

    @property
    def amx_active(self) -> bool:
        """llama.cpp offers the AMX buffer type only when compiled in and usable on this CPU."""
        return "AMX" in self.extra_bufts

    def describe(self) -> str:
        """The features in one short line: "AVX2 AVX512 AMX_INT8 ..." and the extra buffers."""
        shown = sorted(f for f in self.features if f not in {"REPACK", "OPENMP", "LLAMAFILE"})
        bufts = ", ".join(self.extra_bufts) or "none"
        return f"{' '.join(shown) or 'no SIMD features'}; extra buffers: {bufts}"


def parse_system_info(text: str, extra_bufts: Iterable[str] = ()) -> BuildInfo:
    """`llama_print_system_info()` ("CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 1 | ...") as a BuildInfo."""
    features = frozenset(name for name, on in _FEATURE.findall(text) if on == "1")
    return BuildInfo(features=features, extra_bufts=tuple(extra_bufts))


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type: str  # ggml type name: "Q4_0", "Q6_K", "F32", ...
    shape: tuple[int, ...]  # ggml order: shape[0] is ne[0] (the row length)


@dataclass(frozen=True)
class Placement:
    """How to load a model's weights: the fields of llama_model_params that slmsql sets."""

    use_extra_bufts: bool = True
    repack: tuple[str, ...] = ()  # regexes (llama.cpp std::regex_search) of tensors put in CPU_REPACK
    reason: str = ""  # why, in words, for `doctor` and `-v`; empty for llama.cpp's defaults
    repacked_tensors: int = 0
    notes: list[str] = field(default_factory=list)


def repackable(tensor: TensorInfo, features: frozenset[str]) -> bool:
    """Whether llama.cpp's CPU_REPACK buffer can hold this weight on an x86 CPU with these features."""
    need = X86_REPACK.get(tensor.type)
    return (
        need is not None
        and need in features
        and len(tensor.shape) == 2
        and tensor.shape[1] % 8 == 0
        and _MATMUL_WEIGHT.match(tensor.name) is not None
    )


def repack_patterns(tensors: Iterable[TensorInfo], features: frozenset[str]) -> tuple[str, ...]:
    """Anchored patterns naming exactly the repackable weights, one per tensor kind.

    llama.cpp compiles every pattern again for every tensor it loads, so the names are grouped by
    kind (`^blk\\.(?:0|1|5)\\.ffn_up\\.weight$`): at most eight short patterns, not one per tensor.
    """
    layers: dict[str, list[str]] = {}
    output = False
    for tensor in tensors:
        if not repackable(tensor, features):
            continue
        match = _MATMUL_WEIGHT.match(tensor.name)
        assert match is not None  # repackable() checked it
        if match.group("output"):
            output = True
        else:
            layers.setdefault(match.group("kind"), []).append(match.group("layer"))
    patterns = [
        rf"^blk\.(?:{'|'.join(sorted(ids, key=int))})\.{kind}\.weight$"
        for kind, ids in sorted(layers.items())
    ]
    if output:
        patterns.append(r"^output\.weight$")
    return tuple(patterns)


# SLMSQL_WEIGHT_BUFFERS: how `plan_placement` places weights (the escape hatch a crash message names).
MODES: Mapping[str, str] = {
    "auto": "llama.cpp's defaults, or the AMX guard where the AMX buffer type is on offer",
    "guard": "the AMX guard on any CPU: no extra buffer types, CPU_REPACK put back per weight",
    "plain": "no extra buffer types at all: no AMX and no repacked weights (slowest, simplest)",
    "llama": "llama.cpp's defaults even with AMX (crashes on AMX builds; for testing a fix)",
}


def plan_placement(
    info: BuildInfo, tensors: Iterable[TensorInfo], *, gpu_offload: bool, mode: str = "auto"
) -> Placement:
    """llama.cpp's defaults, unless the AMX buffer type is on offer: then no extra buffer types, and
    CPU_REPACK put back for the weights llama.cpp would repack (unless layers go to a GPU, where an
    override would pin them to the CPU). `mode` is SLMSQL_WEIGHT_BUFFERS (see MODES)."""
    if mode not in MODES:
        raise ValueError(f"SLMSQL_WEIGHT_BUFFERS={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "llama" or (mode == "auto" and not info.amx_active):
        return Placement()
    if mode == "plain":
        return Placement(use_extra_bufts=False, reason="SLMSQL_WEIGHT_BUFFERS=plain: no extra buffer types")
    if info.amx_active:
        reason = "llama.cpp's AMX kernels crash (llama.cpp issue 20824): AMX is not used"
    else:
        reason = "SLMSQL_WEIGHT_BUFFERS=guard"
    if gpu_offload or "CPU_REPACK" not in info.extra_bufts:
        return Placement(use_extra_bufts=False, reason=reason + "; weights not repacked")
    tensors = list(tensors)
    patterns = repack_patterns(tensors, info.features)
    count = sum(repackable(t, info.features) for t in tensors)
    return Placement(
        use_extra_bufts=False,
        repack=patterns,
        reason=reason + f"; {count} weights repacked (CPU_REPACK) as llama.cpp would",
        repacked_tensors=count,
    )
