"""What differs between the supported architectures: GGUF hyper-parameters and tensor fix-ups.

Read from llama.cpp's own converter (conversion/{qwen,llama,gemma}.py in the llama-cpp-python
0.3.36 sdist) and its model loaders (src/models/*.cpp), then re-written on numpy:

* qwen2 / qwen3: tensors map 1:1 (NEOX RoPE, so no Q/K permutation); qwen3 adds q/k norms and an
  explicit head_dim.
* llama: Q/K rows are permuted from Hugging Face's rotate-half layout to llama.cpp's interleaved
  RoPE; `linear`/`yarn` RoPE scaling become GGUF keys; `llama3` scaling becomes a `rope_freqs`
  tensor of per-frequency factors (Llama 3.2).
* gemma3: llama.cpp computes `x * w` in RMSNorm while Gemma computes `x * (1 + w)`, so every norm
  weight gets +1. The sqrt(hidden) embedding scale and the 1/sqrt(head_dim) query scale are done
  by llama.cpp's graph (no tensor change); local (sliding) layers get their own RoPE base and the
  per-layer sliding/full pattern is written explicitly.

transformers 5 writes `rope_parameters` (possibly split into full/sliding attention) where older
versions wrote `rope_theta` + `rope_scaling`; both are read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gguf
import numpy as np

from slmsql_cli.errors import UserError


@dataclass(frozen=True)
class Arch:
    name: str  # GGUF architecture name
    gguf_arch: gguf.MODEL_ARCH
    permute_qk: bool = False
    norm_shift: float = 0.0


ARCHS: dict[str, Arch] = {
    "Qwen2ForCausalLM": Arch("qwen2", gguf.MODEL_ARCH.QWEN2),
    "Qwen3ForCausalLM": Arch("qwen3", gguf.MODEL_ARCH.QWEN3),
    "LlamaForCausalLM": Arch("llama", gguf.MODEL_ARCH.LLAMA, permute_qk=True),
    "Gemma3ForCausalLM": Arch("gemma3", gguf.MODEL_ARCH.GEMMA3, norm_shift=1.0),
}
SUPPORTED = "Qwen2 (Qwen2.5-Coder), Qwen3, Llama (deepseek-coder, Llama 3.x) and Gemma 3 text models"


def detect(config: dict[str, Any]) -> Arch:
    names = config.get("architectures") or []
    for name in names:
        if name in ARCHS:
            return ARCHS[name]
    shown = ", ".join(names) or config.get("model_type", "unknown")
    raise UserError(f"unsupported architecture: {shown}", f"slmsql export supports {SUPPORTED}")


def rope_parameters(config: dict[str, Any], kind: str = "full_attention") -> dict[str, Any]:
    """RoPE settings for one attention kind, whichever way the config spells them."""
    merged: dict[str, Any] = dict(config.get("rope_scaling") or {}) if kind == "full_attention" else {}
    params = config.get("rope_parameters") or {}
    if "full_attention" in params or "sliding_attention" in params:
        merged.update(params.get(kind) or {})
    elif kind == "full_attention":
        merged.update(params)
    merged.setdefault("rope_type", merged.get("type", "default"))
    if "rope_theta" not in merged:
        key = "rope_local_base_freq" if kind == "sliding_attention" else "rope_theta"
        if key in config:
            merged["rope_theta"] = config[key]
    return merged


def head_dim(config: dict[str, Any]) -> int:
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


def write_hparams(w: gguf.GGUFWriter, arch: Arch, config: dict[str, Any]) -> None:
    """All `{arch}.*` keys llama.cpp's loader reads for this architecture."""
    n_layer = int(config["num_hidden_layers"])
    w.add_block_count(n_layer)
    w.add_context_length(int(config.get("max_position_embeddings", 4096)))
    w.add_embedding_length(int(config["hidden_size"]))
    w.add_feed_forward_length(int(config["intermediate_size"]))
    w.add_head_count(int(config["num_attention_heads"]))
    w.add_head_count_kv(int(config.get("num_key_value_heads") or config["num_attention_heads"]))
    w.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    if "head_dim" in config or arch.name == "gemma3":
        w.add_key_length(head_dim(config))
        w.add_value_length(head_dim(config))
    if arch.name == "llama":
        w.add_vocab_size(int(config["vocab_size"]))
        w.add_rope_dimension_count(head_dim(config))

    rope = rope_parameters(config)
    w.add_rope_freq_base(float(rope.get("rope_theta", 10000.0)))
    rope_type = str(rope.get("rope_type") or "default").lower()
    if rope_type == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(rope["factor"]))
    elif rope_type == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(rope["factor"]))
        w.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    elif rope_type == "llama3" and arch.name == "llama":
        pass  # a rope_freqs tensor, see extra_tensors()
    elif rope_type != "default":
        raise UserError(
            f"unsupported RoPE scaling {rope_type!r} for {arch.name}",
            "supported: linear, yarn, llama3 (Llama only)",
        )

    if arch.name == "gemma3":
        _gemma3_hparams(w, config)


def _gemma3_hparams(w: gguf.GGUFWriter, config: dict[str, Any]) -> None:
    scalar = config.get("query_pre_attn_scalar")
    if scalar is not None and int(scalar) != head_dim(config):
        # llama.cpp scales queries by 1/sqrt(head_dim) for every size but 27B
        raise UserError(
            f"unsupported Gemma 3 variant: query_pre_attn_scalar {scalar} != head_dim {head_dim(config)}"
        )
    if config.get("attn_logit_softcapping") is not None:
        raise UserError("unsupported Gemma 3 variant: attention logit soft-capping")
    if softcap := config.get("final_logit_softcapping"):
        w.add_final_logit_softcapping(float(softcap))
    local = rope_parameters(config, "sliding_attention")
    w.add_rope_freq_base_swa(float(local.get("rope_theta", 10000.0)))
    layer_types = config.get("layer_types")
    if config.get("sliding_window") and layer_types:
        w.add_sliding_window(int(config["sliding_window"]))
        w.add_sliding_window_pattern([t == "sliding_attention" for t in layer_types])


def transform(arch: Arch, hf_name: str, data: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """Per-architecture changes to one tensor's values (float32 in, float32 out)."""
    if arch.permute_qk and hf_name.endswith(("q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias")):
        n_head = int(config["num_attention_heads"])
        if ".k_proj." in hf_name:
            n_head = int(config.get("num_key_value_heads") or n_head)
        data = _permute(data, n_head)
    if arch.norm_shift and hf_name.endswith("norm.weight"):
        data = data + np.float32(arch.norm_shift)
    return data


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # rotate-half (first half / second half of each head) -> interleaved pairs
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def extra_tensors(arch: Arch, config: dict[str, Any]) -> dict[str, np.ndarray]:
    """Tensors llama.cpp needs that the checkpoint does not have (Llama 3 RoPE frequency factors)."""
    rope = rope_parameters(config)
    if arch.name != "llama" or str(rope.get("rope_type", "")).lower() != "llama3":
        return {}
    dim = head_dim(config)
    base = float(rope.get("rope_theta", 10000.0))
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    factors = []
    for freq in 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim)):
        wavelen = 2 * math.pi / freq
        if wavelen < old_ctx / high:
            factors.append(1.0)
        elif wavelen > old_ctx / low:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    name = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"
    return {name: np.asarray(factors, dtype=np.float32)}
