"""Which GGUF file a `--model` value means: a local file, a Hugging Face repo, or a registry alias.

Downloads go through huggingface-hub (its cache, its progress bars, `HF_HUB_OFFLINE=1`), so a
model fetched once works offline afterwards. Repos that publish safetensors only (the SLM-SQL
checkpoints do), and local checkpoint folders, are handed to the `Exporter` the caller passes
(the commands pass `quantize.cached_gguf`, a GGUF of type DEFAULT_QUANT exported once into the
cache): this package never imports `quantize`, which builds on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slmsql_cli import hub
from slmsql_cli.errors import UserError


@dataclass(frozen=True)
class KnownModel:
    alias: str
    repo: str
    role: str  # "generate" or "merge"
    base: str
    note: str = ""


# Published SLM-SQL / CSC-SQL checkpoints (safetensors; BIRD dev EX from the SLM-SQL paper, with CSC).
REGISTRY: tuple[KnownModel, ...] = (
    KnownModel(
        "slm-sql-0.5b",
        "cycloneboy/SLM-SQL-0.5B",
        "generate",
        "Qwen2.5-Coder-0.5B-Instruct",
        "default; BIRD dev 56.87",
    ),
    KnownModel(
        "slm-sql-1.5b", "cycloneboy/SLM-SQL-1.5B", "generate", "Qwen2.5-Coder-1.5B-Instruct", "BIRD dev 67.08"
    ),
    KnownModel("slm-sql-0.6b", "cycloneboy/SLM-SQL-0.6B", "generate", "Qwen3-0.6B", "BIRD dev 59.52"),
    KnownModel(
        "slm-sql-1.3b",
        "cycloneboy/SLM-SQL-1.3B",
        "generate",
        "deepseek-coder-1.3b-instruct",
        "BIRD dev 62.19",
    ),
    KnownModel(
        "csc-merge-0.5b",
        "cycloneboy/CscSQL-Merge-Qwen2.5-Coder-0.5B-Instruct",
        "merge",
        "Qwen2.5-Coder-0.5B-Instruct",
        "default merge model",
    ),
    KnownModel(
        "csc-merge-1.5b",
        "cycloneboy/CscSQL-Merge-Qwen2.5-Coder-1.5B-Instruct",
        "merge",
        "Qwen2.5-Coder-1.5B-Instruct",
    ),
)
# (checkpoint folder or repo id, quant) -> the GGUF exported from it
Exporter = Callable[[str, str], Path]
# (checkpoint folder or repo id, quant) -> its GGUF if one was exported before, without exporting
ExportLookup = Callable[[str, str], "Path | None"]

# The GGUF type `ask` (and `slmsql export` without a type flag) exports checkpoints to, chosen by
# benchmarks/quant_quality.py (docs/PERFORMANCE.md, "Which GGUF type"): the 4-bit recipes that
# decode fast on these 896-wide models lose too much against Q4_K_M, and Q8_0 is as fast as Q4_K_M.
DEFAULT_QUANT = "q8_0"
DEFAULT_MODEL = "slm-sql-0.5b"
DEFAULT_MERGE_MODEL = "csc-merge-0.5b"


def lookup(alias: str) -> KnownModel | None:
    alias = alias.lower()
    return next((m for m in REGISTRY if m.alias == alias), None)


def default_model() -> str:
    return os.environ.get("SLMSQL_MODEL", DEFAULT_MODEL)


def pick_gguf(files: list[str]) -> str | None:
    """Choose the file a laptop wants from a repo's GGUFs: Q4_K_M first, then other 4-bit, then any."""
    ggufs = sorted(f for f in files if f.lower().endswith(".gguf"))
    for pattern in ("q4_k_m", "q4_k", "q4", "q5_k_m", "q8_0"):
        for name in ggufs:
            if pattern in name.lower():
                return name
    return ggufs[0] if ggufs else None


