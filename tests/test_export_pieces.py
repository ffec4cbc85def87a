"""The exporter's pieces without torch: architecture tables, tokenizer conversion, checkpoint
resolution, safetensors reading, and a whole numpy-built checkpoint converted to GGUF.

Checkpoints here are written with numpy (`safetensors.numpy`, or byte by byte for bf16, which
numpy lacks) and GGUF files are read back with gguf's own reader. tests/test_export.py checks the
same code end to end against transformers on trained models.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from safetensors.numpy import save_file

from slmsql_cli.errors import UserError
from slmsql_cli.quantize import arch as archs
from slmsql_cli.quantize import checkpoint
from slmsql_cli.quantize.convert import convert
from slmsql_cli.quantize.tokenizer import LLAMA3_REGEX, QWEN2_REGEX, pre_tokenizer_name, write_vocab
from slmsql_cli.quantize.weights import Checkpoint


def test_these_pieces_import_without_torch() -> None:
    code = (
        "import sys, slmsql_cli.quantize.convert, slmsql_cli.quantize.checkpoint, slmsql_cli.quantize.export; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- arch.py -----------------------------------------------------------------------------------


def _gguf_keys(tmp_path: Path, arch: archs.Arch, config: dict[str, Any]) -> dict[str, Any]:
    """Write the architecture's hyper-parameters into a GGUF and read them back."""
    path = tmp_path / f"{arch.name}.gguf"
    w = gguf.GGUFWriter(path, arch.name)
    archs.write_hparams(w, arch, config)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    reader = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith(arch.name + ".")}


BASE = {
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "vocab_size": 100,
}


@pytest.mark.parametrize(
    "name, gguf_name, permute, shift",
    [
        ("Qwen2ForCausalLM", "qwen2", False, 0.0),
        ("Qwen3ForCausalLM", "qwen3", False, 0.0),
        ("LlamaForCausalLM", "llama", True, 0.0),
        ("Gemma3ForCausalLM", "gemma3", False, 1.0),
    ],
)
def test_detect_supported_architectures(name: str, gguf_name: str, permute: bool, shift: float) -> None:
    arch = archs.detect({"architectures": ["SomethingElse", name]})
    assert (arch.name, arch.permute_qk, arch.norm_shift) == (gguf_name, permute, shift)


def test_detect_unsupported_architecture_names_it() -> None:
    with pytest.raises(UserError, match="unsupported architecture: MistralForCausalLM") as info:
        archs.detect({"architectures": ["MistralForCausalLM"]})
    assert "Qwen2" in (info.value.hint or "")
    with pytest.raises(UserError, match="unsupported architecture: phi3"):
        archs.detect({"model_type": "phi3"})


def test_rope_parameters_old_and_new_spellings() -> None:
    old = {"rope_theta": 1e6, "rope_scaling": {"type": "linear", "factor": 4.0}}
    assert archs.rope_parameters(old) == {
        "type": "linear",
        "factor": 4.0,
        "rope_type": "linear",
        "rope_theta": 1e6,
    }
    new = {"rope_parameters": {"rope_type": "yarn", "factor": 2.0, "rope_theta": 5e5}}
    assert archs.rope_parameters(new) == {"rope_type": "yarn", "factor": 2.0, "rope_theta": 5e5}
    split = {
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        }
    }
    assert archs.rope_parameters(split)["rope_theta"] == 1e6
    assert archs.rope_parameters(split, "sliding_attention")["rope_theta"] == 1e4
    gemma_old = {"rope_theta": 1e6, "rope_local_base_freq": 1e4}
    assert archs.rope_parameters(gemma_old, "sliding_attention") == {
        "rope_type": "default",
        "rope_theta": 1e4,
    }
    assert archs.rope_parameters({}) == {"rope_type": "default"}


def test_head_dim_explicit_or_derived() -> None:
    assert archs.head_dim(BASE) == 16
    assert archs.head_dim({**BASE, "head_dim": 128}) == 128


