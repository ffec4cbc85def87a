"""Build, offline, a random-weight checkpoint with Qwen2.5-Coder-0.5B's exact shape, and its Q4_K_M GGUF.

Speed on a CPU depends on the shape (layers, widths, heads, vocabulary), not on the weights, so
this model costs what SLM-SQL-0.5B costs without downloading it. Hugging Face is not needed: the
tokenizer is Qwen2.5-Coder's own, rebuilt from llama.cpp's vocab-only Qwen2 GGUF and the Qwen2.5
chat template in ../shared/data/vocab (slmsql_cli/quantize/vocab.py) and laid out as the Hub repository lays
it out (tokenizer.json, tokenizer_config.json with the chat template, vocab.json, merges.txt), so
prompts have the real model's token counts.

  python benchmarks/make_shaped_model.py --out models/qwen25-0.5b-shape
  -> models/qwen25-0.5b-shape/ (safetensors, bf16) and models/qwen25-0.5b-shape-q4_k_m.gguf
"""

from __future__ import annotations

import argparse
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
    from slmsql_cli.quantize import vocab

    vocab_dir = args.data / "vocab"
    qwen2, _ = vocab.qwen2_tokenizer_json(vocab_dir / "ggml-vocab-qwen2.gguf")
    template = (vocab_dir / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text(encoding="utf-8")
    vocab.write_qwen25(qwen2, template, args.out)
    torch.manual_seed(0)
    # Qwen2.5-Coder's config.json: <|endoftext|> (151643) begins, <|im_end|> (151645) ends a turn
    config = Qwen2Config(**QWEN25_05B, bos_token_id=151643, eos_token_id=151645)
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
