"""Where a checkpoint comes from: a local folder, a Hugging Face repo id, or the latest training run.

Also the checkpoint's *identity* – what must change for a cached export to be stale: for a Hub
snapshot the repo id and revision (commit hash), for a local folder its path plus the size and
modification time of every file in it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from slmsql_cli import hub, runs
from slmsql_cli.errors import UserError

_SNAPSHOT = re.compile(r"models--(?P<owner>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<rev>[0-9a-f]{6,})/?$")


@dataclass(frozen=True)
class Source:
    path: Path  # local folder with config.json or adapter_config.json
    label: str  # what to call it (repo id or folder name)
    repo_id: str | None = None
    revision: str | None = None

    @property
    def is_adapter(self) -> bool:
        return (self.path / "adapter_config.json").is_file() and not (self.path / "config.json").is_file()


def hub_snapshot(path: Path) -> tuple[str, str] | None:
    """(repo id, revision) when `path` is a huggingface-hub cache snapshot folder."""
    match = _SNAPSHOT.search(path.resolve().as_posix())
    return (f"{match['owner']}/{match['name']}", match["rev"]) if match else None


def latest_training_output(runs_dir: Path = runs.RUNS_DIR) -> Path:
    """The checkpoint `slmsql train` wrote last: runs/latest (a link, or a file holding a path)."""
    hint = "train a model first with `slmsql train`, or pass CHECKPOINT (a model folder or a Hugging Face repo id)"
    run = runs.read_latest(runs_dir)
    found = run if runs.has_model(run) else runs.run_checkpoint(run)
    if found is None:
        raise UserError(
            f"the latest training run {run} holds no model (no config.json or adapter_config.json)", hint
        )
    return found


def resolve(spec: str | None) -> Source:
    """Turn the CHECKPOINT argument into a local folder, downloading from the Hub when needed."""
    if spec is None:
        path = latest_training_output()
        return Source(path, path.parent.name if path.name in runs.RUN_SUBDIRS else path.name)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not runs.has_model(path):
            inner = runs.run_checkpoint(path)
            if inner is None:
                raise UserError(
                    f"{path} is not a Hugging Face model folder (no config.json) nor a training run holding one",
                    "pass the folder that holds config.json and the .safetensors files",
                )
            return Source(inner, path.resolve().name)  # a run folder: name the model after the run
        snap = hub_snapshot(path)
        return Source(path, snap[0] if snap else path.resolve().name, *(snap or (None, None)))
    if path.exists():
        raise UserError(
            f"{path} is a file, not a model folder",
            "pass the folder that holds config.json (a .gguf needs no export)",
        )
    if not hub.REPO_ID.match(spec):
        raise UserError(
            f"checkpoint not found: {spec}",
            "pass a local model folder or a Hugging Face repo id such as cycloneboy/SLM-SQL-0.5B",
        )
    return download(spec)


def download(repo_id: str) -> Source:
    path = hub.download_snapshot(repo_id, hint="or pass a local model folder")
    snap = hub_snapshot(path)
    return Source(path, repo_id, repo_id, snap[1] if snap else None)


def identity(source: Source) -> str:
    """A short digest that changes whenever the checkpoint's content may have changed."""
    if source.repo_id and source.revision:
        key = f"hub:{source.repo_id}@{source.revision}"
    else:
        parts = [f"dir:{source.path.resolve()}"]
        for f in sorted(source.path.rglob("*")):
            if f.is_file():
                st = f.stat()
                parts.append(f"{f.relative_to(source.path)}:{st.st_size}:{st.st_mtime_ns}")
        key = "\n".join(parts)
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "--", text)[:80] or "model"


def slug(source: Source) -> str:
    """The cache folder of one checkpoint across its versions: the repo id, or folder name + path digest."""
    if source.repo_id:
        return _safe(source.repo_id)
    where = hashlib.sha256(str(source.path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{_safe(source.label)}-{where}"


def short_name(source: Source) -> str:
    """A file-name-friendly model name: the repo's name part, or the folder name."""
    return _safe(source.label.rsplit("/", 1)[-1])


def free_bytes(path: Path) -> int:
    import shutil

    path = path if path.is_dir() else path.parent
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(os.fspath(path)).free