def test_qwen2_hparams(tmp_path: Path) -> None:
    keys = _gguf_keys(tmp_path, archs.ARCHS["Qwen2ForCausalLM"], {**BASE, "rope_theta": 1e6})
    assert keys["qwen2.block_count"] == 2 and keys["qwen2.context_length"] == 512
    assert keys["qwen2.embedding_length"] == 64 and keys["qwen2.feed_forward_length"] == 128
    assert keys["qwen2.attention.head_count"] == 4 and keys["qwen2.attention.head_count_kv"] == 2
    assert keys["qwen2.rope.freq_base"] == 1e6
    assert keys["qwen2.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert "qwen2.attention.key_length" not in keys and "qwen2.rope.scaling.type" not in keys


def test_llama_rope_scaling_keys(tmp_path: Path) -> None:
    llama = archs.ARCHS["LlamaForCausalLM"]
    linear = _gguf_keys(tmp_path, llama, {**BASE, "rope_scaling": {"rope_type": "linear", "factor": 4.0}})
    assert linear["llama.rope.scaling.type"] == "linear" and linear["llama.rope.scaling.factor"] == 4.0
    assert linear["llama.vocab_size"] == 100 and linear["llama.rope.dimension_count"] == 16
    yarn = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 256}
    keys = _gguf_keys(tmp_path, llama, {**BASE, "rope_parameters": yarn})
    assert (
        keys["llama.rope.scaling.type"] == "yarn"
        and keys["llama.rope.scaling.original_context_length"] == 256
    )
    with pytest.raises(UserError, match="unsupported RoPE scaling 'dynamic'"):
        _gguf_keys(tmp_path, llama, {**BASE, "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}})
    with pytest.raises(UserError, match="unsupported RoPE scaling 'llama3' for qwen2"):
        _gguf_keys(
            tmp_path, archs.ARCHS["Qwen2ForCausalLM"], {**BASE, "rope_scaling": {"rope_type": "llama3"}}
        )


def test_gemma3_sliding_window_pattern(tmp_path: Path) -> None:
    config = {
        **BASE,
        "head_dim": 32,
        "query_pre_attn_scalar": 32,
        "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"],
        "rope_theta": 1e6,
        "rope_local_base_freq": 1e4,
        "final_logit_softcapping": 30.0,
    }
    keys = _gguf_keys(tmp_path, archs.ARCHS["Gemma3ForCausalLM"], config)
    assert keys["gemma3.attention.sliding_window"] == 8
    assert keys["gemma3.attention.sliding_window_pattern"] == [True, False]
    assert keys["gemma3.rope.freq_base"] == 1e6 and keys["gemma3.rope.freq_base_swa"] == 1e4
    assert keys["gemma3.attention.key_length"] == 32 and keys["gemma3.final_logit_softcapping"] == 30.0
    with pytest.raises(UserError, match="query_pre_attn_scalar 64 != head_dim 32"):
        _gguf_keys(tmp_path, archs.ARCHS["Gemma3ForCausalLM"], {**config, "query_pre_attn_scalar": 64})
    with pytest.raises(UserError, match="soft-capping"):
        _gguf_keys(tmp_path, archs.ARCHS["Gemma3ForCausalLM"], {**config, "attn_logit_softcapping": 50.0})


def test_llama_qk_rows_become_interleaved_pairs() -> None:
    # one head of dimension 4: rotate-half pairs rows (0, 2) and (1, 3); llama.cpp wants them adjacent
    llama = archs.ARCHS["LlamaForCausalLM"]
    config = {"num_attention_heads": 1, "num_key_value_heads": 1}
    q = np.arange(4, dtype=np.float32)[:, None] * np.ones((1, 3), dtype=np.float32)
    assert archs.transform(llama, "model.layers.0.self_attn.q_proj.weight", q, config)[:, 0].tolist() == [
        0,
        2,
        1,
        3,
    ]
    bias = np.arange(8, dtype=np.float32)  # two heads: each permuted on its own
    got = archs.transform(llama, "model.layers.0.self_attn.k_proj.bias", bias, {"num_attention_heads": 2})
    assert got.tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    v = np.arange(4, dtype=np.float32)
    assert archs.transform(llama, "model.layers.0.self_attn.v_proj.bias", v, config).tolist() == [0, 1, 2, 3]
    qwen = archs.ARCHS["Qwen2ForCausalLM"]
    assert archs.transform(qwen, "model.layers.0.self_attn.q_proj.weight", q, config) is q


def test_gemma_norms_are_shifted_by_one() -> None:
    gemma = archs.ARCHS["Gemma3ForCausalLM"]
    w = np.array([0.0, -0.5, 2.0], dtype=np.float32)
    assert archs.transform(gemma, "model.layers.0.input_layernorm.weight", w, {}).tolist() == [1.0, 0.5, 3.0]
    assert archs.transform(gemma, "model.norm.weight", w, {}).tolist() == [1.0, 0.5, 3.0]
    assert archs.transform(gemma, "model.layers.0.mlp.up_proj.weight", w, {}).tolist() == w.tolist()


def test_llama3_rope_frequency_factors() -> None:
    rope = {
        "rope_type": "llama3",
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_theta": 500000.0,
    }
    llama = archs.ARCHS["LlamaForCausalLM"]
    (name, factors), *rest = archs.extra_tensors(
        llama, {**BASE, "head_dim": 64, "rope_parameters": rope}
    ).items()
    assert name == "rope_freqs.weight" and not rest and factors.shape == (32,) and factors.dtype == np.float32
    # high frequencies (short wavelengths) are kept, low ones divided by `factor`, smooth in between
    assert factors[0] == 1.0 and factors[-1] == 32.0
    assert np.all(np.diff(factors) >= 0) and 1.0 < factors[np.argmax(factors > 1.0)] < 32.0
    assert archs.extra_tensors(archs.ARCHS["Qwen2ForCausalLM"], {**BASE, "rope_parameters": rope}) == {}
    assert archs.extra_tensors(llama, BASE) == {}


# ---- tokenizer.py ------------------------------------------------------------------------------


def _split(regex: str) -> dict[str, Any]:
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
DEEPSEEK = [
    _split("[\r\n]"),
    _split(r"\s?[A-Za-zµÀ-ÖØ-öø-ƺ]+"),
    _split(r"\s?[!-/:-~！-／：-～‘-‟　-。]+"),
    _split(r"\s+$"),
    _split("[一-龥ࠀ-一가-퟿]+"),
]


@pytest.mark.parametrize(
    "steps, name",
    [
        ([_split(QWEN2_REGEX), BYTE_LEVEL], "qwen2"),
        ([_split(LLAMA3_REGEX), BYTE_LEVEL], "llama-bpe"),
        ([*DEEPSEEK, {"type": "Digits", "individual_digits": True}, BYTE_LEVEL], "deepseek-coder"),
        ([*DEEPSEEK, {"type": "Digits", "individual_digits": False}, BYTE_LEVEL], "deepseek-llm"),
        ([{**BYTE_LEVEL, "use_regex": True}], "gpt-2"),
    ],
)
def test_pre_tokenizer_names(steps: list[dict[str, Any]], name: str) -> None:
    assert pre_tokenizer_name({"pre_tokenizer": {"type": "Sequence", "pretokenizers": steps}}) == name


def test_unknown_pre_tokenizer_is_an_error() -> None:
    with pytest.raises(UserError, match="not one llama.cpp knows"):
        pre_tokenizer_name(
            {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [_split(r"\w+"), BYTE_LEVEL]}}
        )
    with pytest.raises(UserError):
        pre_tokenizer_name({"pre_tokenizer": None})


