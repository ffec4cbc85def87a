"""`runs/latest`: the pointer `slmsql train` leaves to the checkpoint it wrote last.

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
