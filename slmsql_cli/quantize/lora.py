"""Merge a PEFT LoRA adapter into its base model so the result can be exported like any checkpoint.

Merging needs torch, transformers and peft (the `[train]` extra) – the only part of the export that
does. The merged model is saved in the base model's dtype with the tokenizer files of the adapter
folder (trainers usually save the tokenizer next to the adapter) or else of the base model.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from slmsql_cli.errors import UserError
from slmsql_cli.quantize import checkpoint

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
)


def merge(adapter_dir: Path, work_dir: Path) -> Path:
    """Write base + adapter, merged, into `work_dir` (a checkpoint folder) and return it."""
    missing = [m for m in ("torch", "transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"{adapter_dir} is a LoRA adapter; merging it needs {', '.join(missing)}",
            "pip install 'slmsql[train]', or export the base model and load the adapter separately",
        )
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    base_spec = config.get("base_model_name_or_path")
    if not base_spec:
        raise UserError(
            f"{adapter_dir}/adapter_config.json names no base model",
            "set base_model_name_or_path to the base model's folder or repo id",
        )
    base = checkpoint.resolve(base_spec)
    if base.is_adapter:
        raise UserError(f"the base of {adapter_dir} is itself an adapter: {base.path}")

    from slmsql_cli.quantize.verify import quiet_transformers

    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32)
        merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    base_config = json.loads((base.path / "config.json").read_text(encoding="utf-8"))
    dtype = base_config.get("dtype") or base_config.get("torch_dtype") or "float32"
    with quiet_transformers():
        merged.to(getattr(torch, str(dtype), torch.float32)).save_pretrained(work_dir)

    tok_src = adapter_dir if (adapter_dir / "tokenizer.json").is_file() else base.path
    for name in TOKENIZER_FILES:
        if (tok_src / name).is_file():
            shutil.copy2(tok_src / name, work_dir / name)
    return work_dir