def _vocab_gguf(tmp_path: Path, tokenizer: dict[str, Any], n_vocab: int, extra: dict[str, Any] | None = None):
    model_dir = tmp_path / "model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    (model_dir / "tokenizer_config.json").write_text(json.dumps(extra or {}), encoding="utf-8")
    path = tmp_path / "vocab.gguf"
    w = gguf.GGUFWriter(path, "qwen2")
    summary = write_vocab(w, model_dir, n_vocab)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    fields = gguf.GGUFReader(path).fields
    return summary, {k: f.contents() for k, f in fields.items() if k.startswith("tokenizer.")}


def _byte_level_tokenizer() -> dict[str, Any]:
    vocab = {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4}
    return {
        "model": {"type": "BPE", "vocab": vocab, "merges": ["a b", "Ġ ab"]},
        "added_tokens": [
            {"id": 5, "content": "<|endoftext|>", "special": True},
            {"id": 6, "content": "<|im_end|>", "special": False},  # flagged by its <|…|> shape
            {"id": 7, "content": "SELECT", "special": False},
        ],
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [_split(QWEN2_REGEX), BYTE_LEVEL]},
    }


def test_byte_level_vocabulary(tmp_path: Path) -> None:
    config = {"eos_token": "<|im_end|>", "chat_template": "{{ messages }}"}
    summary, keys = _vocab_gguf(tmp_path, _byte_level_tokenizer(), n_vocab=10, extra=config)
    assert (summary.model, summary.pre, summary.n_tokens, summary.n_merges, summary.chat_template) == (
        "gpt2",
        "qwen2",
        10,
        2,
        True,
    )
    assert keys["tokenizer.ggml.model"] == "gpt2" and keys["tokenizer.ggml.pre"] == "qwen2"
    tokens = keys["tokenizer.ggml.tokens"]
    assert tokens == ["a", "b", "ab", "Ġ", "Ġab", "<|endoftext|>", "<|im_end|>", "SELECT", "[PAD8]", "[PAD9]"]
    t = gguf.TokenType
    assert (
        keys["tokenizer.ggml.token_type"]
        == [t.NORMAL] * 5 + [t.CONTROL, t.CONTROL, t.USER_DEFINED] + [t.UNUSED] * 2
    )
    assert keys["tokenizer.ggml.merges"] == ["a b", "Ġ ab"]
    assert keys["tokenizer.ggml.eos_token_id"] == 6
    assert keys["tokenizer.chat_template"] == "{{ messages }}"


