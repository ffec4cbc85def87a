"""A tiny random Qwen2 carrying the *real* Qwen2 tokenizer exports with the real tokenization.

The vocabulary (tests/data/vocab/qwen2) is the `tokenizer.json` the Qwen2 Hub repositories ship
(NFC normalizer, the Qwen2 split regex, byte-level BPE with 151,643 tokens and their merges, three
special tokens), rebuilt from llama.cpp's own vocab-only GGUF of Qwen2 (tests/data/make_subset.py).
A one-layer random model with the padded 151,936-row embedding is written with numpy alone,
exported by `slmsql export`, and then:

* the GGUF is a Qwen2 vocabulary to llama.cpp, every token id holding the token's text;
* llama.cpp tokenizes llama.cpp's tokenizer test cases (`.inp`) into the expected ids (`.out`),
  the cases llama.cpp's own tests check against that GGUF;
* llama.cpp (through slmsql's Engine, as `ask` uses it) and the Hugging Face tokenizer give the
  same ids for every reference prompt, bare and in the chat template.

No torch: the checkpoint is built with numpy and `safetensors.numpy`, and the export is not
verified against transformers (tests/test_export.py does that on trained models).
"""

from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import tokenizers
from safetensors.numpy import save_file
from typer.testing import CliRunner

from slmsql_cli.cli import app

SEPARATOR = "\n__ggml_vocab_test__\n"
N_EMBD = 151936  # Qwen2's embedding rows: 151,646 tokens padded to a multiple of 128


def vocab_cases(vocab_gguf: Path) -> list[tuple[str, list[int]]]:
    """llama.cpp's tokenizer test cases: (text, expected ids), as tests/test-tokenizer-0 reads them."""
    texts = vocab_gguf.with_name(vocab_gguf.name + ".inp").read_text(encoding="utf-8").split(SEPARATOR)
    assert texts[-1] == ""
    ids = (
        vocab_gguf.with_name(vocab_gguf.name + ".out")
        .read_text(encoding="utf-8")
        .split("\n")[: len(texts) - 1]
    )
    return [(text, [int(i) for i in line.split()]) for text, line in zip(texts[:-1], ids)]


def _random_qwen2(folder: Path, tokenizer_dir: Path) -> Path:
    """A one-layer Qwen2 with random f16 weights, saved as Hugging Face would (tied embeddings)."""
    hidden, ffn, heads, kv_heads = 64, 128, 4, 2
    head = hidden // heads
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": N_EMBD,
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": 1,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "torch_dtype": "float16",
    }
    rng = np.random.default_rng(0)
    shapes = {
        "model.embed_tokens.weight": (N_EMBD, hidden),
        "model.norm.weight": (hidden,),
        "model.layers.0.input_layernorm.weight": (hidden,),
        "model.layers.0.post_attention_layernorm.weight": (hidden,),
        "model.layers.0.self_attn.q_proj.weight": (heads * head, hidden),
        "model.layers.0.self_attn.q_proj.bias": (heads * head,),
        "model.layers.0.self_attn.k_proj.weight": (kv_heads * head, hidden),
        "model.layers.0.self_attn.k_proj.bias": (kv_heads * head,),
        "model.layers.0.self_attn.v_proj.weight": (kv_heads * head, hidden),
        "model.layers.0.self_attn.v_proj.bias": (kv_heads * head,),
        "model.layers.0.self_attn.o_proj.weight": (hidden, heads * head),
        "model.layers.0.mlp.gate_proj.weight": (ffn, hidden),
        "model.layers.0.mlp.up_proj.weight": (ffn, hidden),
        "model.layers.0.mlp.down_proj.weight": (hidden, ffn),
    }
    tensors = {name: (rng.standard_normal(shape) * 0.05).astype(np.float16) for name, shape in shapes.items()}
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tokenizer_dir / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def vocab_gguf(data_dir: Path) -> Path:
    """Where llama.cpp's vocab GGUF was; its test cases sit beside that name."""
    return data_dir / "vocab" / "ggml-vocab-qwen2.gguf"


