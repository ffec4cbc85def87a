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

The same vocabulary in Qwen2.5-Coder's layout (22 added tokens, `<|im_end|>` ending a turn, the
Qwen2.5 chat template; slmsql_cli/quantize/vocab.write_qwen25, which benchmarks/make_shaped_model.py uses for
the 0.5B-shaped benchmark model) gives the same ids and exports as the real model's.

No torch: the checkpoint is built with numpy and `safetensors.numpy`, and the export is not
verified against transformers (tests/test_export.py does that on trained models).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
import tokenizers
from typer.testing import CliRunner

from slmsql_cli.cli import app

SEPARATOR = "\n__ggml_vocab_test__\n"


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


@pytest.fixture(scope="module")
def vocab_gguf(data_dir: Path) -> Path:
    """Where llama.cpp's vocab GGUF was; its test cases sit beside that name."""
    return data_dir / "vocab" / "ggml-vocab-qwen2.gguf"


@pytest.fixture(scope="module")
def qwen2_vocab_model(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory, random_qwen2: Callable[..., Path]
) -> Path:
    return random_qwen2(tmp_path_factory.mktemp("qwen2-vocab") / "model", data_dir / "vocab" / "qwen2")


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
    assert llm.n_vocab() == 151936  # Qwen2's 151,646 tokens padded to a multiple of 128
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


# ---------------------------------------------------------------- Qwen2.5-Coder's layout (the shaped benchmark model)


@pytest.fixture(scope="module")
def qwen25_tokenizer_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tokenizer benchmarks/make_shaped_model.py gives the 0.5B-shaped model, built the same way
    (quantize.vocab.write_qwen25) from the Qwen2 tokenizer.json rebuilt out of llama.cpp's GGUF."""
    from slmsql_cli.quantize import vocab

    qwen2 = json.loads((data_dir / "vocab" / "qwen2" / "tokenizer.json").read_text(encoding="utf-8"))
    template = (data_dir / "vocab" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text(encoding="utf-8")
    out = tmp_path_factory.mktemp("qwen25-tokenizer")
    vocab.write_qwen25(qwen2, template, out)
    return out


def test_qwen25_layout_is_the_hub_layout(qwen25_tokenizer_dir: Path, vocab_gguf: Path) -> None:
    from slmsql_cli.quantize.vocab import QWEN25_ADDED

    assert sorted(p.name for p in qwen25_tokenizer_dir.iterdir()) == [
        "merges.txt",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
    ]
    config = json.loads((qwen25_tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert (config["eos_token"], config["pad_token"], config["bos_token"]) == (
        "<|im_end|>",
        "<|endoftext|>",
        None,
    )
    assert config["chat_template"].startswith("{%- if tools %}")
    added = {int(i): t["content"] for i, t in config["added_tokens_decoder"].items()}
    assert added == dict(
        enumerate(("<|endoftext|>", "<|im_start|>", "<|im_end|>", *QWEN25_ADDED), start=151643)
    )
    assert not config["added_tokens_decoder"]["151657"]["special"]  # <tool_call> stays in decoded text

    fast = tokenizers.Tokenizer.from_file(str(qwen25_tokenizer_dir / "tokenizer.json"))
    # the same BPE from vocab.json + merges.txt, as the Hub's slow tokenizer reads it
    files = tokenizers.Tokenizer.from_file(str(qwen25_tokenizer_dir / "tokenizer.json"))
    files.model = tokenizers.models.BPE.from_file(
        str(qwen25_tokenizer_dir / "vocab.json"), str(qwen25_tokenizer_dir / "merges.txt")
    )
    for text, ids in vocab_cases(vocab_gguf):
        if unicodedata.is_normalized("NFC", text):  # see test_hugging_face_agrees_with_the_cases_in_nfc
            assert fast.encode(text, add_special_tokens=False).ids == ids, text
            assert files.encode(text, add_special_tokens=False).ids == ids, text
    assert fast.encode("<|im_start|>user\n<tool_call><|fim_pad|>").ids[:1] == [151644]
    assert fast.encode("<tool_call><|file_sep|>").ids == [151657, 151664]


@pytest.fixture(scope="module")
def qwen25_vocab_model(
    qwen25_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory, random_qwen2: Callable[..., Path]
) -> Path:
    return random_qwen2(tmp_path_factory.mktemp("qwen25-vocab") / "model", qwen25_tokenizer_dir)


def test_shaped_model_tokenizer_exports_as_qwen25(
    qwen25_vocab_model: Path, qwen25_tokenizer_dir: Path, vocab_gguf: Path, reference_dir: Path
) -> None:
    """Exported with the automatic export's type, llama.cpp reads the Qwen2.5 layout as the real
    model's: the test cases' ids, <|im_end|> ends a turn, the Qwen2.5 template, same prompt ids."""
    import llama_cpp

    from slmsql_cli.engine import Engine
    from slmsql_cli.models import DEFAULT_QUANT
    from slmsql_cli.pipeline import chat_text

    out = qwen25_vocab_model.parent / "qwen25.gguf"
    result = CliRunner().invoke(app, ["export", str(qwen25_vocab_model), "--no-verify", "--out", str(out)])
    assert result.exit_code == 0, result.output
    llm = llama_cpp.Llama(model_path=str(out), vocab_only=True, verbose=False)
    for text, ids in vocab_cases(vocab_gguf):
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) == ids, text
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    assert llama_cpp.llama_vocab_eos(vocab) == 151645
    assert llama_cpp.llama_vocab_is_eog(vocab, 151645)
    template = json.loads((qwen25_tokenizer_dir / "tokenizer_config.json").read_text())["chat_template"]
    assert llm.metadata["tokenizer.chat_template"] == template
    llm.close()

    hf = tokenizers.Tokenizer.from_file(str(qwen25_tokenizer_dir / "tokenizer.json"))
    prompt = (reference_dir / "generation_prompt.example.txt").read_text(encoding="utf-8")
    with Engine(out, threads=1) as engine:
        assert engine.metadata["general.file_type"] == str(_ftype(DEFAULT_QUANT))
        chat = chat_text(engine, prompt)
        assert chat.startswith("<|im_start|>system\n") and chat.endswith("<|im_start|>assistant\n")
        assert engine.tokenize(chat) == hf.encode(chat, add_special_tokens=False).ids


def _ftype(quant: str) -> int:
    from slmsql_cli.quantize import quantizer

    return quantizer.FTYPES[quantizer.recipe(quant).ftype][0]