def test_sentencepiece_style_vocabulary_scores_follow_merge_order(tmp_path: Path) -> None:
    vocab = {"<pad>": 0, "<eos>": 1, "<0x41>": 2, "▁": 3, "a": 4, "b": 5, "ab": 6, "▁ab": 7}
    tokenizer = {
        "model": {"type": "BPE", "byte_fallback": True, "vocab": vocab, "merges": [["a", "b"], ["▁", "ab"]]},
        "added_tokens": [
            {"id": 0, "content": "<pad>", "special": True},
            {"id": 1, "content": "<eos>", "special": True},
        ],
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
    }
    summary, keys = _vocab_gguf(tmp_path, tokenizer, n_vocab=8)
    assert (summary.model, summary.pre) == ("llama", "default")
    t = gguf.TokenType
    assert keys["tokenizer.ggml.token_type"] == [t.CONTROL, t.CONTROL, t.BYTE] + [t.NORMAL] * 5
    # a merged token scores minus its merge's rank; the rest score below every merge
    assert keys["tokenizer.ggml.scores"] == [-1000.0, -1000.0, -3.0, -3.0, -3.0, -3.0, -0.0, -1.0]
    assert keys["tokenizer.ggml.add_space_prefix"] is False
    assert "tokenizer.ggml.merges" not in keys


def test_tokenizer_errors(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    w = gguf.GGUFWriter(tmp_path / "x.gguf", "qwen2")
    with pytest.raises(UserError, match="missing tokenizer file") as info:
        write_vocab(w, model_dir, 10)
    assert "copy the tokenizer files" in (info.value.hint or "")
    (model_dir / "tokenizer.model").write_bytes(b"spm")
    with pytest.raises(UserError) as info:
        write_vocab(w, model_dir, 10)
    assert "SentencePiece-only" in (info.value.hint or "")
    (model_dir / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        write_vocab(w, model_dir, 10)
    (model_dir / "tokenizer.json").write_text(json.dumps({"model": {"type": "Unigram", "vocab": []}}))
    with pytest.raises(UserError, match="unsupported tokenizer model 'Unigram'"):
        write_vocab(w, model_dir, 10)
    (model_dir / "tokenizer.json").write_text(json.dumps(_byte_level_tokenizer()))
    with pytest.raises(UserError, match="token id 5 but the model has only 5 embeddings"):
        write_vocab(w, model_dir, 5)


# ---- checkpoint.py -----------------------------------------------------------------------------


def _model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_latest_training_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with pytest.raises(UserError, match="no training run found"):
        checkpoint.latest_training_output(runs)
    final = _model_dir(runs / "sft-1" / "final")
    runs.joinpath("latest").write_text(str(final))  # what slmsql_cli/training/runner.py writes
    assert checkpoint.latest_training_output(runs) == final
    runs.joinpath("latest").unlink()
    os.symlink(runs / "sft-1", runs / "latest")  # a link to the run folder: its final/ model
    assert checkpoint.latest_training_output(runs) == final  # named by the run, not "latest"
    (runs / "latest").unlink()
    empty = runs / "empty"
    empty.mkdir()
    runs.joinpath("latest").write_text(str(empty))
    with pytest.raises(UserError, match="holds no model"):
        checkpoint.latest_training_output(runs)
    runs.joinpath("latest").write_text(str(runs / "gone"))
    with pytest.raises(UserError, match="no longer exists"):
        checkpoint.latest_training_output(runs)


def test_no_checkpoint_and_no_training_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slmsql_cli.quantize.export import ExportConfig, export

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no training run found"):
        export(ExportConfig(verify=False))


def test_resolve_local_folders_and_bad_specs(tmp_path: Path) -> None:
    model = _model_dir(tmp_path / "my-model")
    source = checkpoint.resolve(str(model))
    assert (source.path, source.label, source.repo_id, source.is_adapter) == (model, "my-model", None, False)
    with pytest.raises(UserError, match="not a Hugging Face model folder"):
        checkpoint.resolve(str(tmp_path))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(UserError, match="is a file, not a model folder"):
        checkpoint.resolve(str(tmp_path / "m.gguf"))
    with pytest.raises(UserError, match="checkpoint not found: ./nowhere"):
        checkpoint.resolve("./nowhere")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    assert checkpoint.resolve(str(adapter)).is_adapter


def test_hub_snapshot_identity_and_names(tmp_path: Path) -> None:
    rev = "0123456789abcdef0123456789abcdef01234567"
    snap = _model_dir(tmp_path / "hub" / "models--acme--tiny-qwen2" / "snapshots" / rev)
    source = checkpoint.resolve(str(snap))
    assert (source.label, source.repo_id, source.revision) == ("acme/tiny-qwen2", "acme/tiny-qwen2", rev)
    assert checkpoint.slug(source) == "acme--tiny-qwen2" and checkpoint.short_name(source) == "tiny-qwen2"
    assert checkpoint.identity(source) == checkpoint.identity(
        checkpoint.Source(tmp_path, "x", "acme/tiny-qwen2", rev)
    )

    local = checkpoint.resolve(str(_model_dir(tmp_path / "run one")))
    before = checkpoint.identity(local)
    assert checkpoint.identity(local) == before
    (local.path / "model.safetensors").write_bytes(b"x")
    assert checkpoint.identity(local) != before  # a new or changed file makes the cached export stale
    assert checkpoint.slug(local).startswith("run--one-") and checkpoint.short_name(local) == "run--one"


# ---- weights.py --------------------------------------------------------------------------------


def _write_raw_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]]) -> None:
    """A safetensors file written byte by byte (for dtypes numpy has not, such as bf16)."""
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(d for _, _, d in tensors.values()))