@pytest.fixture(scope="module")
def qwen2_vocab_model(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _random_qwen2(tmp_path_factory.mktemp("qwen2-vocab") / "model", data_dir / "vocab" / "qwen2")


@pytest.fixture(scope="module")
def exported(qwen2_vocab_model: Path) -> Path:
    out = qwen2_vocab_model.parent / "tiny-qwen2-real-vocab.gguf"
    result = CliRunner().invoke(
        app, ["export", str(qwen2_vocab_model), "--q8", "--no-verify", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert (doc["arch"], doc["quant"]) == ("qwen2", "q8_0")
    return out


@pytest.fixture(scope="module")
def hf_tokenizer(qwen2_vocab_model: Path):  # -> tokenizers.Tokenizer
    return tokenizers.Tokenizer.from_file(str(qwen2_vocab_model / "tokenizer.json"))


def test_export_keeps_the_vocabulary(exported: Path, qwen2_vocab_model: Path) -> None:
    import llama_cpp

    hub = json.loads((qwen2_vocab_model / "tokenizer.json").read_text(encoding="utf-8"))
    llm = llama_cpp.Llama(model_path=str(exported), vocab_only=True, verbose=False)
    assert llm.metadata["tokenizer.ggml.model"] == "gpt2" and llm.metadata["tokenizer.ggml.pre"] == "qwen2"
    assert llm.n_vocab() == N_EMBD
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    texts = {
        t: llama_cpp.llama_vocab_get_text(vocab, i).decode("utf-8") for t, i in hub["model"]["vocab"].items()
    }
    assert [t for t, text in texts.items() if t != text] == []
    specials = {t["content"]: t["id"] for t in hub["added_tokens"]}
    assert specials == {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
    for text, i in specials.items():
        assert llama_cpp.llama_vocab_get_text(vocab, i).decode("utf-8") == text
        assert llama_cpp.llama_vocab_get_attr(vocab, i) & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    assert llama_cpp.llama_vocab_eos(vocab) == 151643
    assert llm.metadata["tokenizer.chat_template"].startswith("{% for message in messages %}")


def test_llama_cpp_tokenizes_its_own_test_cases(exported: Path, vocab_gguf: Path) -> None:
    import llama_cpp

    cases = vocab_cases(vocab_gguf)
    assert len(cases) == 46
    llm = llama_cpp.Llama(model_path=str(exported), vocab_only=True, verbose=False)
    got = [llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) for text, _ in cases]
    for (text, ids), tokens in zip(cases, got):
        assert tokens == ids, text


def test_hugging_face_agrees_with_the_cases_in_nfc(hf_tokenizer, vocab_gguf: Path) -> None:
    """The rebuilt tokenizer.json is the real one: it gives llama.cpp's expected ids too, except
    on text not in NFC form, which Qwen2's normalizer composes and llama.cpp does not."""
    cases = vocab_cases(vocab_gguf)
    nfc = [(text, ids) for text, ids in cases if unicodedata.is_normalized("NFC", text)]
    assert len(nfc) >= len(cases) - 2
    for text, ids in nfc:
        assert hf_tokenizer.encode(text, add_special_tokens=False).ids == ids, text


def test_reference_prompts_tokenize_the_same_in_llama_cpp_and_hugging_face(
    exported: Path, hf_tokenizer, reference_dir: Path
) -> None:
    from slmsql_cli.engine import Engine
    from slmsql_cli.pipeline import chat_text

    cases = json.loads((reference_dir / "prompts_no_values.json").read_text(encoding="utf-8"))
    prompts = [c["prompt"] for c in cases] + [
        (reference_dir / name).read_text(encoding="utf-8")
        for name in ("generation_prompt.example.txt", "merge_prompt.example.txt")
    ]
    engine = Engine(exported, threads=1)
    try:
        for prompt in prompts:
            chat = chat_text(engine, prompt)  # what `ask` feeds the model
            assert chat.startswith("<|im_start|>system\n") and chat.count("<|im_start|>") == 3
            for text in (prompt, chat):
                expected = hf_tokenizer.encode(text, add_special_tokens=False).ids
                assert engine.tokenize(text) == expected, text[:80]
    finally:
        engine.close()
