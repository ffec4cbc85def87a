"""Hugging Face checkpoint directory -> GGUF (f16 or f32), with numpy only.

The GGUF is streamed: tensor infos are planned first, then each tensor is read from the
memory-mapped safetensors, fixed up for the architecture, cast and written, so memory stays at
about one tensor however large the model is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from slmsql_cli.errors import UserError
from slmsql_cli.quantize import arch as archs
from slmsql_cli.quantize.tokenizer import VocabSummary, write_vocab
from slmsql_cli.quantize.weights import Checkpoint

F16_MAX = 65504.0
OnTensor = Callable[[int, int, str], None]  # (done, total, tensor name)


@dataclass
class ConvertResult:
    path: Path
    arch: str
    n_tensors: int
    n_parameters: int
    vocab: VocabSummary


@dataclass
class _Planned:
    gguf_name: str
    hf_name: str | None  # None: generated (rope_freqs)
    shape: tuple[int, ...]
    dtype: np.dtype


def read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not path.is_file():
        raise UserError(
            f"no config.json in {model_dir}",
            "CHECKPOINT must be a Hugging Face model directory (config.json, *.safetensors, tokenizer.json)",
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise UserError(f"{path} is not valid JSON") from None


def _tensor_names(ckpt: Checkpoint, arch: archs.Arch, config: dict[str, Any]) -> list[tuple[str, str]]:
    """(hf name, gguf name) for every tensor llama.cpp needs, in checkpoint order."""
    tmap = gguf.get_tensor_name_map(arch.gguf_arch, int(config["num_hidden_layers"]))
    tied = bool(config.get("tie_word_embeddings", False))
    pairs = []
    for name in ckpt.names():
        if name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight"):
            continue  # recomputed by llama.cpp / shared with token_embd
        mapped = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise UserError(
                f"unexpected tensor {name!r} for architecture {arch.name}",
                "is this a plain causal language model checkpoint?",
            )
        pairs.append((name, mapped))
    return pairs


def _target_dtype(ckpt: Checkpoint, hf_name: str, outtype: str) -> np.dtype:
    ref = ckpt.refs[hf_name]
    if outtype == "f32" or len(ref.shape) < 2:
        return np.dtype(np.float32)  # llama.cpp wants norms and biases in f32
    if ref.dtype in ("F32", "BF16", "F64") and float(np.abs(ckpt.get(hf_name)).max()) > F16_MAX:
        return np.dtype(np.float32)  # would overflow in f16
    return np.dtype(np.float16)


def convert(
    model_dir: Path,
    out: Path,
    *,
    outtype: str = "f16",
    name: str | None = None,
    on_tensor: OnTensor | None = None,
) -> ConvertResult:
    """Write `out` as a GGUF of the checkpoint in `model_dir`; outtype is "f16" or "f32"."""
    if outtype not in ("f16", "f32"):
        raise ValueError(f"outtype must be f16 or f32, not {outtype}")
    config = read_config(model_dir)
    arch = archs.detect(config)
    ckpt = Checkpoint(model_dir)
    pairs = _tensor_names(ckpt, arch, config)
    embed = next((hf for hf, g in pairs if g == "token_embd.weight"), None)
    if embed is None:
        raise UserError(
            f"the checkpoint in {model_dir} has no token embedding", "is the safetensors file complete?"
        )
    n_vocab = ckpt.refs[embed].shape[0]

    plan = [_Planned(g, hf, ckpt.refs[hf].shape, _target_dtype(ckpt, hf, outtype)) for hf, g in pairs]
    extras = archs.extra_tensors(arch, config)
    plan += [_Planned(g, None, t.shape, t.dtype) for g, t in extras.items()]

    w = gguf.GGUFWriter(out, arch.name)
    try:
        w.add_type(gguf.GGUFType.MODEL)
        w.add_name(name or model_dir.name)
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32)
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        archs.write_hparams(w, arch, config)
        vocab = write_vocab(w, model_dir, n_vocab)
        for p in plan:
            w.add_tensor_info(p.gguf_name, p.shape, p.dtype, int(np.prod(p.shape)) * p.dtype.itemsize)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for i, p in enumerate(plan):
            if p.hf_name is None:
                data = extras[p.gguf_name]
            else:
                data = archs.transform(arch, p.hf_name, ckpt.get(p.hf_name), config)
            w.write_tensor_data(np.ascontiguousarray(data, dtype=p.dtype))
            if on_tensor:
                on_tensor(i + 1, len(plan), p.gguf_name)
    finally:
        w.close()
    return ConvertResult(out, arch.name, len(plan), ckpt.n_parameters, vocab)
