"""`slmsql train` end to end: check everything cheap, then load, train, save, point `runs/latest` at it.

Order matters: the config, the base model's existence, the data's columns and the chat template
are checked before the weights are loaded or a prompt is built, so a typo fails in seconds.

Output (`<run>` = `--out`, default `runs/<task>-<stage>`):

    <run>/checkpoint-N/      trainer checkpoints; a rerun with the same --out resumes from the last
    <run>/final/             the trained model: a Hugging Face checkpoint (LoRA merged in) with its
                             tokenizer and chat template, ready for `slmsql export`
    <run>/metrics.jsonl      one JSON object per logging step (training.metrics)
    <run>/reward.png         reward over steps (GRPO) / loss.png (SFT)
    <run>/train_config.yaml  the settings the run used
    <run>/../latest          pointer file: one line, the absolute path of <run>/final, then "\\n".
                             With the default --out it is runs/latest, `slmsql export`'s default
                             input; `--base latest` reads it too (SFT, then GRPO on its output).

Multi-GPU: launch the same command through accelerate, e.g.
`accelerate launch --num_processes 4 -m slmsql_cli train --config generate-0.5b --stage grpo`
(add `--config_file slmsql_cli/training/configs/accelerate/zero2.yaml` for DeepSpeed ZeRO-2).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmsql_cli.errors import UserError
from slmsql_cli.runs import LATEST, read_latest, run_checkpoint, write_latest
from slmsql_cli.training.config import TrainConfig
from slmsql_cli.training.data import DataReport, check_inputs, followup_records, load_examples
from slmsql_cli.training.estimate import estimate, parameter_count
from slmsql_cli.training.records import detect_format, read_records, row_count

Say = Callable[[str], None]


@dataclass
class TrainResult:
    run_dir: Path
    final_dir: Path
    metrics: Path
    plot: Path | None
    steps: int
    data: DataReport
    seconds: float


@dataclass
class Device:
    use_cpu: bool
    bf16: bool
    gradient_checkpointing: bool
    use_vllm: bool
    note: str
    threads: int = 0  # CPU threads torch uses (CPU training only)


def pick_device(cfg: TrainConfig, say: Say) -> Device:
    import torch

    gpu = torch.cuda.is_available() and not cfg.cpu
    if not gpu and not cfg.cpu:
        say("no GPU found: training on the CPU (pass --cpu to say so and silence this)")
    bf16 = bool(cfg.bf16) if cfg.bf16 is not None else (gpu and torch.cuda.is_bf16_supported())
    if bf16 and not gpu:
        raise UserError("bf16 was asked for but there is no GPU", "drop bf16 or train on a GPU")
    vllm_installed = importlib.util.find_spec("vllm") is not None
    if cfg.use_vllm is True and not vllm_installed:
        raise UserError(
            "use_vllm is set but vLLM is not installed", "pip install vllm, or set use_vllm: false"
        )
    use_vllm = (
        cfg.stage == "grpo" and gpu and (cfg.use_vllm is True or (cfg.use_vllm == "auto" and vllm_installed))
    )
    checkpointing = cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None else gpu
    if gpu:
        note = f"{torch.cuda.device_count()} GPU(s) visible, {'bf16' if bf16 else 'fp32'}" + (
            ", vLLM generation" if use_vllm else ""
        )
    else:
        note = f"CPU, fp32, {torch.get_num_threads()} threads"
    return Device(not gpu, bf16, checkpointing, use_vllm, note, 0 if gpu else torch.get_num_threads())


def check_trl_keys(cfg: TrainConfig) -> None:
    """`trl:` settings must be fields of the stage's TRL config (checked before anything loads)."""
    if not cfg.trl:
        return
    import dataclasses
    import difflib

    from trl import GRPOConfig, SFTConfig

    fields = {f.name for f in dataclasses.fields(SFTConfig if cfg.stage == "sft" else GRPOConfig)}
    for key in cfg.trl:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            raise UserError(
                f"trl: `{key}` is not a {'SFTConfig' if cfg.stage == 'sft' else 'GRPOConfig'} setting",
                f"did you mean `{close[0]}`?" if close else "see TRL's documentation for the settings",
            )