def resolve(spec: str, *, quant: str = DEFAULT_QUANT, export: Exporter | None = None) -> Path:
    """Turn a `--model` value into the path of a GGUF file, downloading or exporting once if needed.

    A checkpoint (a local folder, or a Hub repo with safetensors only) goes to `export`; without
    one it is a UserError pointing to `slmsql export`.
    """
    spec = spec.strip()
    if not spec:
        raise UserError("empty --model value")
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        return _export(str(path), quant, export)
    hub_file = ":" in spec and hub.REPO_ID.match(spec.split(":", 1)[0])
    if path.suffix.lower() == ".gguf" and not hub_file:
        raise UserError(
            f"model file not found: {path}", "check the path, or run `slmsql models` to see what is cached"
        )
    known = lookup(spec)
    repo = known.repo if known else spec
    if not hub.REPO_ID.match(repo.split(":", 1)[0]):
        raise UserError(
            f"unknown model: {spec}",
            "pass a .gguf file, a Hugging Face repo id (owner/name) or an alias from `slmsql models`",
        )
    return _from_hub(repo, quant, export)


def _from_hub(repo: str, quant: str, export: Exporter | None) -> Path:
    """A GGUF from a Hub repo (optionally `owner/name:file.gguf`), or a cached export of its safetensors.

    What the local cache holds wins: `hf download` refreshes a cached repo.
    """
    repo_id, _, filename = repo.partition(":")
    hint = download_hint(repo_id)
    files = hub.cached_files(repo_id)
    if not filename:
        filename = pick_gguf(files) or ""
    if not filename and not any(f.endswith(".safetensors") for f in files):
        files = hub.list_files(repo_id)
        filename = pick_gguf(files) or ""
    if filename:
        return hub.download_file(repo_id, filename, hint=hint)
    if export is None and files:  # the repo is there and holds no GGUF: do not download it in vain
        raise UserError(f"{repo_id} has no GGUF file", f"export it first: slmsql export {repo_id}")
    return _export(str(hub.download_snapshot(repo_id, hint=hint)), quant, export)


def download_hint(repo_id: str) -> str:
    """What to do when `repo_id` is not cached and the Hub is out of reach, after `hf download
    REPO`: the alias the repo is known by, the merge model the default generator needs, and how
    to use a GGUF file instead."""
    known = next((m for m in REGISTRY if m.repo == repo_id), None)
    option = "--merge-model" if known is not None and known.role == "merge" else "--model"
    parts = [f"it is `{option} {known.alias}`"] if known else []
    if known is not None and known.alias == DEFAULT_MODEL:
        merge = lookup(DEFAULT_MERGE_MODEL)
        assert merge is not None
        parts.append(
            f"the merge model too: `hf download {merge.repo}` (`--merge-model {merge.alias}`; "
            "`slmsql ask --no-merge` goes without)"
        )
    parts.append(f"or use a GGUF file you have: `{option} path/to/model.gguf`")
    return "; ".join(parts)


def search_places() -> list[tuple[str, str]]:
    """Where `--model` looks, as (what, folder): `slmsql models` prints them."""
    from huggingface_hub import constants

    from slmsql_cli.cache import cache_path

    return [
        ("the Hugging Face cache (HF_HUB_CACHE or HF_HOME moves it)", str(constants.HF_HUB_CACHE)),
        ("GGUF exports of checkpoints (SLMSQL_CACHE_DIR moves it)", str(cache_path() / "exports")),
    ]


def _export(checkpoint: str, quant: str, export: Exporter | None) -> Path:
    if export is None:
        raise UserError(
            f"{checkpoint} is a model folder, not a GGUF file",
            f"export it first: slmsql export {checkpoint}",
        )
    return export(checkpoint, quant)


@dataclass
class ModelStatus:
    model: KnownModel
    cached_gguf: Path | None
    cached_checkpoint: bool


def registry_status(find_export: ExportLookup | None = None) -> list[ModelStatus]:
    """What `slmsql models` prints: every known model and whether it is already on this machine
    (its GGUF export, looked up with `find_export`, and its checkpoint in the Hub cache)."""
    cached = hub.cached_repos()
    out = []
    for m in REGISTRY:
        files = cached.get(m.repo, [])
        gguf = find_export(m.repo, DEFAULT_QUANT) if find_export else None
        out.append(ModelStatus(m, gguf, any(f.endswith(".safetensors") for f in files)))
    return out
