"""Build, offline, a random-weight checkpoint with Qwen2.5-Coder-0.5B's exact shape, and its Q4_K_M GGUF.

Speed on a CPU depends on the shape (layers, widths, heads, vocabulary), not on the weights, so
this model costs what SLM-SQL-0.5B costs without downloading it. Hugging Face is not needed: the
tokenizer is a byte-level BPE trained here on the Spider/BIRD text in ../shared/data, padded to
Qwen's 151,936-entry vocabulary (it splits text into somewhat more tokens than Qwen's own, so
prompts are a little longer than the real model's: the figures err on the slow side).

  python benchmarks/make_shaped_model.py --out models/qwen25-0.5b-shape
  -> models/qwen25-0.5b-shape/ (safetensors, bf16) and models/qwen25-0.5b-shape-q4_k_m.gguf
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Qwen/Qwen2.5-Coder-0.5B-Instruct config.json (the base of SLM-SQL-0.5B and CscSQL-Merge-0.5B).
QWEN25_05B: dict[str, Any] = dict(
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    hidden_act="silu",
)


def corpus(data: Path):
    reference = data.parent / "reference" / "prompts_no_values.json"
    if reference.exists():  # whole prompts teach the BPE the schema vocabulary it will see
        for item in json.loads(reference.read_text()):
            yield item["prompt"]
    for name in ("spider_dev/dev.json", "bird_dev/dev.json", "chinook/questions.json"):
        for q in json.loads((data / name).read_text()):
            yield q["question"] + " " + q.get("query", q.get("SQL", "")) + " " + q.get("evidence", "")
    for name in ("spider_dev/tables.json", "bird_dev/dev_tables.json"):
        for db in json.loads((data / name).read_text()):
            yield (
                " ".join(t for t in db["table_names_original"])
                + " "
                + " ".join(c for _, c in db["column_names_original"])
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "models" / "qwen25-0.5b-shape")
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("SLMSQL_SHARED_DIR", REPO.parent / "shared")) / "data",
    )
    ap.add_argument("--quant", default="q4_k_m")
    args = ap.parse_args()

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    sys.path.insert(0, str(REPO))
    from training.tiny import build_tokenizer  # Qwen2's pre-tokenizer split and chat template

    args.out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(corpus(args.data), vocab_size=32000)
    tok.save_pretrained(args.out)
    torch.manual_seed(0)
    config = Qwen2Config(
        **QWEN25_05B,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
    )
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)  # type: ignore[arg-type]
    model.save_pretrained(args.out)
    print(f"checkpoint: {args.out} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters)")
    gguf = args.out.parent / f"{args.out.name}-{args.quant}.gguf"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "slmsql_cli",
            "export",
            str(args.out),
            "--quant",
            args.quant,
            "--out",
            str(gguf),
            "--force",
            "--no-verify",
        ],
        check=True,
    )
    print(f"gguf: {gguf}")


if __name__ == "__main__":
    main()
