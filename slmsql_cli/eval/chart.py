"""`eval --plot`: a PNG bar chart of EX overall and per level, one bar per run (matplotlib); for
SParC/CoSQL turns, the levels are the turn index and a bar group shows interaction accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from slmsql_cli.errors import UserError, require
from slmsql_cli.eval.results import summarize


def plot(runs: Sequence[tuple[str, Sequence[dict]]], path: Path, fmt: str | None = None) -> Path:
    """A PNG bar chart: EX overall and per level, one bar per run."""
    matplotlib = require("matplotlib", "train", "--plot", "it includes matplotlib; or pip install matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = [(label, summarize(recs, fmt)) for label, recs in runs]
    turns = any("interactions" in s for _, s in summaries)
    levels = ["all", *(["interactions"] if turns else [])]
    levels += list(dict.fromkeys(lv for _, s in summaries for lv in s["by_level"]))

    def part(s: dict, lv: str) -> dict:
        return (
            s
            if lv == "all"
            else s.get("interactions", {})
            if lv == "interactions"
            else s["by_level"].get(lv, {})
        )

    width = 0.8 / max(1, len(summaries))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(levels) * max(1, len(summaries)) ** 0.5), 4))
    for k, (label, s) in enumerate(summaries):
        values = [part(s, lv).get("ex", 0.0) for lv in levels]
        xs = [i + (k - (len(summaries) - 1) / 2) * width for i in range(len(levels))]
        bars = ax.bar(xs, values, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    counts = [part(summaries[0][1], lv).get("total", 0) for lv in levels]
    names = [f"turn {lv}" if turns and lv not in ("all", "interactions") else lv for lv in levels]
    ax.set_xticks(range(len(levels)), [f"{name}\n({c})" for name, c in zip(names, counts)])
    ax.set_ylabel("execution accuracy (%)")
    ax.set_ylim(0, 118)
    ax.legend(fontsize=8, loc="upper center", ncol=min(3, len(summaries)), frameon=False)
    fig.tight_layout()
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")  # what matplotlib writes when the name has no extension
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    except (OSError, ValueError) as exc:  # ValueError: a format matplotlib cannot write (.xyz)
        raise UserError(
            f"cannot write the chart to {path}: {getattr(exc, 'strerror', None) or exc}",
            "pass a writable file name ending in .png (or .svg, .pdf) to --plot",
        ) from None
    finally:
        plt.close(fig)
    return path
