"""`slmsql export`: tiny random checkpoints of every supported architecture, built offline with
transformers and a tokenizer trained here, exported to GGUF and compared with torch; the real
Gemma 3 270M GGUF round-tripped through transformers; bad input; the CLI."""

from __future__ import annotations

import importlib
import json
import os
import shutil
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest

if not all(find_spec(m) for m in ("torch", "transformers", "llama_cpp")):
    pytest.skip("needs the [train] extra (torch, transformers)", allow_module_level=True)


class _OnFirstUse:
    """A module imported on first attribute access: collecting this file (every test in it is
    slow, deselected in the fast lane) then costs no torch import."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # pytest probes module globals for `_mock_name` and the like
            raise AttributeError(attr)
        return getattr(importlib.import_module(self.name), attr)


torch: Any = _OnFirstUse("torch")
transformers: Any = _OnFirstUse("transformers")

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from typer.testing import CliRunner

from slmsql_cli.errors import UserError
from slmsql_cli.quantize import quantizer
from slmsql_cli.quantize import verify as verifier
from slmsql_cli.quantize.export import ExportConfig, cached_export, export, find_cached_export
from slmsql_cli.quantize.tokenizer import LLAMA3_REGEX, QWEN2_REGEX

CORPUS = [
    "SELECT name FROM singer WHERE age > 30 ORDER BY age DESC LIMIT 5;",
    "Question: How many singers are there? SQL: SELECT COUNT(*) FROM singer;",
    "List the titles of all albums released after 2001 by the artist 'Queen'.",
    "The average age is 47.5 years, données: 東京, 서울.\n\tIndented line\n",
    "Answer: 42 singers older than 30, and what is their average?",
] * 20
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
DEEPSEEK_SPLITS = [
    "[\r\n]",
    r"\s?[A-Za-zµÀ-ÖØ-öø-ƺ]+",
    r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
    r"\s+$",
    "[一-龥ࠀ-一가-퟿]+",
]


# ---------------------------------------------------------------- tiny checkpoints, built offline


def byte_level_tokenizer(style: str) -> Any:
    """A small byte-level BPE with the pre-tokenizer of Qwen2 ("qwen2"), Llama 3 ("llama3") or deepseek-coder."""
    tok = Tokenizer(models.BPE())
    if style == "deepseek":
        splits = [pre_tokenizers.Split(Regex(r), "isolated") for r in DEEPSEEK_SPLITS]
        splits.append(pre_tokenizers.Digits(individual_digits=True))
    else:
        splits = [pre_tokenizers.Split(Regex(QWEN2_REGEX if style == "qwen2" else LLAMA3_REGEX), "isolated")]
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    bos = {"qwen2": None, "llama3": "<|begin_of_text|>", "deepseek": "<｜begin▁of▁sentence｜>"}[style]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + ([bos] if bos else [])
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    kwargs: dict[str, Any] = {
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "chat_template": CHATML,
    }
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
        kwargs["bos_token"] = bos
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def spm_tokenizer() -> Any:
    """A Gemma-style BPE with byte fallback ('▁' for spaces, <0xNN> byte tokens, <bos> added)."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"] + [
        f"<0x{i:02X}>" for i in range(256)
    ]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.train_from_iterator(
        CORPUS, trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>"
    )


def _perturb(model: Any, scale: float) -> None:
    # random init leaves norms at 1 (Gemma: 0) and biases at 0; perturb so every tensor matters
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)


SMALL = dict(
    hidden_size=256,
    intermediate_size=512,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    initializer_range=0.08,
)

MODELS: dict[str, Callable[[], tuple[Any, Any, Any]]] = {
    # name: (config, tokenizer, dtype the safetensors are saved in)
    "qwen2": lambda: (
        transformers.Qwen2Config(vocab_size=512, tie_word_embeddings=True, **SMALL),
        byte_level_tokenizer("qwen2"),
        torch.bfloat16,
    ),
    "qwen3": lambda: (
        transformers.Qwen3Config(vocab_size=448, head_dim=64, tie_word_embeddings=True, **SMALL),
        byte_level_tokenizer("qwen2"),
        torch.float32,
    ),
    "llama-linear": lambda: (
        transformers.LlamaConfig(
            vocab_size=416,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 100000.0},
            **SMALL,
        ),
        byte_level_tokenizer("deepseek"),
        torch.bfloat16,
    ),
    "llama3": lambda: (
        transformers.LlamaConfig(
            vocab_size=416,
            tie_word_embeddings=True,
            rope_parameters={
                "rope_type": "llama3",
                "factor": 32.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
                "rope_theta": 500000.0,
            },
            **SMALL,
        ),
        byte_level_tokenizer("llama3"),
        torch.float16,
    ),
    "gemma3": lambda: (
        transformers.Gemma3TextConfig(
            vocab_size=720,
            hidden_size=256,
            intermediate_size=512,
            num_hidden_layers=3,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=128,
            query_pre_attn_scalar=128,
            sliding_window=8,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            max_position_embeddings=512,
            initializer_range=0.08,
            architectures=["Gemma3ForCausalLM"],
        ),
        spm_tokenizer(),
        torch.bfloat16,
    ),
}