def test_reads_every_dtype_as_numpy(tmp_path: Path) -> None:
    f32 = np.array([[1.5, -2.0], [0.25, 3.0]], dtype=np.float32)
    save_file(
        {"f32": f32, "f16": f32.astype(np.float16), "i64": np.array([1, -2], dtype=np.int64)},
        str(tmp_path / "model.safetensors"),
    )
    values = np.array([1.0, -2.5, 0.15625, 2.0**120], dtype=np.float32)  # exact in bf16
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    _write_raw_safetensors(tmp_path / "extra.safetensors", {"bf16": ("BF16", (4,), bf16)})
    ckpt = Checkpoint(tmp_path)
    assert sorted(ckpt.names()) == ["bf16", "f16", "f32", "i64"] and "f32" in ckpt and "nope" not in ckpt
    assert ckpt.get("f32").tolist() == f32.tolist() and ckpt.get("f16").dtype == np.float32
    assert ckpt.get("f16").tolist() == f32.tolist()
    assert ckpt.get("bf16").tolist() == values.tolist() and ckpt.get("bf16").dtype == np.float32
    assert ckpt.get("i64").tolist() == [1, -2] and ckpt.get("i64").dtype == np.int64
    assert ckpt.refs["bf16"].shape == (4,) and ckpt.n_parameters == 4 + 4 + 2 + 4


