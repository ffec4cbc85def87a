"""A Hugging Face `tokenizer.json` as GGUF `tokenizer.*` keys, without transformers.

Two tokenizer families cover the supported models:

* byte-level BPE (Qwen2.5/Qwen3, Llama 3, deepseek-coder) -> `tokenizer.ggml.model = "gpt2"` with
  merges and a *pre-tokenizer name* that tells llama.cpp which split regex to apply;
* SentencePiece-style BPE with byte fallback (Gemma 3, as transformers saves it) ->
  `tokenizer.ggml.model = "llama"` with per-token scores. llama.cpp merges the adjacent pair whose
  result has the highest score, so a token's score is minus the rank of the first merge that
  produces it, which reproduces the merge order of tokenizer.json.

How the pre-tokenizer name is chosen: llama.cpp's converter hashes the token ids of a test string,
which only works for the exact published vocabularies. We instead read the pre-tokenizer the
tokenizer itself declares (its Split regexes, Digits and ByteLevel steps) and match it against the
regexes llama.cpp implements for each name (src/llama-vocab.cpp). Fine-tunes keep their base
model's tokenizer.json, so they match too; a pre-tokenizer llama.cpp has no name for is an error
rather than a silently degraded GGUF.

Special token ids, add_bos/add_eos, merges and the chat template come from gguf's SpecialVocab,
which reads tokenizer.json, tokenizer_config.json, chat_template.jinja and config.json.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from slmsql_cli.errors import UserError

QWEN2_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


@dataclass
class VocabSummary:
    model: str  # "gpt2" or "llama"
    pre: str
    n_tokens: int
    n_merges: int
    chat_template: bool


def _steps(node: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [s for child in node.get("pretokenizers", []) for s in _steps(child)]
    return [node]


def pre_tokenizer_name(tokenizer_json: dict[str, Any]) -> str:
    """The llama.cpp pre-tokenizer name for a byte-level BPE tokenizer.json (see module docstring)."""
    steps = _steps(tokenizer_json.get("pre_tokenizer"))
    regexes = [
        s["pattern"].get("Regex", s["pattern"].get("String")) for s in steps if s.get("type") == "Split"
    ]
    digits = [s for s in steps if s.get("type") == "Digits"]
    byte_level = [s for s in steps if s.get("type") == "ByteLevel"]
    if regexes == [QWEN2_REGEX]:
        return "qwen2"
    if regexes == [LLAMA3_REGEX]:
        return "llama-bpe"
    if regexes and regexes[0] == "[\r\n]" and any(r.startswith(r"\s?[A-Za-z") for r in regexes):
        # deepseek's Sequence: newline, letters, punctuation, CJK splits, then digits
        individual = bool(digits and digits[0].get("individual_digits"))
        return "deepseek-coder" if individual else "deepseek-llm"
    if not regexes and len(byte_level) == 1 and byte_level[0].get("use_regex", True):
        if not digits:
            return "gpt-2"
        if [s.get("type") for s in steps] == ["Digits", "ByteLevel"] and digits[0].get("individual_digits"):
            # SmolLM/SmolLM2 (and StarCoder's family): every digit its own word, then GPT-2's regex;
            # llama.cpp's "smollm" is exactly \p{N} followed by the GPT-2 regex
            return "smollm"
    raise UserError(
        "the tokenizer's pre-tokenizer is not one llama.cpp knows (expected Qwen2, Llama 3, deepseek-coder, SmolLM or GPT-2 style)",
        "fine-tunes must keep their base model's tokenizer.json",
    )


def _is_spm_bpe(tokenizer_json: dict[str, Any]) -> bool:
    model = tokenizer_json.get("model", {})
    return model.get("type") == "BPE" and bool(model.get("byte_fallback"))


def _looks_special(text: str) -> bool:
    # same heuristic as llama.cpp's converter: some models forget the `special` flag
    return (
        (text.startswith("<|") and text.endswith("|>"))
        or (text.startswith("<｜") and text.endswith("｜>"))
        or text == "<pad>"
    )


def load_tokenizer_json(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        hint = "this export needs the fast tokenizer file tokenizer.json"
        if (model_dir / "tokenizer.model").is_file():
            hint += " (SentencePiece-only tokenizers are not supported; save the tokenizer with transformers to get one)"
        else:
            hint += "; copy the tokenizer files of the base model into the checkpoint directory"
        raise UserError(f"missing tokenizer file: {path}", hint)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise UserError(f"{path} is not valid JSON", "download or save the tokenizer again") from None


def write_vocab(w: gguf.GGUFWriter, model_dir: Path, n_vocab: int) -> VocabSummary:
    """Write every `tokenizer.*` key; `n_vocab` (embedding rows) pads the token list with unused slots."""
    tj = load_tokenizer_json(model_dir)
    model = tj.get("model", {})
    if model.get("type") != "BPE":
        raise UserError(
            f"unsupported tokenizer model {model.get('type')!r}", "only BPE tokenizers are supported"
        )
    vocab: dict[str, int] = model["vocab"]
    added = {t["id"]: t for t in tj.get("added_tokens", [])}
    spm = _is_spm_bpe(tj)

    tokens: list[str | None] = [None] * n_vocab
    types = [gguf.TokenType.UNUSED] * n_vocab
    for text, i in vocab.items():
        if i >= n_vocab:
            raise UserError(f"tokenizer has token id {i} but the model has only {n_vocab} embeddings")
        tokens[i] = text
        types[i] = gguf.TokenType.BYTE if spm and _BYTE_TOKEN.fullmatch(text) else gguf.TokenType.NORMAL
    for i, tok in added.items():
        if i >= n_vocab:
            raise UserError(f"tokenizer has token id {i} but the model has only {n_vocab} embeddings")
        text = tok["content"]
        tokens[i] = text
        if spm and _BYTE_TOKEN.fullmatch(text):
            types[i] = gguf.TokenType.BYTE
        elif tok.get("special") or _looks_special(text):
            types[i] = gguf.TokenType.CONTROL
        else:
            types[i] = gguf.TokenType.USER_DEFINED
    token_list = [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)]

    if spm:
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(token_list)
        w.add_token_scores(_spm_scores(token_list, model.get("merges", []), types))
        w.add_token_types(types)
        w.add_add_space_prefix(_prepends_space(tj))
        pre = "default"
    else:
        pre = pre_tokenizer_name(tj)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(token_list)
        w.add_token_types(types)
    vocab_log = logging.getLogger("gguf.vocab")
    level = vocab_log.level
    vocab_log.setLevel(
        logging.ERROR
    )  # its TemplateProcessing notes are about pair templates llama.cpp never uses
    try:
        special = gguf.SpecialVocab(model_dir, load_merges=not spm, n_vocab=n_vocab)
    finally:
        vocab_log.setLevel(level)
    special.add_to_gguf(w, quiet=True)
    return VocabSummary(
        "llama" if spm else "gpt2", pre, n_vocab, len(special.merges), special.chat_template is not None
    )


def _spm_scores(tokens: list[str], merges: list[Any], types: list[gguf.TokenType]) -> list[float]:
    rank: dict[str, int] = {}
    for r, merge in enumerate(merges):
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        rank.setdefault(left + right, r)
    lowest = -float(len(merges) + 1)
    scores = []
    for text, typ in zip(tokens, types):
        if typ in (gguf.TokenType.CONTROL, gguf.TokenType.UNUSED):
            scores.append(-1000.0 if typ == gguf.TokenType.CONTROL else lowest)
        else:
            scores.append(-float(rank[text]) if text in rank else lowest)
    return scores


def _prepends_space(tj: dict[str, Any]) -> bool:
    """Whether the tokenizer adds a leading '▁' (Llama 2 style) – Gemma 3 does not."""
    nodes = [tj.get("normalizer") or {}, tj.get("pre_tokenizer") or {}]
    for node in nodes:
        for step in node.get("normalizers", node.get("pretokenizers", [node])):
            if step.get("type") == "Prepend" and step.get("prepend") == "▁":
                return True
            if step.get("type") == "Metaspace" and step.get("prepend_scheme", "always") != "never":
                return True
    return False