def _train(model: Any, tok: Any, steps: int = 16) -> None:
    """A few steps on the corpus and the probe text: a random model's near-tied predictions make
    top-1 agreement meaningless; a briefly trained one is confident like a real checkpoint.
    (8 steps left the tiny Qwen2's q4_k_m agreement at 79.7%, one token under the 80% floor, with
    transformers 5.24; 16 steps: 90.5% for Qwen2 and Llama 3, 100% for Gemma 3.)"""
    ids = torch.tensor([tok("\n".join(CORPUS[:5] + [verifier.PROBE_TEXT]))["input_ids"]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def build(name: str, folder: Path) -> Path:
    config, tok, dtype = MODELS[name]()
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    _perturb(model, 0.02)
    _train(model, tok)
    shard = "2MB" if name == "qwen3" else "5GB"  # qwen3 is saved in shards with an index
    model.eval().to(dtype).save_pretrained(folder, max_shard_size=shard)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = build(name, tmp_path_factory.mktemp(name))
        return built[name]

    return get


def torch_logits(folder: Path, ids: list[int]) -> np.ndarray:
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


# ---------------------------------------------------------------- parity per architecture and type

PARITY = [(name, quant) for name in MODELS for quant in ("f16", "q8_0")] + [
    ("qwen2", "q4_k_m"),
    ("llama3", "q4_k_m"),
    ("gemma3", "q4_k_m"),
    ("qwen3", "f32"),
]


@pytest.mark.parametrize("name,quant", PARITY, ids=[f"{n}-{q}" for n, q in PARITY])
def test_export_matches_torch(name: str, quant: str, tiny: Callable[[str], Path], tmp_path: Path) -> None:
    source = tiny(name)
    result = export(
        ExportConfig(checkpoint=str(source), out=tmp_path / "m.gguf", quant=quant, verify=True, threads=2)
    )
    report = result.verification
    assert report is not None and report.passed, report and report.summary()
    assert report.tokens_match
    print(
        f"PARITY {name} {quant}: max|dlogit| {report.max_abs_delta:.5f} ({report.rel_delta:.4f} std) "
        f"top-1 {report.top1_agreement:.3f} over {report.n_tokens} tokens"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]  # no temporary files left


def test_llama3_rope_freqs_and_gemma_keys(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    from gguf import GGUFReader

    export(ExportConfig(checkpoint=str(tiny("llama3")), out=tmp_path / "l.gguf", quant="f16", verify=False))
    reader = GGUFReader(tmp_path / "l.gguf")
    assert "rope_freqs.weight" in {t.name for t in reader.tensors}
    assert reader.fields["tokenizer.ggml.pre"].contents() == "llama-bpe"
    assert "<|im_start|>" in reader.fields["tokenizer.chat_template"].contents()

    export(ExportConfig(checkpoint=str(tiny("gemma3")), out=tmp_path / "g.gguf", quant="f16", verify=False))
    reader = GGUFReader(tmp_path / "g.gguf")
    assert reader.fields["gemma3.attention.sliding_window_pattern"].contents() == [True, True, False]
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama"


# ---------------------------------------------------------------- LoRA


def test_lora_adapter_is_merged_then_exported(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    base = tiny("qwen2")
    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(2)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)  # B starts at zero: make the adapter change something
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base)

    result = export(
        ExportConfig(checkpoint=str(adapter), out=tmp_path / "lora.gguf", quant="f16", verify=True)
    )
    assert result.verification is not None and result.verification.passed
    assert "merged LoRA adapter" in result.notes
    ids = transformers.AutoTokenizer.from_pretrained(base)(verifier.PROBE_TEXT)["input_ids"]
    merged = verifier.gguf_logits(result.path, ids)
    assert (
        np.abs(merged - torch_logits(base, ids)).max() > 10 * result.verification.max_abs_delta
    )  # the adapter is in


# ---------------------------------------------------------------- the real Gemma 3 270M, round trip


@pytest.fixture(scope="session")
def gemma_hf(gemma_gguf: Path) -> Path:
    """The Gemma GGUF loaded into transformers (dequantized) and saved as safetensors; cached."""
    folder = gemma_gguf.parent / "gemma-3-270m-hf-f16"
    if (folder / "model.safetensors").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = transformers.AutoTokenizer.from_pretrained(gemma_gguf.parent, gguf_file=gemma_gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        gemma_gguf.parent, gguf_file=gemma_gguf.name, dtype=torch.float16
    )
    model.hf_quantizer = None  # already dequantized; the GGUF quantizer refuses to serialize
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, folder)
    return folder


@pytest.mark.slow
def test_gemma_gguf_round_trip(gemma_gguf: Path, gemma_hf: Path, tmp_path: Path) -> None:
    result = export(
        ExportConfig(
            checkpoint=str(gemma_hf), out=tmp_path / "gemma-f16.gguf", quant="f16", verify=True, threads=2
        )
    )
    report = result.verification
    assert report is not None and report.passed, report and report.summary()
    print(f"PARITY gemma-270m f16 vs transformers: {report.summary()}")

    # quantized again, it behaves like the original Q4_K_M file: same tokens, same predictions
    again = tmp_path / "gemma-q4_k_m.gguf"
    quantizer.quantize(result.path, again, "q4_k_m", threads=2)
    ids = verifier.gguf_tokenize(gemma_gguf, verifier.PROBE_TEXT)
    assert verifier.gguf_tokenize(again, verifier.PROBE_TEXT) == ids
    delta, std, top1 = verifier.compare(
        verifier.gguf_logits(gemma_gguf, ids, 2), verifier.gguf_logits(again, ids, 2)
    )
    print(
        f"PARITY gemma-270m q4_k_m re-export vs original q4_k_m: max|dlogit| {delta:.4f} ({delta / std:.4f} std) top-1 {top1:.3f}"
    )
    assert top1 >= 0.9 and delta / std < 1.0


# ---------------------------------------------------------------- cache for `ask --model`


def test_cached_export_exports_once(tiny: Callable[[str], Path], isolated_cache: Path) -> None:
    source = tiny("qwen3")
    assert len(list(source.glob("*.safetensors"))) > 1 and (source / "model.safetensors.index.json").is_file()
    assert find_cached_export(str(source)) is None
    first = cached_export(str(source), quant="q8_0", verify=False)
    assert first.is_file() and isolated_cache in first.parents
    mtime = first.stat().st_mtime_ns
    assert cached_export(str(source), quant="q8_0") == first and first.stat().st_mtime_ns == mtime
    assert find_cached_export(str(source), "q8_0") == first


def test_cached_export_of_a_hub_snapshot_is_keyed_by_repo_and_revision(
    tiny: Callable[[str], Path], isolated_cache: Path, tmp_path: Path
) -> None:
    # the folder layout huggingface-hub's snapshot_download returns (what `ask --model owner/name` passes)
    snapshot = tmp_path / "hub" / "models--cycloneboy--SLM-SQL-0.5B" / "snapshots" / "0123abcd4567"
    shutil.copytree(tiny("qwen2"), snapshot)
    path = cached_export(str(snapshot), quant="f16", verify=False)
    assert path.parent.parent.name == "cycloneboy--SLM-SQL-0.5B"
    assert find_cached_export("cycloneboy/SLM-SQL-0.5B", "f16") == path
    assert find_cached_export("cycloneboy/SLM-SQL-0.5B", "q4_k_m") is None


# ---------------------------------------------------------------- bad input: one clear error, nothing written


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def _assert_clean(folder: Path) -> None:
    assert list(folder.iterdir()) == [], f"left behind: {list(folder.iterdir())}"


def test_unsupported_architecture(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    src = _copy(tiny("qwen2"), tmp_path / "src")
    config = json.loads((src / "config.json").read_text())
    config["architectures"] = ["MambaForCausalLM"]
    (src / "config.json").write_text(json.dumps(config))
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="unsupported architecture: MambaForCausalLM"):
        export(ExportConfig(checkpoint=str(src), out=tmp_path / "out" / "m.gguf", verify=False))
    _assert_clean(tmp_path / "out")


def test_missing_tokenizer(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    src = _copy(tiny("qwen2"), tmp_path / "src")
    (src / "tokenizer.json").unlink()
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="missing tokenizer file"):
        export(ExportConfig(checkpoint=str(src), out=tmp_path / "out" / "m.gguf", verify=False))
    _assert_clean(tmp_path / "out")


def test_truncated_safetensors(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    src = _copy(tiny("qwen2"), tmp_path / "src")
    weights = src / "model.safetensors"
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size - 1000)
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="truncated"):
        export(ExportConfig(checkpoint=str(src), out=tmp_path / "out" / "m.gguf", verify=False))
    _assert_clean(tmp_path / "out")


