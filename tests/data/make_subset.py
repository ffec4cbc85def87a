"""Rebuild tests/data from the full data sets: python tests/data/make_subset.py DATA REFERENCE.

DATA holds spider_dev/, bird_dev/, chinook/ and vocab/ as described in tests/data/README.md;
REFERENCE holds the reference prompts. The selection rules are written here once.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from quantize.tokenizer import QWEN2_REGEX

HERE = Path(__file__).resolve().parent
SPIDER_PER_DB = 12  # the first 12 dev questions of each database (dev.json order)...
SPIDER_ALL = "concert_singer"  # ...and all of the database most tests use
BIRD_QUESTIONS = 60  # all three difficulty levels among them
SPIDER_FIELDS = ("db_id", "query", "question", "sql", "orig_index")
VOCAB = (  # the GGUF itself becomes qwen2/tokenizer.json
    "ggml-vocab-qwen2.gguf.inp",
    "ggml-vocab-qwen2.gguf.out",
    "LICENSE.llama.cpp",
)


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    dst.chmod(0o644)


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def write_qwen2_tokenizer(vocab_gguf: Path, out: Path) -> None:
    """tokenizer.json and tokenizer_config.json as the Qwen2 Hub repositories lay them out, from
    llama.cpp's vocab-only GGUF: NFC normalizer, Qwen2's split regex, byte-level BPE (151,643
    tokens and their merges), the three special tokens, the GGUF's chat template."""
    import gguf  # reading 300,000 strings takes GGUFReader half a minute: done once, here

    reader = gguf.GGUFReader(vocab_gguf)

    def field(key: str) -> Any:
        return reader.fields[key].contents()

    tokens, types = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type")
    assert field("tokenizer.ggml.pre") == "qwen2"
    byte_level = {"add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    special = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": t, **special}
            for i, (t, typ) in enumerate(zip(tokens, types))
            if typ == gguf.TokenType.CONTROL
        ],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", **byte_level},
            ],
        },
        "post_processor": {"type": "ByteLevel", **byte_level},
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": {t: i for i, (t, typ) in enumerate(zip(tokens, types)) if typ == gguf.TokenType.NORMAL},
            "merges": list(field("tokenizer.ggml.merges")),
        },
    }
    config = {
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "chat_template": field("tokenizer.chat_template"),
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": 32768,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False) + "\n", encoding="utf-8")
    _write_json(out / "tokenizer_config.json", config)


def main(data: Path, reference: Path) -> None:
    spider = data / "spider_dev"
    questions = json.loads((spider / "dev.json").read_text(encoding="utf-8"))
    taken: dict[str, int] = {}
    subset = []
    for q in questions:
        if q["db_id"] == SPIDER_ALL or taken.get(q["db_id"], 0) < SPIDER_PER_DB:
            taken[q["db_id"]] = taken.get(q["db_id"], 0) + 1
            subset.append({k: q[k] for k in SPIDER_FIELDS})
    _write_json(HERE / "spider_dev/dev.json", subset)
    tables = json.loads((spider / "tables.json").read_text(encoding="utf-8"))
    _write_json(HERE / "spider_dev/tables.json", [t for t in tables if t["db_id"] in taken])
    for db_id in taken:
        rel = f"database/{db_id}/{db_id}.sqlite"
        _copy(spider / rel, HERE / "spider_dev" / rel)

    bird = data / "bird_dev"  # one database (student_club) and its first dev questions
    _write_json(
        HERE / "bird_dev/dev.json",
        json.loads((bird / "dev.json").read_text(encoding="utf-8"))[:BIRD_QUESTIONS],
    )
    for rel in ("dev_tables.json", "dev_databases/student_club/student_club.sqlite"):
        _copy(bird / rel, HERE / "bird_dev" / rel)
    for rel in ("Chinook_Sqlite.sqlite", "LICENSE.md", "questions.json"):
        _copy(data / "chinook" / rel, HERE / "chinook" / rel)
    for name in VOCAB:
        _copy(data / "vocab" / name, HERE / "vocab" / name)
    write_qwen2_tokenizer(data / "vocab" / "ggml-vocab-qwen2.gguf", HERE / "vocab" / "qwen2")
    for name in ("generation_prompt.example.txt", "merge_prompt.example.txt", "prompts_no_values.json"):
        _copy(reference / name, HERE / "reference" / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
