"""Training run folders: `runs/latest`, the pointer `slmsql train` leaves to the checkpoint it
wrote last, and `run_checkpoint`, the model inside a run folder (`train --base` and `export` take one).

`slmsql export` without a CHECKPOINT and `slmsql train --base latest` read it. The pointer sits
beside the run folders (`<run>/../latest`, so `runs/latest` with the default `--out`): a file of
one line, the absolute path of `<run>/final`, then "\\n". A symbolic link (or folder) named
`latest` works too.
"""

from __future__ import annotations

from pathlib import Path

from slmsql_cli.errors import UserError

RUNS_DIR = Path("runs")
LATEST = "latest"
RUN_SUBDIRS = ("final", "merged", "model", "adapter")  # whole models a run folder may hold, best first
_HINT = "train a model first with `slmsql train`, or name the checkpoint folder"


def read_latest(runs_dir: Path | str = RUNS_DIR) -> Path:
    """The run folder `runs/latest` points at (usually `<run>/final`)."""
    pointer = Path(runs_dir) / LATEST
    if pointer.is_dir():
        return pointer.resolve()  # name the run, not "latest"
    if not pointer.is_file():
        raise UserError(f"no training run found ({pointer} does not exist)", _HINT)
    target = Path(pointer.read_text(encoding="utf-8").strip()).expanduser()
    if not target.is_absolute() and not target.exists():
        target = Path(runs_dir) / target
    if not target.is_dir():
        raise UserError(f"{pointer} points at {target}, which no longer exists", _HINT)
    return target


def write_latest(final_dir: Path) -> Path:
    """Point `<run>/../latest` at `final_dir` (`<run>/final`), atomically."""
    pointer = final_dir.parent.parent / LATEST
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(f"{final_dir.resolve()}\n", encoding="utf-8")
    tmp.replace(pointer)
    return pointer


def has_model(path: Path) -> bool:
    """A Hugging Face model folder or a LoRA adapter folder."""
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def _step(folder: Path) -> int:
    tail = folder.name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else -1


def run_checkpoint(folder: Path) -> Path | None:
    """The model a `slmsql train` run folder holds, or None if `folder` is not such a run folder.

    A run folder (see slmsql_cli/training/runner.py) holds `final/` once training finished, `adapter/` beside
    it for LoRA runs, and the trainer's `checkpoint-N/` folders. Preferred: `final/` (or another
    whole model folder), then the checkpoint with the highest step. A folder that is a model itself
    (config.json or adapter_config.json) is not a run folder, and neither is a folder that merely
    contains model folders under other names (`export ~/models` must not pick one at random).
    """
    if not folder.is_dir() or has_model(folder):
        return None
    for candidate in (folder / d for d in RUN_SUBDIRS):
        if has_model(candidate):
            return candidate
    checkpoints = [d for d in folder.glob("checkpoint-*") if _step(d) >= 0 and has_model(d)]
    return max(checkpoints, key=_step) if checkpoints else None