def test_sharded_checkpoint_follows_its_index(tmp_path: Path) -> None:
    save_file({"a": np.zeros(2, dtype=np.float32)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b": np.ones(3, dtype=np.float32)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert Checkpoint(tmp_path).get("b").tolist() == [1.0, 1.0, 1.0]
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(UserError, match="missing safetensors shard"):
        Checkpoint(tmp_path)


def test_broken_weights_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no .safetensors weights .* \\(no weights\\)"):
        Checkpoint(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(UserError, match="pytorch_model.bin"):
        Checkpoint(tmp_path)
    path = tmp_path / "model.safetensors"
    save_file({"w": np.zeros((64, 64), dtype=np.float32)}, str(path))
    whole = path.read_bytes()
    path.write_bytes(whole[:-100])
    with pytest.raises(UserError, match="is truncated"):
        Checkpoint(tmp_path)
    path.write_bytes(whole[:4])
    with pytest.raises(UserError, match="truncated \\(no header\\)"):
        Checkpoint(tmp_path)
    path.write_bytes(struct.pack("<Q", 9) + b"{not json" + b"\0" * 16)
    with pytest.raises(UserError, match="corrupt header"):
        Checkpoint(tmp_path)
    _write_raw_safetensors(path, {"w": ("F32", (4,), b"\0" * 12)})
    with pytest.raises(UserError, match="inconsistent offsets"):
        Checkpoint(tmp_path)
    _write_raw_safetensors(path, {"w": ("C64", (1,), b"\0" * 8)})
    with pytest.raises(UserError, match="unsupported dtype C64"):
        Checkpoint(tmp_path)


# ---- convert.py: a whole checkpoint, numpy only ------------------------------------------------


def _tiny_llama(folder: Path) -> Path:
    """A two-layer Llama with its Q/K rows numbered, an untied lm_head and one huge weight."""
    folder.mkdir()
    vocab, hidden, ffn, heads = 8, 8, 16, 2
    config = {**BASE, "architectures": ["LlamaForCausalLM"], "hidden_size": hidden, "intermediate_size": ffn}
    config.update(
        num_attention_heads=heads, num_key_value_heads=heads, vocab_size=vocab, tie_word_embeddings=False
    )
    rng = np.random.default_rng(0)
    tensors = {
        "model.embed_tokens.weight": rng.standard_normal((vocab, hidden)),
        "lm_head.weight": rng.standard_normal((vocab, hidden)),
        "model.norm.weight": np.ones(hidden),
    }
    for i in range(2):
        p = f"model.layers.{i}."
        tensors |= {
            p + "input_layernorm.weight": np.ones(hidden),
            p + "post_attention_layernorm.weight": np.ones(hidden),
            p + "self_attn.q_proj.weight": np.repeat(np.arange(hidden, dtype=np.float64)[:, None], hidden, 1),
            p + "self_attn.k_proj.weight": rng.standard_normal((hidden, hidden)),
            p + "self_attn.v_proj.weight": rng.standard_normal((hidden, hidden)),
            p + "self_attn.o_proj.weight": rng.standard_normal((hidden, hidden)),
            p + "mlp.gate_proj.weight": rng.standard_normal((ffn, hidden)),
            p + "mlp.up_proj.weight": rng.standard_normal((ffn, hidden)),
            p + "mlp.down_proj.weight": rng.standard_normal((hidden, ffn)) * (1e6 if i == 1 else 1),
        }
    save_file({k: v.astype(np.float32) for k, v in tensors.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer = _byte_level_tokenizer()
    tokenizer["added_tokens"] = tokenizer["added_tokens"][:1]
    tokenizer["pre_tokenizer"]["pretokenizers"][0] = _split(LLAMA3_REGEX)
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    return folder


def test_convert_a_numpy_checkpoint(tmp_path: Path) -> None:
    model = _tiny_llama(tmp_path / "tiny-llama")
    progress: list[tuple[int, int, str]] = []
    result = convert(model, tmp_path / "out.gguf", on_tensor=lambda *a: progress.append(a))
    assert (result.arch, result.n_tensors, result.vocab.pre) == ("llama", 21, "llama-bpe")
    assert len(progress) == 21 and progress[-1][:2] == (21, 21)
    reader = gguf.GGUFReader(result.path)
    assert reader.fields["general.architecture"].contents() == "llama"
    tensors = {t.name: t for t in reader.tensors}
    assert "output.weight" in tensors and "token_embd.weight" in tensors  # untied: both kept
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32  # 1-D: f32
    assert tensors["blk.0.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["blk.1.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.F32  # would overflow f16
    q = np.asarray(tensors["blk.0.attn_q.weight"].data, dtype=np.float32)
    assert q[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]  # rotate-half → interleaved, per head


def test_convert_refuses_unknown_tensors(tmp_path: Path) -> None:
    model = _tiny_llama(tmp_path / "tiny-llama")
    save_file({"vision_tower.weight": np.zeros(2, dtype=np.float32)}, str(model / "vision.safetensors"))
    with pytest.raises(UserError, match="unexpected tensor 'vision_tower.weight'"):
        convert(model, tmp_path / "out.gguf")
    with pytest.raises(ValueError, match="f16 or f32"):
        convert(model, tmp_path / "out.gguf", outtype="q8_0")