def test_existing_output_needs_force(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    out.write_text("keep me")
    with pytest.raises(UserError, match="already exists"):
        export(ExportConfig(checkpoint=str(tiny("qwen2")), out=out, quant="f16", verify=False))
    assert out.read_text() == "keep me"
    export(ExportConfig(checkpoint=str(tiny("qwen2")), out=out, quant="f16", verify=False, force=True))
    assert out.read_bytes()[:4] == b"GGUF"


def test_disk_space_shortfall(
    tiny: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the machine's disk is the environment, not the code under test: pretend it is nearly full
    monkeypatch.setattr(
        shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(10**12, 10**12 - 4096, 4096)
    )  # type: ignore[attr-defined]
    with pytest.raises(UserError, match="not enough disk space"):
        export(ExportConfig(checkpoint=str(tiny("qwen2")), out=tmp_path / "m.gguf", verify=False))
    _assert_clean(tmp_path)


def test_failed_verification_writes_nothing(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    # a normalizer llama.cpp does not implement: the GGUF tokenizes differently, which the check catches
    src = _copy(tiny("llama3"), tmp_path / "src")
    tokenizer = json.loads((src / "tokenizer.json").read_text())
    tokenizer["normalizer"] = {"type": "Lowercase"}
    (src / "tokenizer.json").write_text(json.dumps(tokenizer))
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="verification failed.*tokenizer differs at token 1"):
        export(ExportConfig(checkpoint=str(src), out=tmp_path / "out" / "m.gguf", quant="f16", verify=True))
    _assert_clean(tmp_path / "out")


def test_default_checkpoint_is_latest_training_run(
    tiny: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slmsql_cli.training.runner import write_latest

    monkeypatch.chdir(tmp_path)
    final = tmp_path / "runs" / "sft-demo" / "final"
    shutil.copytree(tiny("qwen2"), final)
    write_latest(final)  # the pointer `slmsql train` leaves behind
    result = export(ExportConfig(quant="f16", verify=False))
    assert result.path == tmp_path / "sft-demo-F16.gguf" and result.path.is_file()

    shutil.rmtree(final)
    with pytest.raises(UserError, match="no longer exists"):
        export(ExportConfig(quant="f16", verify=False, force=True))


# ---------------------------------------------------------------- the command line


def test_cli_export_json(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    from slmsql_cli.cli import app

    out = tmp_path / "cli.gguf"
    res = CliRunner().invoke(app, ["export", str(tiny("qwen3")), "--out", str(out), "--q8", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert doc["quant"] == "q8_0" and doc["arch"] == "qwen3" and doc["verification"]["passed"]
    assert out.is_file()


def test_cli_errors_are_one_line(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    from slmsql_cli.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["export", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "checkpoint not found" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["export", str(tiny("qwen2")), "--q4", "--q8"])
    assert res.exit_code == 2 and "choose one quantization" in res.output
    res = runner.invoke(app, ["export", str(tiny("qwen2")), "--quant", "q9_z"])
    assert res.exit_code == 2 and "unknown quantization type" in res.output


def test_export_of_a_hub_repo_id_needs_no_network_once_cached(
    tiny: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`slmsql export owner/name` on a machine with no network: a cached repo exports, an uncached one is one line."""
    from huggingface_hub import constants

    from slmsql_cli.cli import app

    revision = "89abcdef0123456789abcdef0123456789abcdef"
    repo = tmp_path / "hf" / "hub" / "models--acme--tiny-qwen2"
    shutil.copytree(tiny("qwen2"), repo / "snapshots" / revision)  # the layout huggingface-hub writes
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(repo.parent))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")  # never resolves (RFC 2606)

    runner = CliRunner()
    out = tmp_path / "from-hub.gguf"
    res = runner.invoke(app, ["export", "acme/tiny-qwen2", "--out", str(out), "--q8", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert doc["verification"]["passed"] and out.read_bytes()[:4] == b"GGUF"
    res = runner.invoke(app, ["export", "acme/not-downloaded", "--out", str(tmp_path / "no.gguf")])
    assert (
        res.exit_code == 2 and "not cached" in res.output and "hf download acme/not-downloaded" in res.output
    )
    assert "Traceback" not in res.output and not (tmp_path / "no.gguf").exists()
