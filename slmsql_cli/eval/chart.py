"""`eval --plot`: a PNG bar chart of EX overall and per level, one bar per run (matplotlib)."""

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
    levels = ["all"] + list(dict.fromkeys(lv for _, s in summaries for lv in s["by_level"]))
    width = 0.8 / max(1, len(summaries))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(levels) * max(1, len(summaries)) ** 0.5), 4))
    for k, (label, s) in enumerate(summaries):
        values = [s["ex"] if lv == "all" else s["by_level"].get(lv, {}).get("ex", 0.0) for lv in levels]
        xs = [i + (k - (len(summaries) - 1) / 2) * width for i in range(len(levels))]
        bars = ax.bar(xs, values, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    counts = [
        summaries[0][1]["total"] if lv == "all" else summaries[0][1]["by_level"].get(lv, {}).get("total", 0)
        for lv in levels
    ]
    ax.set_xticks(range(len(levels)), [f"{lv}\n({c})" for lv, c in zip(levels, counts)])
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
