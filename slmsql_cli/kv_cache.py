"""A prompt KV cache that outlives the process: sequence 0's llama.cpp state, saved per prompt.

After the engine evaluates a prompt, the KV cells of sequence 0 (llama.cpp's per-sequence state,
`llama_state_seq_get_data`) are written to `<cache>/kv/<key>/<tokens hash>.kv`. The next process
with the same model and context settings picks the stored prompt that shares the longest exact
token prefix with its own, loads it, drops the cells after the common prefix and evaluates only the
rest. Only an exact prefix is reused: a cell's K and V depend on every token before it, so reusing
cells after the first difference (llama.cpp's server `--cache-reuse` shifts such chunks) would
change the answers.

Same answers, bit for bit. The engine evaluates a prompt in chunks of 512 tokens, and llama.cpp's
results for a token depend slightly on the chunk it was computed in (Gemma 3 270M: logits differ
by up to 0.97 when the same prompt is evaluated from token 1094 rather than from 0). So a prefix is
reused only up to a chunk boundary, and never into the last chunk, which is always evaluated: then
every chunk is computed exactly as from scratch, and the logits are identical to those without a
cache (checked: max difference 0.0, Gemma 3 and the Qwen2.5-0.5B shape). It costs up to 511
tokens of reuse. States are saved at chunk boundaries for the same reason. Sliding-window models
(Gemma 3) are the one complication: llama.cpp saves only the window's cells of their SWA layers, so
a state is usable only whole; they get a state saved at every boundary of the prompt.

The key folder names what makes the stored bytes valid to load (`store_key`): the model file's
identity (size, mtime and a hash of sampled content, so a file replaced by another of the same
name misses even when its size and mtime were preserved), the llama.cpp build, and the context
settings that change the cells' layout or values (KV types, flash attention, SWA, unified KV,
RoPE). The context size and the number of sequences are not in it: a sequence's cells are stored
by position, independent of how many cells the context has, so a second question whose prompt
rounds to another context size, or another `-n`, still finds the first one's entry.

Files: a fixed header (magic, format version, lengths, CRC-32 of all that follows), the key as
JSON, the token list, then llama.cpp's payload. A file that is truncated, damaged, foreign, for
another key, or that llama.cpp refuses is removed with one warning and the prompt is evaluated
as if there were no cache (and stored again). The folder is bounded (`SLMSQL_KV_CACHE_MB`, default
1 GiB, 0 disables): after each write the least recently used entries (by mtime, set on every hit)
are deleted. Writes go through `cache.atomic_path`, so two processes writing the same entry both
succeed and a reader sees one whole file or none.

Written by hand rather than with llama-cpp-python's `LlamaDiskCache`: that one pickles the whole
context state plus an n_batch x vocabulary float copy of the scores (300-400 MB for these
vocabularies), for one sequence of the high-level class, with no key beyond the tokens.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmsql_cli import cache

MAGIC = b"SLMSQLKV"
FORMAT_VERSION = 1
# magic, format version, key length, token count, payload length, CRC-32 of key + tokens + payload
_FIXED = struct.Struct("<8sIIQQI")
DEFAULT_CAP_MB = 1024
# A prompt that reused at least this share of its tokens from a cache is not stored again: its new
# part is specific to its question, and storing every question would churn the folder. What is
# stored is the prompts that had to be evaluated (mostly) from scratch.
STORE_IF_REUSED_BELOW = 0.5
_SAMPLES = 16  # content samples of the model file, besides its first and last MiB
_SAMPLE_BYTES = 64 * 1024
_MIB = 1024 * 1024

_warned = False


def warn_once(message: str) -> None:
    """At most one prompt-cache warning per process, however many faults follow the first."""
    global _warned
    if not _warned:
        _warned = True
        cache.warn(message)


def cap_bytes() -> int:
    """The cache's size bound from $SLMSQL_KV_CACHE_MB (default 1024 MiB); 0 turns the cache off.

    1 GiB holds about forty 2,000-token prompts of a Qwen2.5-0.5B model (12 KiB of f16 K and V per
    token, 24 MiB a prompt) or twenty of Gemma 3 270M (four states of 9-14 MiB a prompt), i.e. a
    few prompts for each of a dozen databases, while staying small next to the models themselves.
    """
    raw = os.environ.get("SLMSQL_KV_CACHE_MB", "").strip()
    if not raw:
        return DEFAULT_CAP_MB * _MIB
    try:
        mb = float(raw)
        if mb < 0 or mb != mb:
            raise ValueError(raw)
    except ValueError:
        warn_once(f"SLMSQL_KV_CACHE_MB={raw!r} is not a size in MiB; using {DEFAULT_CAP_MB}")
        return DEFAULT_CAP_MB * _MIB
    return int(mb * _MIB)


def model_fingerprint(path: Path) -> str:
    """Size, mtime and a SHA-256 of the model file's first and last MiB and 16 spread 64 KiB samples.

    Hashing the whole file (hundreds of MB) would cost more than the cache saves; the header and
    metadata sit in the first MiB, and a different model or fine-tune differs in nearly every
    sampled tensor. Size and mtime catch an ordinary re-export; the samples catch a replacement
    that kept them (`cp -p`, `rsync -a`, unpacking an archive).
    """
    stat = path.stat()
    size = stat.st_size
    digest = hashlib.sha256(f"{size}".encode())
    with path.open("rb") as fh:
        offsets = [0, max(size - _MIB, 0)]
        offsets += [size * (i + 1) // (_SAMPLES + 1) for i in range(_SAMPLES)]
        for offset in offsets:
            fh.seek(offset)
            digest.update(fh.read(_MIB if offset in offsets[:2] else _SAMPLE_BYTES))
    return f"{size}-{stat.st_mtime_ns}-{digest.hexdigest()[:32]}"


def store_key(model_path: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a stored state must match to be loaded: the model's identity and `settings`
    (the llama.cpp build and the context settings, from the engine)."""
    return {"format": FORMAT_VERSION, "model": model_fingerprint(model_path), **settings}


