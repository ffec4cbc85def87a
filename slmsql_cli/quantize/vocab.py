"""Hugging Face tokenizer folders rebuilt from llama.cpp's vocab-only GGUF of Qwen2: the inverse of
`tokenizer.py`, for test data and benchmark models that must speak the real Qwen vocabulary.

`qwen2_tokenizer_json` turns `ggml-vocab-qwen2.gguf` into the `tokenizer.json` the Qwen2 Hub
repositories ship (NFC normalizer, Qwen2's split regex, byte-level BPE with 151,643 tokens and
their merges, three special tokens). `write_qwen2` lays it out as Qwen2's repositories do;
`write_qwen25` as Qwen2.5(-Coder)'s do: the same BPE plus the 22 added tokens of Qwen2.5 at ids
151,643-151,664, `<|im_end|>` as end of turn, `vocab.json` and `merges.txt` beside
`tokenizer.json`, and the Qwen2.5 chat template in `tokenizer_config.json`.

Deviation from the Hub files: none in the token ids, merges or split rules (llama.cpp's tokenizer
test cases check that); the JSON key order and the `tokenizer_config.json` fields that only
transformers reads (e.g. `model_input_names`) may differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slmsql_cli.quantize.tokenizer import QWEN2_REGEX

QWEN2_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # ids 151643-151645
# Qwen2.5's added tokens after those three (ids 151646-151664), as its tokenizer_config.json lists
# them; the last eight are not `special` there (they stay in decoded text).
QWEN25_ADDED = (
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
QWEN25_NOT_SPECIAL = frozenset(QWEN25_ADDED[11:])
FIRST_SPECIAL_ID = 151643
_BYTE_LEVEL = {"add_prefix_space": False, "trim_offsets": False, "use_regex": False}


def _added(token_id: int, text: str, special: bool = True) -> dict[str, Any]:
    flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False}
    return {"id": token_id, "content": text, **flags, "special": special}


def qwen2_tokenizer_json(vocab_gguf: Path) -> tuple[dict[str, Any], str]:
    """Qwen2's `tokenizer.json` (as a dict) and the GGUF's chat template, read from llama.cpp's
    vocab-only GGUF (gguf's reader needs about half a minute for its 300,000 strings)."""
    import gguf

    reader = gguf.GGUFReader(vocab_gguf)

    def field(key: str) -> Any:
        return reader.fields[key].contents()

    tokens, types = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type")
    if field("tokenizer.ggml.pre") != "qwen2":
        raise ValueError(f"{vocab_gguf} is not a Qwen2 vocabulary")
    normal = gguf.TokenType.NORMAL
    tokenizer: dict[str, Any] = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            _added(i, t) for i, (t, typ) in enumerate(zip(tokens, types)) if typ == gguf.TokenType.CONTROL
        ],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", **_BYTE_LEVEL},
            ],
        },
        "post_processor": {"type": "ByteLevel", **_BYTE_LEVEL},
        "decoder": {"type": "ByteLevel", **_BYTE_LEVEL},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": {t: i for i, (t, typ) in enumerate(zip(tokens, types)) if typ == normal},
            "merges": list(field("tokenizer.ggml.merges")),
        },
    }
    if [t["content"] for t in tokenizer["added_tokens"]] != list(QWEN2_SPECIAL):
        raise ValueError(f"{vocab_gguf}: unexpected special tokens")
    return tokenizer, field("tokenizer.chat_template")


def _config(chat_template: str, eos: str) -> dict[str, Any]:
    return {
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": eos,
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "chat_template": chat_template,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": 32768,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
    }


def _write(out: Path, tokenizer: dict[str, Any], config: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(
        json.dumps(config, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def write_qwen2(tokenizer: dict[str, Any], chat_template: str, out: Path) -> None:
    """Qwen2's layout: tokenizer.json and tokenizer_config.json (three special tokens)."""
    _write(out, tokenizer, _config(chat_template, eos="<|endoftext|>"))


def write_qwen25(qwen2: dict[str, Any], chat_template: str, out: Path) -> None:
    """Qwen2.5(-Coder)'s layout from Qwen2's tokenizer.json: its 22 added tokens, `<|im_end|>` as
    end of turn, vocab.json and merges.txt beside tokenizer.json, `chat_template` in the config."""
    texts = (*QWEN2_SPECIAL, *QWEN25_ADDED)
    added = [
        _added(FIRST_SPECIAL_ID + k, t, special=t not in QWEN25_NOT_SPECIAL) for k, t in enumerate(texts)
    ]
    tokenizer = {**qwen2, "added_tokens": added}
    config = {"add_bos_token": False, **_config(chat_template, eos="<|im_end|>")}
    config["added_tokens_decoder"] = {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added}
    config["additional_special_tokens"] = [a["content"] for a in added[1:14]]
    _write(out, tokenizer, config)
    model = qwen2["model"]
    (out / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False), encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
