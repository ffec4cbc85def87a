"""`slmsql train`: SFT or GRPO for the generation or merge model (the `training` package does the work)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import typer

from slmsql_cli.cli import options as opt
from slmsql_cli.cli.app import app
from slmsql_cli.cli.common import err, user_errors
from slmsql_cli.errors import UserError

TRAINING = "Training"
_TRAIN_PACKAGES = ("torch", "transformers", "trl", "datasets", "peft", "accelerate", "yaml", "matplotlib")


@app.command("train")
@user_errors
def train(
    stage: str | None = typer.Option(
        None,
        "--stage",
        "-s",
        metavar="sft|grpo",
        help="sft (supervised, on targets) or grpo (reinforcement, on execution rewards).",
        rich_help_panel=TRAINING,
    ),
    task: str | None = typer.Option(
        None,
        "--task",
        metavar="TASK",
        help="generate (SQL from a question; default) or merge (revise two drafts).",
        rich_help_panel=TRAINING,
    ),
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        metavar="RECIPE",
        help="A YAML recipe, or a shipped one: generate-0.5b, merge-0.5b, tiny-cpu, tiny-real-cpu, "
        "tiny-real-cpu-followup.",
        rich_help_panel=TRAINING,
    ),
    base: str | None = typer.Option(
        None,
        "--base",
        "-b",
        metavar="MODEL",
        help="Model to start from: a checkpoint or run folder, a Hub repo id, a .gguf file, or "
        "`latest` (runs/latest).",
        rich_help_panel=opt.MODEL,
    ),
    data: str | None = typer.Option(
        None,
        "--data",
        metavar="FILE",
        help="Training data (.json, .jsonl, .parquet, .csv) or a Hub dataset id; SParC/CoSQL "
        "interactions make one example per turn.",
        rich_help_panel=opt.DATA,
    ),
    followup_data: str | None = typer.Option(
        None,
        "--followup-data",
        metavar="FILE",
        help="SParC/CoSQL interactions whose turns are mixed with --data's questions "
        "(--set followup_weight=W draws each turn W times; --set rendering=NAME).",
        rich_help_panel=opt.DATA,
    ),
    db_dir: Path | None = typer.Option(
        None,
        "--db-dir",
        metavar="DIR",
        help="Spider/BIRD databases: a folder of <db_id>/<db_id>.sqlite, or one .sqlite file.",
        rich_help_panel=opt.DATA,
    ),
    tables: Path | None = typer.Option(
        None,
        "--tables",
        metavar="FILE",
        help="Spider/BIRD tables.json (default: the one beside --data, if any).",
        rich_help_panel=opt.DATA,
    ),
    max_steps: int | None = typer.Option(
        None,
        "--max-steps",
        metavar="N",
        help="Stop after this many optimizer steps (default: one epoch).",
        rich_help_panel=TRAINING,
    ),
    max_samples: int | None = typer.Option(
        None,
        "--max-samples",
        callback=opt.bounded(1),
        metavar="N",
        help="Use only this many rows of the data.",
        rich_help_panel=opt.DATA,
    ),
    cpu: bool = typer.Option(
        False, "--cpu", metavar="", help="Train on the CPU (fp32) even with a GPU.", rich_help_panel=TRAINING
    ),
    lora: bool = typer.Option(
        False,
        "--lora",
        metavar="",
        help="Train LoRA adapters (merged into the saved model), not all weights.",
        rich_help_panel=TRAINING,
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        metavar="DIR",
        help="Run folder (default runs/<task>-<stage>); the model goes to <out>/final.",
        rich_help_panel=opt.OUTPUT,
    ),
    name: str | None = typer.Option(
        None, "--name", metavar="NAME", help="Run name, for the default --out.", rich_help_panel=opt.OUTPUT
    ),
    chat_template: str | None = typer.Option(
        None,
        "--chat-template",
        metavar="FILE|ARCH",
        help="A .jinja file or an architecture (qwen2, gemma3, llama) for a model without one.",
        rich_help_panel=opt.MODEL,
    ),
    resume: bool | None = typer.Option(
        None,
        "--resume/--fresh",
        metavar="",
        help="Continue from the run folder's last checkpoint (default: when there is one) or start over.",
        rich_help_panel=TRAINING,
    ),
    settings: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        show_default=False,
        help="Any other setting (a YAML value), e.g. --set learning_rate=1e-5; repeat for several.",
        rich_help_panel=TRAINING,
    ),
) -> None:
    """Post-train a Text-to-SQL model the SLM-SQL way: SFT, then GRPO with execution rewards.

    Writes a Hugging Face checkpoint to <out>/final, a metrics log (metrics.jsonl) and a plot, and points runs/latest at the checkpoint; `slmsql export` turns it into a GGUF for `ask`.

    Several GPUs: accelerate launch --num_processes 4 -m slmsql_cli train ...

    Examples:

      slmsql train --stage sft --config generate-0.5b
      slmsql train --stage grpo --base latest --data bird/train.json \\
          --db-dir bird/train_databases
      slmsql train --stage sft --config tiny-cpu --base my-model/ --max-steps 5
      slmsql train --stage sft --config tiny-real-cpu-followup \\
          --data spider.json --followup-data sparc.json --db-dir spider/database
    """
    _require_train_extra()
    from slmsql_cli.training.config import load_config
    from slmsql_cli.training.runner import run

    overrides: dict[str, Any] = {
        "task": task,
        "base": base,
        "data": data,
        "followup_data": followup_data,
        "db_dir": _str(db_dir),
        "tables": _str(tables),
        "max_steps": max_steps,
        "max_samples": max_samples,
        "cpu": True if cpu else None,
        "lora": True if lora else None,
        "out": _str(out),
        "name": name,
        "chat_template": chat_template,
        "resume": resume,
    }
    overrides.update(_parse_settings(settings))
    cfg = load_config(config, overrides, stage)
    result = run(cfg, say=lambda msg: err.print(msg, highlight=False, markup=False))
    err.print(f"[bold green]done[/] {result.steps} steps in {result.seconds:.0f} s", highlight=False)
    err.print(f"model:   {result.final_dir}", highlight=False, markup=False)
    err.print(
        f"metrics: {result.metrics}" + (f"   plot: {result.plot}" if result.plot else ""),
        highlight=False,
        markup=False,
    )
    next_step = "slmsql train --stage grpo --base latest ..." if cfg.stage == "sft" else "slmsql export"
    err.print(f"next:    {next_step}", highlight=False, markup=False)


def _require_train_extra() -> None:
    missing = [{"yaml": "pyyaml"}.get(p, p) for p in _TRAIN_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        raise UserError(
            f"training needs packages that are not installed: {', '.join(missing)}",
            "pip install 'slmsql[train]' (on a CPU-only Linux machine install torch from "
            "https://download.pytorch.org/whl/cpu first, see the README)",
        )


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _parse_settings(items: list[str]) -> dict[str, Any]:
    """`--set key=value` → {key: yaml(value)}; `a.b=v` sets key b of mapping a (reward_weights, trl)."""
    import yaml

    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item}: expected key=value", "e.g. --set learning_rate=1e-5")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        head, _, sub = key.strip().partition(".")
        if sub:
            parsed.setdefault(head, {})[sub] = value
        else:
            parsed[head] = value
    return parsed