def resume_from(cfg: TrainConfig, run_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    if cfg.resume is False:
        return None  # the caller clears the old checkpoints
    if isinstance(cfg.resume, str) and cfg.resume != "auto":
        if not Path(cfg.resume).is_dir():
            raise UserError(f"checkpoint to resume from not found: {cfg.resume}")
        return cfg.resume
    last = get_last_checkpoint(str(run_dir)) if run_dir.is_dir() else None
    if cfg.resume is True and last is None:
        raise UserError(
            f"nothing to resume in {run_dir}: no checkpoint-* folder", "drop --resume to start a new run"
        )
    return last


def trainer_args(cfg: TrainConfig, device: Device, run_dir: Path) -> dict[str, Any]:
    """Settings shared by SFTConfig and GRPOConfig; the recipe's `trl:` mapping wins over them."""
    return {
        "output_dir": str(run_dir),
        "run_name": cfg.run_name,
        "learning_rate": cfg.stage_default("learning_rate"),
        "num_train_epochs": cfg.num_train_epochs,
        "max_steps": cfg.max_steps,
        "per_device_train_batch_size": cfg.stage_default("per_device_train_batch_size"),
        "gradient_accumulation_steps": cfg.stage_default("gradient_accumulation_steps"),
        "warmup_steps": cfg.warmup_steps,
        "lr_scheduler_type": cfg.lr_scheduler_type,
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "seed": cfg.seed,
        "logging_steps": cfg.logging_steps,
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "bf16": device.bf16,
        "use_cpu": device.use_cpu,  # TRL defaults to bf16=True, which transformers refuses on CPU
        "activation_checkpointing": device.gradient_checkpointing,  # transformers 5 name of gradient checkpointing
        "report_to": "none",
        **cfg.trl,
    }


def run(cfg: TrainConfig, say: Say = print) -> TrainResult:
    """Train one stage as `cfg` says and return where everything went."""
    from slmsql_cli.training.model import ChatFormat, load_model, load_tokenizer, resolve_chat_template

    start = time.perf_counter()
    base, records, device, resume = _check(cfg, say)

    say(f"loading the tokenizer of {base.label}")
    tokenizer = load_tokenizer(base)
    template, origin = resolve_chat_template(cfg.chat_template, base, tokenizer)
    tokenizer.chat_template = template  # saved with the checkpoint, so export and `ask` use the same
    chat = ChatFormat.for_tokenizer(template, tokenizer)
    say(f"chat template: {origin}")

    judge = None
    if cfg.stage == "grpo":
        from slmsql_cli.training.rewards import SqlJudge

        judge = SqlJudge(cfg.reward_workers, timeout=cfg.exec_timeout)
    try:
        say(f"building {cfg.stage.upper()} data from {cfg.data}")
        dataset, report = _dataset(cfg, records, chat, tokenizer, judge, say)
        say(f"loading {base.label} ({device.note})")
        model = load_model(base, bf16=device.bf16, attn_implementation=cfg.attn_implementation)
        trainer, metrics_path = _trainer(
            cfg, base, device, resume, model, tokenizer, dataset, chat, judge, say
        )
        trainer.train(resume_from_checkpoint=resume)
    finally:
        if judge is not None:
            judge.close()
    final_dir, plot = _finish(cfg, trainer, tokenizer, metrics_path)
    return TrainResult(
        cfg.run_dir,
        final_dir,
        metrics_path,
        plot,
        trainer.state.global_step,
        report,
        time.perf_counter() - start,
    )


def _check(cfg: TrainConfig, say: Say) -> tuple[Any, list[dict[str, Any]], Device, str | None]:
    """Everything that can be wrong and is cheap to check: before the tokenizer, the data and the weights load."""
    from slmsql_cli.training.model import resolve_base, resolve_chat_template

    check_trl_keys(cfg)
    if cfg.base == LATEST:
        cfg.base = str(read_latest())
        say(f"base: {cfg.base} (from runs/latest)")
    picked = run_checkpoint(Path(cfg.base).expanduser()) if cfg.base else None
    if picked is not None:
        say(f"base: {picked} (the checkpoint of training run {cfg.base})")
        cfg.base = str(picked)
    base = resolve_base(cfg.base)
    records = read_records(cfg.data, cfg.data_split)
    if not records:
        raise UserError(f"no rows in {cfg.data}")
    check_inputs(cfg, detect_format(records[0].keys(), cfg.data_format))
    followups = followup_records(cfg)  # SParC/CoSQL turns to mix in: checked before anything loads
    if (
        base.gguf_file
    ):  # the GGUF header says whether it has a template: fail before 20 s of tokenizer loading
        resolve_chat_template(cfg.chat_template, base, None)
    device = pick_device(cfg, say)
    if device.use_cpu:  # hours on a CPU must not come as a surprise
        parameters = parameter_count(base.source, base.gguf_file)
        if parameters:
            rows = row_count(records) + round(cfg.followup_weight * row_count(followups))
            say(estimate(cfg, rows, parameters, device.threads).line())
    return base, records, device, resume_from(cfg, cfg.run_dir)


def _dataset(
    cfg: TrainConfig, records: list[dict[str, Any]], chat: Any, tokenizer: Any, judge: Any, say: Say
) -> tuple[Any, DataReport]:
    examples, report, fmt = load_examples(cfg, records, chat.counter(tokenizer))  # ask's prompt budget
    if cfg.stage == "sft":
        from slmsql_cli.training.sft import sft_dataset

        dataset = sft_dataset(examples, chat, tokenizer, cfg.max_length, report)
    else:
        from slmsql_cli.training.grpo import grpo_dataset

        dataset = grpo_dataset(examples, chat, tokenizer, cfg.max_prompt_length, judge, report)
    for note in report.notes:
        say(note)
    say(f"{fmt} data: {report.summary()}")
    if len(dataset) == 0:
        raise UserError("no usable training rows", "see the skip reasons above")
    return dataset, report


def _trainer(
    cfg: TrainConfig,
    base: Any,
    device: Device,
    resume: str | None,
    model: Any,
    tokenizer: Any,
    dataset: Any,
    chat: Any,
    judge: Any,
    say: Say,
) -> tuple[Any, Path]:
    from slmsql_cli.training.metrics import MetricsLog

    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = run_dir / "metrics.jsonl"
    if resume is None:  # a fresh run: fresh checkpoints and a fresh log; a resumed one appends
        _clear_checkpoints(run_dir, say)
        metrics_path.unlink(missing_ok=True)
    _write_config(cfg, run_dir / "train_config.yaml")
    args = trainer_args(cfg, device, run_dir)
    callbacks = [MetricsLog(metrics_path)]
    if cfg.stage == "sft":
        from slmsql_cli.training.sft import sft_trainer

        trainer = sft_trainer(cfg, model, tokenizer, dataset, args, callbacks)
    else:
        from slmsql_cli.training.grpo import grpo_trainer

        init_kwargs = {**base.load_kwargs()} if cfg.beta and not cfg.lora else None
        trainer = grpo_trainer(
            cfg, model, tokenizer, dataset, args, callbacks, judge, chat, init_kwargs, device.use_vllm
        )
    if resume:
        step = int(Path(resume).name.rpartition("-")[2]) if Path(resume).name.startswith("checkpoint-") else 0
        finished = 0 < cfg.max_steps <= step
        say(
            f"resuming from {resume}"
            + (
                f" - it already reached max_steps={cfg.max_steps}; pass --fresh to train again"
                if finished
                else ""
            )
        )
    return trainer, metrics_path


def _finish(cfg: TrainConfig, trainer: Any, tokenizer: Any, metrics_path: Path) -> tuple[Path, Path | None]:
    """Save `final/` (LoRA merged in), point runs/latest at it, plot the log."""
    from slmsql_cli.training.metrics import plot_metrics

    run_dir = cfg.run_dir
    final_dir = run_dir / "final"
    main = trainer.is_world_process_zero()
    if cfg.lora:
        trainer.save_model(str(run_dir / "adapter"))
        if main:  # export wants whole weights: merge the adapters into the base
            trainer.model.merge_and_unload().save_pretrained(final_dir)
    else:
        trainer.save_model(str(final_dir))  # every rank calls it: under DeepSpeed it gathers the weights
    plot = None
    if main:
        tokenizer.save_pretrained(final_dir)
        write_latest(final_dir)
        plot = plot_metrics(metrics_path, run_dir / ("reward.png" if cfg.stage == "grpo" else "loss.png"))
    trainer.accelerator.wait_for_everyone()
    return final_dir, plot


def _clear_checkpoints(run_dir: Path, say: Say) -> None:
    """A fresh run in an old run folder: old checkpoints would be rotated against the new ones."""
    import shutil

    old = sorted(run_dir.glob("checkpoint-*"))
    if old:
        say(f"starting over: removing {len(old)} old checkpoint(s) in {run_dir}")
        for path in old:
            shutil.rmtree(path)


def _write_config(cfg: TrainConfig, path: Path) -> None:
    import yaml

    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
