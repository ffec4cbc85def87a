"""`slmsql train`: SLM-SQL post-training - SFT, then GRPO with execution rewards - for the
generation and merge models, on TRL. See slmsql_cli/training/README.md; `runner.run(TrainConfig)` is the entry.

Modules: config (TrainConfig + YAML), data (loaders), model (base model, chat format), sft, grpo,
rewards + atomic (GRPO rewards), metrics (JSONL log + plot), runner, sample (drafts for merge
data), tiny (an offline tiny model for tests). torch/transformers/trl are imported lazily.
"""
