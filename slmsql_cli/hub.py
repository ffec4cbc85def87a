"""Hugging Face Hub access for `ask --model`, `export` and `train`: the local cache first, then the Hub.

Everything goes through huggingface-hub (its cache layout, progress bars and `HF_HUB_OFFLINE=1`).
What this module adds is the behaviour a laptop needs: a repo fetched once loads from the cache
with no network call at all; with no network the answer comes at once instead of after the
client's ~20 s of retries; and every way a download can fail becomes one `UserError` line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from slmsql_cli.errors import UserError

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# What loading or exporting a checkpoint reads; never the .bin/.pth/.gguf/onnx copies some repos also carry.
WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "tokenizer*"]


def cached_repos() -> dict[str, list[str]]:
    """Every model repo in the local Hugging Face cache, with the file names it holds (any revision)."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    cache = Path(constants.HF_HUB_CACHE)
    if cache.exists() and not cache.is_dir():  # scan_cache_dir raises a bare ValueError
        raise UserError(
            f"the Hugging Face cache {cache} is a file, not a folder",
            "point HF_HUB_CACHE (or HF_HOME) at a folder",
        )
    try:
        # The folder is passed explicitly: huggingface-hub's default is fixed when it is first imported.
        info = scan_cache_dir(cache)
    except (CacheNotFound, OSError):  # no cache folder yet
        return {}
    return {
        repo.repo_id: sorted({f.file_name for rev in repo.revisions for f in rev.files})
        for repo in info.repos
        if repo.repo_type == "model"
    }


def cached_files(repo_id: str) -> list[str]:
    return cached_repos().get(repo_id, [])


def cache_folder() -> Path:
    """The Hugging Face cache folder models are read from (HF_HUB_CACHE, or HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline_reason() -> str | None:
    """Why the Hub cannot be reached, in words, or None when it may be: `HF_HUB_OFFLINE` (read
    now, not at import), or no network (the Hub's host name does not resolve)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {
        "1",
        "ON",
        "YES",
        "TRUE",
    }:
        return "HF_HUB_OFFLINE is set"
    try:
        socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname, 443)
    except (OSError, UnicodeError):
        return "no network"
    return None


def is_offline() -> bool:
    return offline_reason() is not None


def list_files(repo_id: str) -> list[str]:
    """The repo's files: from the Hub when reachable, else what the cache holds."""
    from huggingface_hub import list_repo_files

    if is_offline():
        return cached_files(repo_id)
    with hub_errors(repo_id):
        return list_repo_files(repo_id)


def download_file(repo_id: str, filename: str, *, hint: str = "", fix: str = "") -> Path:
    """One file of a repo, from the cache when it is there (`hint`, `fix`: see `hub_errors`)."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, filename, cache_dir=constants.HF_HUB_CACHE)
    if isinstance(cached, str):  # one path lookup, no scan of the whole cache
        return Path(cached)
    with hub_errors(repo_id, hint, fix=fix):
        return Path(hf_hub_download(repo_id, filename, local_files_only=is_offline()))


def download_snapshot(
    repo_id: str, patterns: list[str] | None = None, *, hint: str = "", fix: str = ""
) -> Path:
    """A checkpoint folder (config, safetensors, tokenizer), from the cache when it holds the weights."""
    from huggingface_hub import snapshot_download

    local = any(f.endswith(".safetensors") for f in cached_files(repo_id)) or is_offline()
    with hub_errors(repo_id, hint, fix=fix):
        return Path(
            snapshot_download(repo_id, allow_patterns=patterns or WEIGHT_PATTERNS, local_files_only=local)
        )


@contextmanager
def hub_errors(repo_id: str, hint: str = "", *, fix: str = "") -> Iterator[None]:
    """Turn whatever a Hub call raises for a missing repo or a missing network into one clear line,
    in words (never an exception's class name). Without the network the hint says to `hf download`
    the repo, then `hint`; `fix` replaces all of that (`models.first_run_fix`)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        yield
    except RepositoryNotFoundError:
        raise UserError(
            f"no such model on Hugging Face: {repo_id}",
            "check the repo id (owner/name), or run `slmsql models` for the known aliases",
        ) from None
    except _network_errors():
        raise UserError(
            f"{repo_id} is not cached and Hugging Face cannot be reached ({offline_reason() or 'the download failed'})",
            fix
            or f"on a connected machine run `hf download {repo_id}` and copy its Hugging Face cache "
            "folder here"
            + (f"; {hint}" if hint else ""),
        ) from None


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a failed download raises: hub errors, OS errors, and the HTTP client's transport errors."""
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
