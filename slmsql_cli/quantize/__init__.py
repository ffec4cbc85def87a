"""Hugging Face checkpoints (and LoRA adapters) to GGUF, without torch, checked against the source.

`export.export` / `slmsql export` is the entry point; `cached_gguf` (below, over
`export.cached_export`) is the exporter the commands hand to `slmsql_cli.models.resolve` for
`slmsql ask --model <checkpoint folder or repo with safetensors>`. Modules: weights (safetensors reader), arch
(per-architecture keys and tensor fix-ups), tokenizer (GGUF vocab), convert (the GGUF writer),
quantizer (llama.cpp's quantizer), verify (logit parity), lora (adapter merge), checkpoint
(where a checkpoint comes from and its cache identity).
"""

from __future__ import annotations

from pathlib import Path


def cached_gguf(checkpoint: str, quant: str) -> Path:
    """`slmsql_cli.models.Exporter` for the commands: the checkpoint's GGUF, exported once into the
    cache (`export.cached_export`). Not verified: verification needs torch, which `ask` never
    imports (`slmsql export` verifies). The exporter (numpy, gguf) is imported only when called."""
    from slmsql_cli.quantize.export import cached_export

    return cached_export(checkpoint, quant, verify=False)