@dataclass
class Entry:
    """A stored prompt: its file, its tokens and where its payload starts (read by `payload`)."""

    path: Path
    tokens: list[int]
    offset: int  # of the tokens, i.e. the end of the key JSON
    payload_len: int
    crc: int


def reusable_length(n_tokens: int, chunk: int) -> int:
    """The longest prefix of an `n_tokens` prompt that may come from a cache: whole chunks before
    the last one, which is always evaluated (it yields the logits, computed as from scratch)."""
    return (n_tokens - 1) // chunk * chunk


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class PromptStore:
    """The stored prompts of one key (one model file, one set of context settings)."""

    def __init__(self, root: Path, key: Mapping[str, Any], cap: int) -> None:
        self.root = root  # <cache>/kv
        self.key_json = json.dumps(dict(key), sort_keys=True).encode("utf-8")
        self.folder = root / cache.short_hash(self.key_json.decode("utf-8"))
        self.cap = cap
        self.writable = True

    @classmethod
    def open(cls, model_path: Path, settings: Mapping[str, Any]) -> PromptStore | None:
        """The store for this model and these settings; None when the cache is off or unusable."""
        cap = cap_bytes()
        if cap <= 0:
            return None
        try:
            key = store_key(model_path, settings)
            root = cache.cache_dir() / "kv"
        except OSError as exc:
            warn_once(cache.unwritable_message(exc))
            return None
        return cls(root, key, cap)

    # ---- reading -----------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        """The entries of this key whose header reads and matches; damaged ones are removed."""
        try:
            paths = sorted(self.folder.glob("*.kv"))
        except OSError:
            return []
        found = []
        for path in paths:
            entry = self._read_header(path)
            if entry is not None:
                found.append(entry)
        return found

    def best(
        self, tokens: Sequence[int], chunk: int, *, max_tokens: int, whole_only: bool
    ) -> tuple[Entry, int] | None:
        """The entry giving the longest reusable prefix of `tokens`, and that prefix's length.

        A reusable prefix ends at a multiple of `chunk` before the prompt's last chunk (see the
        module docstring); `whole_only` (sliding-window models) allows only an entry's full length.
        Entries longer than `max_tokens` (the context's cells) are skipped."""
        limit = reusable_length(len(tokens), chunk)
        best: tuple[Entry, int] | None = None
        for entry in self.entries():
            if len(entry.tokens) > max_tokens:
                continue
            usable = min(common_prefix(entry.tokens, tokens), limit) // chunk * chunk
            if whole_only and usable != len(entry.tokens):
                continue
            if usable and (best is None or usable > best[1]):
                best = (entry, usable)
        return best

    def _read_header(self, path: Path) -> Entry | None:
        try:
            return self._parse_header(path)
        except FileNotFoundError:  # evicted or replaced by another process meanwhile
            return None
        except OSError as exc:
            self.reject(path, f"unreadable ({exc.strerror or exc})")
        except ValueError as exc:
            self.reject(path, str(exc))
        return None

    def _parse_header(self, path: Path) -> Entry:
        """The entry in `path`; a ValueError saying why the file is not one of this key's."""
        with path.open("rb") as fh:
            fixed = fh.read(_FIXED.size)
            if len(fixed) < _FIXED.size:
                raise ValueError("truncated")
            magic, version, key_len, n_tokens, payload_len, crc = _FIXED.unpack(fixed)
            if magic != MAGIC:
                raise ValueError("not a slmsql prompt-cache file")
            if version != FORMAT_VERSION:
                raise ValueError(f"format version {version}, expected {FORMAT_VERSION}")
            if os.fstat(fh.fileno()).st_size != _FIXED.size + key_len + 4 * n_tokens + payload_len:
                raise ValueError("truncated or padded")
            if fh.read(key_len) != self.key_json:
                raise ValueError("written for another model or other settings")
            raw = fh.read(4 * n_tokens)
        tokens = list(struct.unpack(f"<{n_tokens}i", raw))
        return Entry(path, tokens, _FIXED.size + key_len, payload_len, crc)

    def payload(self, entry: Entry) -> bytearray | None:
        """The entry's llama.cpp state, checked against its CRC; None (after one warning) if damaged.

        A hit marks the entry as recently used."""
        try:
            with entry.path.open("rb") as fh:
                fh.seek(_FIXED.size)
                body = fh.read(entry.offset - _FIXED.size)
                tokens = fh.read(4 * len(entry.tokens))
                data = bytearray(entry.payload_len)
                got = fh.readinto(data)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.reject(entry.path, f"unreadable ({exc.strerror or exc})")
            return None
        crc = zlib.crc32(data, zlib.crc32(tokens, zlib.crc32(body)))
        if got != entry.payload_len or crc != entry.crc:
            self.reject(entry.path, "checksum mismatch")
            return None
        with contextlib.suppress(OSError):
            os.utime(entry.path)
        return data

    def reject(self, path: Path, why: str) -> None:
        """Remove a file that cannot be used (it is rebuilt by the next store) and say so once."""
        warn_once(f"ignored a damaged prompt-cache file {path.name} ({why}); evaluating the prompt")
        with contextlib.suppress(OSError):
            path.unlink()

    # ---- writing -----------------------------------------------------------------------------
    def save(self, tokens: Sequence[int], payload: Any) -> None:
        """Store `payload` (llama.cpp's state of sequence 0 holding `tokens`), then evict to the cap.

        A store that fails (unwritable or full folder) warns once and turns storing off."""
        if not self.writable:
            return
        raw = struct.pack(f"<{len(tokens)}i", *tokens)
        view = memoryview(payload).cast("B")
        size = _FIXED.size + len(self.key_json) + len(raw) + len(view)
        if size > self.cap:
            return
        crc = zlib.crc32(view, zlib.crc32(raw, zlib.crc32(self.key_json)))
        fixed = _FIXED.pack(MAGIC, FORMAT_VERSION, len(self.key_json), len(tokens), len(view), crc)
        target = self.folder / f"{hashlib.sha256(raw).hexdigest()[:32]}.kv"
        try:
            cache.private_mkdir(self.folder)
            cache.remove_orphans(self.folder)
            with cache.atomic_path(target) as tmp, tmp.open("wb") as fh:
                for part in (fixed, self.key_json, raw, view):
                    fh.write(part)
            self.evict()
        except OSError as exc:
            self.writable = False
            warn_once(cache.unwritable_message(exc))

    def evict(self) -> None:
        """Delete the least recently used entries (of every key) until the folder fits the cap."""
        files = []
        for path in self.root.glob("*/*.kv"):
            with contextlib.suppress(OSError):
                stat = path.stat()
                files.append((stat.st_mtime_ns, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.cap:
                break
            with contextlib.suppress(OSError):
                path.unlink()
            total -= size


# llama_context_params fields that change what a stored sequence holds or how it is laid out.
# Not n_ctx, n_seq_max, batch sizes or threads (see the module docstring).
_KEY_PARAMS = (
    "type_k",
    "type_v",
    "flash_attn_type",  # V is stored transposed without flash attention
    "swa_full",
    "kv_unified",
    "offload_kqv",
    "op_offload",
    "rope_scaling_type",
    "rope_freq_base",
    "rope_freq_scale",
    "yarn_ext_factor",
    "yarn_attn_factor",
    "yarn_beta_fast",
    "yarn_beta_slow",
    "yarn_orig_ctx",
    "attention_type",
    "embeddings",
)


def context_settings(ll: Any, params: Any, original_context: int) -> dict[str, Any]:
    """The key fields of a llama.cpp context: the build (version and CPU/GPU features, which change
    the computed values slightly) and `_KEY_PARAMS`. `original_context` is the model's pre-scaling
    context: LongRoPE models switch to other RoPE factors above it, the one way n_ctx changes K."""
    settings: dict[str, Any] = {name: getattr(params, name) for name in _KEY_PARAMS}
    settings["llama_cpp"] = getattr(ll, "__version__", "")
    settings["system"] = ll.llama_print_system_info().decode("utf-8", "replace").strip()
    settings["long_rope"] = int(params.n_ctx) > original_context
    return settings
