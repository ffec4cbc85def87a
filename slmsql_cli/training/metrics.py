"""The metrics log a user reads during a run, and the plot written at its end.

`metrics.jsonl` gets one JSON object per logging step: everything the trainer logs (loss,
learning rate; for GRPO the total reward, each reward's mean as `rewards/<name>/mean`, KL,
completion lengths), plus `exec_accuracy`, the share of sampled completions whose result equals
the gold's (the execution reward's mean). `tail -f` works on it; so does pandas.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class MetricsLog(TrainerCallback):
    """Appends each log event of the main process to a JSONL file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        record: dict[str, Any] = {"step": state.global_step, "epoch": state.epoch}
        record.update(
            {k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        )
        if "rewards/execution/mean" in record:
            record["exec_accuracy"] = record["rewards/execution/mean"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, allow_nan=True) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        return []
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_metrics(metrics_path: Path, png_path: Path) -> Path | None:
    """Reward (total and per reward) over steps for GRPO, loss for SFT; None when nothing was logged."""
    records = read_metrics(metrics_path)
    reward_keys = ["reward"] + sorted(
        {k for r in records for k in r if k.startswith("rewards/") and k.endswith("/mean")}
    )
    keys = reward_keys if any("reward" in r for r in records) else ["loss"]
    series = {
        k: [(r["step"], r[k]) for r in records if isinstance(r.get(k), (int, float)) and not math.isnan(r[k])]
        for k in keys
    }
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on a training box
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for key, points in series.items():
        steps, values = zip(*points)
        label = key.removeprefix("rewards/").removesuffix("/mean")
        ax.plot(
            steps,
            values,
            marker="o" if len(points) < 30 else None,
            label="total reward" if key == "reward" else label,
            linewidth=2.0 if key in ("reward", "loss") else 1.2,
        )
    ax.set_xlabel("step")
    ax.set_ylabel("reward" if keys != ["loss"] else "training loss")
    ax.set_title(f"{png_path.parent.name}: {'reward' if keys != ['loss'] else 'loss'} over steps")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
