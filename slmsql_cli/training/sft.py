"""Supervised fine-tuning with TRL's SFTTrainer, loss on the assistant's answer only.

The dataset is tokenized here rather than by TRL: the prompt is the exact text `ask` renders
(chat template included) and is tokenized on its own, as llama.cpp tokenizes it at inference
(special tokens parsed, no extra BOS), and the completion runs to the template's end-of-turn
token. TRL takes `input_ids` + `completion_mask` as they are. Rows longer than `max_length` are
skipped and counted, not truncated: a truncated row would teach the model an answer without its end.
"""

from __future__ import annotations

from typing import Any

from slmsql_cli.training.config import TrainConfig
from slmsql_cli.training.data import DataReport, Example
from slmsql_cli.training.model import ChatFormat


def sft_dataset(
    examples: list[Example], chat: ChatFormat, tokenizer: Any, max_length: int, report: DataReport
) -> Any:
    from datasets import Dataset

    rows = []
    for ex in examples:
        prompt_ids = tokenizer(chat.prompt(ex.prompt, ex.system), add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(
            chat.completion(ex.prompt, ex.target, ex.system), add_special_tokens=False
        )["input_ids"]
        if len(prompt_ids) + len(completion_ids) > max_length:
            report.skip(f"longer than max_length ({max_length} tokens)")
            continue
        rows.append(
            {
                "input_ids": prompt_ids + completion_ids,
                "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids),
            }
        )
    return Dataset.from_list(rows)


def sft_trainer(
    cfg: TrainConfig, model: Any, tokenizer: Any, dataset: Any, args: dict[str, Any], callbacks: list[Any]
) -> Any:
    from trl import SFTConfig, SFTTrainer

    # The dataset is pre-tokenized, so TRL must be told to use its completion_mask.
    config = SFTConfig(**{"max_length": cfg.max_length, "completion_only_loss": True, **args})
    return SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
        callbacks=callbacks,
    )


def lora_config(cfg: TrainConfig) -> Any:
    if not cfg.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        task_type="CAUSAL_LM",
    )
