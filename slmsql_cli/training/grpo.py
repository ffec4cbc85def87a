"""GRPO with TRL's GRPOTrainer and execution-based rewards (CSC-SQL / SLM-SQL, FINER-SQL).

Prompts are given to TRL as the rendered text `ask` sends (not as chat messages), so generation
during training starts from exactly the inference prompt; a tokenizer that adds BOS by itself gets
the text without the template's BOS, so there is one BOS either way. TRL no longer truncates
prompts (`max_prompt_length` is gone), so prompts over the limit are skipped and counted here.
Rows whose gold SQL does not run are skipped too: every completion would score 0 on them.
"""

from __future__ import annotations

from typing import Any

from slmsql_cli.training.config import TrainConfig
from slmsql_cli.training.data import DataReport, Example
from slmsql_cli.training.model import ChatFormat
from slmsql_cli.training.rewards import RewardFunctions, SqlJudge


def grpo_dataset(
    examples: list[Example],
    chat: ChatFormat,
    tokenizer: Any,
    max_prompt_length: int,
    judge: SqlJudge,
    report: DataReport,
) -> Any:
    from datasets import Dataset

    with_db = [ex for ex in examples if ex.db_path and ex.gold_sql]
    for _ in range(len(examples) - len(with_db)):
        report.skip("no database or gold SQL for the execution reward")
    golds = judge.outcomes(
        [(ex.db_path, ex.gold_sql) for ex in with_db]
    )  # in parallel, and cached for training
    rows = []
    for ex, gold in zip(with_db, golds):
        if not gold.ok:
            report.skip("gold SQL fails to execute" if not gold.timed_out else "gold SQL times out")
            continue
        text = chat.generation_text(ex.prompt, ex.system)
        if len(tokenizer(text)["input_ids"]) > max_prompt_length:
            report.skip(f"prompt longer than max_prompt_length ({max_prompt_length} tokens)")
            continue
        rows.append({"prompt": text, "db_path": ex.db_path, "gold_sql": ex.gold_sql})
    return Dataset.from_list(rows)


def grpo_trainer(
    cfg: TrainConfig,
    model: Any,
    tokenizer: Any,
    dataset: Any,
    args: dict[str, Any],
    callbacks: list[Any],
    judge: SqlJudge,
    chat: ChatFormat,
    model_init_kwargs: dict[str, Any] | None = None,
    use_vllm: bool = False,
) -> Any:
    from trl import GRPOConfig, GRPOTrainer

    from slmsql_cli.training.sft import lora_config

    stop = chat.end_of_turn(tokenizer)
    if stop is not None:  # TRL stops generation on the model's eos ids; add the chat turn's end
        eos = model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        model.generation_config.eos_token_id = [stop, *[e for e in eos if e != stop]]
    funcs, weights = RewardFunctions(
        cfg.reward_weights, judge, cfg.atomic_e, cfg.atomic_beta, cfg.atomic_gamma
    ).functions()
    extra: dict[str, Any] = {}
    if model_init_kwargs:  # the KL reference model is reloaded by TRL from the same (GGUF) file
        extra["model_init_kwargs"] = model_init_kwargs
    config = GRPOConfig(**grpo_settings(cfg, args, weights, use_vllm, extra))
    return GRPOTrainer(
        model=model,
        reward_funcs=funcs,  # type: ignore[arg-type]  # TRL's hint forgets that list is invariant
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
        callbacks=callbacks,
    )


def grpo_settings(
    cfg: TrainConfig,
    args: dict[str, Any],
    weights: list[float],
    use_vllm: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """GRPOConfig's arguments: the recipe's GRPO and vLLM settings, then `args` (the shared trainer
    arguments, with the recipe's `trl:` mapping, which wins)."""
    vllm = {
        "use_vllm": use_vllm,
        "vllm_mode": cfg.vllm_mode,
        "vllm_gpu_memory_utilization": cfg.vllm_gpu_memory_utilization,
        "vllm_tensor_parallel_size": cfg.vllm_tensor_parallel_size,
        "vllm_max_model_length": cfg.vllm_max_model_length
        or cfg.max_prompt_length + cfg.max_completion_length,
        "vllm_enable_sleep_mode": cfg.vllm_enable_sleep_mode,
        "vllm_server_base_url": cfg.vllm_server_base_url,
        "vllm_server_host": cfg.vllm_server_host,
        "vllm_server_port": cfg.vllm_server_port,
        "vllm_server_timeout": cfg.vllm_server_timeout,
    }
    return {
        "num_generations": cfg.num_generations,
        "max_completion_length": cfg.max_completion_length,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "beta": cfg.beta,
        "loss_type": cfg.loss_type,
        "reward_weights": weights,
        **vllm,
        **(extra or {}),
        **args,  # `trl:` settings from the recipe come last and win
    }
