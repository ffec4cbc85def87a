"""Hugging Face checkpoints (and LoRA adapters) to GGUF, without torch, checked against the source.

`export.export` / `slmsql export` is the entry point; `export.cached_export` is what
`slmsql ask --model <repo with safetensors>` uses. Modules: weights (safetensors reader), arch
(per-architecture keys and tensor fix-ups), tokenizer (GGUF vocab), convert (the GGUF writer),
quantizer (llama.cpp's quantizer), verify (logit parity), lora (adapter merge), checkpoint
(where a checkpoint comes from and its cache identity).
"""
