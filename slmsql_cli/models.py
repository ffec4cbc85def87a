"""Which GGUF file a `--model` value means: a local file, a Hugging Face repo, or a registry alias.

Downloads go through huggingface-hub (its cache, its progress bars, `HF_HUB_OFFLINE=1`), so a
model fetched once works offline afterwards. Repos that publish safetensors only (the SLM-SQL
checkpoints do) are exported once to a cached Q4_K_M GGUF by `quantize.cached_export`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

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
    KnownModel("slm-sql-0.5b", "cycloneboy/SLM-SQL-0.5B", "generate", "Qwen2.5-Coder-0.5B-Instruct", "default; BIRD dev 56.87"),
    KnownModel("slm-sql-1.5b", "cycloneboy/SLM-SQL-1.5B", "generate", "Qwen2.5-Coder-1.5B-Instruct", "BIRD dev 67.08"),
    KnownModel("slm-sql-0.6b", "cycloneboy/SLM-SQL-0.6B", "generate", "Qwen3-0.6B", "BIRD dev 59.52"),
    KnownModel("slm-sql-1.3b", "cycloneboy/SLM-SQL-1.3B", "generate", "deepseek-coder-1.3b-instruct", "BIRD dev 62.19"),
    KnownModel("csc-merge-0.5b", "cycloneboy/CscSQL-Merge-Qwen2.5-Coder-0.5B-Instruct", "merge", "Qwen2.5-Coder-0.5B-Instruct", "default merge model"),
    KnownModel("csc-merge-1.5b", "cycloneboy/CscSQL-Merge-Qwen2.5-Coder-1.5B-Instruct", "merge", "Qwen2.5-Coder-1.5B-Instruct"),
)
DEFAULT_MODEL = "slm-sql-0.5b"
DEFAULT_MERGE_MODEL = "csc-merge-0.5b"

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "tokenizer*"]


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


def resolve(spec: str, *, quant: str = "q4_k_m") -> Path:
    """Turn a `--model` value into the path of a GGUF file, downloading or exporting once if needed."""
    spec = spec.strip()
    if not spec:
        raise UserError("empty --model value")
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        return _export(str(path), quant)
    hub_file = ":" in spec and _REPO_ID.match(spec.split(":", 1)[0])
    if path.suffix.lower() == ".gguf" and not hub_file:
        raise UserError(f"model file not found: {path}", "check the path, or run `slmsql models` to see what is cached")
    known = lookup(spec)
    repo = known.repo if known else spec
    if not _REPO_ID.match(repo.split(":", 1)[0]):
        raise UserError(f"unknown model: {spec}", "pass a .gguf file, a Hugging Face repo id (owner/name) or an alias from `slmsql models`")
    return _from_hub(repo, quant)


def _from_hub(repo: str, quant: str) -> Path:
    """A GGUF from a Hub repo (optionally `owner/name:file.gguf`), or a cached export of its safetensors.

    The local cache is tried first: a model fetched once must answer instantly on a laptop with no
    network, not after huggingface-hub's ~20 s of connection retries. `huggingface-cli download`
    refreshes a cached repo.
    """
    from huggingface_hub import hf_hub_download, list_repo_files, snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    repo_id, _, filename = repo.partition(":")
    cached = _cached_files(repo_id)
    try:
        if not filename:
            filename = pick_gguf(cached) or ""
        if filename and filename in cached:
            return Path(hf_hub_download(repo_id, filename, local_files_only=True))
        if not filename and any(f.endswith(".safetensors") for f in cached):
            return _export(snapshot_download(repo_id, allow_patterns=_WEIGHT_PATTERNS, local_files_only=True), quant)
        offline = _offline() or not _hub_resolves()
        if not filename:
            files = cached if offline else list_repo_files(repo_id)
            filename = pick_gguf(files) or ""
        if filename:
            return Path(hf_hub_download(repo_id, filename, local_files_only=offline))
        snapshot = snapshot_download(repo_id, allow_patterns=_WEIGHT_PATTERNS, local_files_only=offline)
    except RepositoryNotFoundError:
        raise UserError(f"no such model on Hugging Face: {repo_id}", "check the repo id, or run `slmsql models` for the known aliases") from None
    except _network_errors() as exc:
        raise UserError(
            f"model {repo_id} is not cached and Hugging Face cannot be reached ({type(exc).__name__})",
            f"on a connected machine run `huggingface-cli download {repo_id}` (or copy the cache), or pass a local .gguf with --model",
        ) from None
    return _export(snapshot, quant)


def _offline() -> bool:
    """`HF_HUB_OFFLINE`, read now: huggingface-hub reads it once at import, which may be before the user set it."""
    from huggingface_hub.constants import is_offline_mode

    return is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_resolves() -> bool:
    """Whether the Hub's host name resolves. With no network at all (a laptop on a plane) the
    download client would otherwise retry for ~20 s before giving the same answer."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname
    try:
        socket.getaddrinfo(host, 443)
    except (OSError, UnicodeError):
        return False
    return True


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a failed download raises: hub errors, OS errors, and the HTTP client's own transport errors."""
    import importlib

    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    errors: list[type[BaseException]] = [HfHubHTTPError, LocalEntryNotFoundError, OSError]
    # huggingface-hub has used requests, httpx and httpx2 across versions; their errors are not OSErrors.
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _cached_files(repo_id: str) -> list[str]:
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(constants.HF_HUB_CACHE)
    except (CacheNotFound, OSError):  # no cache folder yet
        return []
    for repo in info.repos:
        if repo.repo_id == repo_id and repo.repo_type == "model":
            return sorted({f.file_name for rev in repo.revisions for f in rev.files})
    return []


def _export(checkpoint: str, quant: str) -> Path:
    from quantize.export import cached_export

    # No verification here: it needs torch, which the ask path never imports (`slmsql export` verifies).
    return cached_export(checkpoint, quant=quant, verify=False)


@dataclass
class ModelStatus:
    model: KnownModel
    cached_gguf: Path | None
    cached_checkpoint: bool


def registry_status() -> list[ModelStatus]:
    """What `slmsql models` prints: every known model and whether it is already on this machine."""
    from huggingface_hub import scan_cache_dir

    cached: dict[str, set[str]] = {}
    try:
        for repo in scan_cache_dir().repos:
            cached[repo.repo_id] = {f.file_name for rev in repo.revisions for f in rev.files}
    except Exception:
        pass
    out = []
    for m in REGISTRY:
        files = cached.get(m.repo, set())
        out.append(ModelStatus(m, _cached_export_path(m.repo), any(f.endswith(".safetensors") for f in files)))
    return out


def _cached_export_path(repo: str) -> Path | None:
    try:
        from quantize.export import find_cached_export
    except ImportError:
        return None
    return find_cached_export(repo)
