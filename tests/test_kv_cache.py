"""The prompt KV cache on disk: a new process reuses an earlier prompt's prefix, bit for bit, and
every fault (damaged, foreign or mismatched file, replaced model, unwritable or full folder, two
writers at once) falls back to evaluating the prompt with at most one warning and the same answer.

The store/lookup/evict tests write fake payloads (no model); the others run `slmsql ask` in fresh
processes with the real Gemma 3 270M runtime, at temperature 0 so that answers can be compared.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Slmsql

from slmsql_cli import kv_cache
from slmsql_cli.kv_cache import PromptStore

DEMO_DB = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"
FIRST = "How many books are there?"
SECOND = "Which author wrote the most books?"  # no matched values: shares the schema with FIRST


# ---- the store itself (fast: fake payloads) ---------------------------------------------------


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + os.urandom(3 * 1024 * 1024))
    return path


def store(model: Path, **settings: Any) -> PromptStore:
    opened = PromptStore.open(model, {"type_k": 1, **settings})
    assert opened is not None
    return opened


def test_stored_prompt_is_found_by_its_longest_reusable_prefix(
    isolated_cache: Path, model_file: Path
) -> None:
    s = store(model_file)
    s.save(list(range(1024)), bytearray(b"state-a" * 100))
    s.save(list(range(512)) + [9] * 512, bytearray(b"state-b" * 100))
    prompt = list(range(1100)) + [5]
    entry, usable = s.best(prompt, 512, max_tokens=4096, whole_only=False) or (None, 0)
    assert entry is not None and usable == 1024 and entry.tokens == list(range(1024))
    assert s.payload(entry) == bytearray(b"state-a" * 100)
    # the last chunk of a prompt is always evaluated: 1024 tokens reuse at most 512
    assert s.best(list(range(1024)), 512, max_tokens=4096, whole_only=False)[1] == 512  # type: ignore[index]
    # a sliding-window model can use an entry only whole; one longer than the context not at all
    assert s.best(list(range(600)) + [7] * 600, 512, max_tokens=4096, whole_only=True) is None
    assert s.best(prompt, 512, max_tokens=1000, whole_only=False) is None


def test_other_settings_or_model_content_use_another_folder(isolated_cache: Path, model_file: Path) -> None:
    a = store(model_file)
    a.save(list(range(1024)), bytearray(10))
    assert store(model_file, type_k=8).entries() == []
    stat = model_file.stat()
    with model_file.open("r+b") as fh:  # same size, same mtime, other content
        fh.seek(stat.st_size - 100)  # in the last MiB, which the fingerprint hashes
        fh.write(b"\xff" * 16)
    os.utime(model_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert store(model_file).entries() == []


def test_least_recently_used_entries_are_evicted(
    isolated_cache: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLMSQL_KV_CACHE_MB", "0.25")  # room for two 100 KB entries
    s = store(model_file)
    for i in range(3):
        s.save([i] * 600, bytearray(100_000))
        time.sleep(0.02)
    (oldest, middle) = sorted(s.entries(), key=lambda e: e.path.stat().st_mtime_ns)
    assert [oldest.tokens[0], middle.tokens[0]] == [1, 2]
    assert s.payload(oldest) is not None  # a hit makes it the most recent
    time.sleep(0.02)
    s.save([3] * 600, bytearray(100_000))
    assert sorted(e.tokens[0] for e in s.entries()) == [1, 3]


def test_size_setting(monkeypatch: pytest.MonkeyPatch, model_file: Path, capsys: Any) -> None:
    monkeypatch.setenv("SLMSQL_KV_CACHE_MB", "0")
    assert PromptStore.open(model_file, {}) is None
    monkeypatch.setenv("SLMSQL_KV_CACHE_MB", "12")
    assert kv_cache.cap_bytes() == 12 * 1024 * 1024
    monkeypatch.delenv("SLMSQL_KV_CACHE_MB")
    assert kv_cache.cap_bytes() == kv_cache.DEFAULT_CAP_MB * 1024 * 1024


# ---- real processes, real model ---------------------------------------------------------------


Ask = Callable[..., Any]


@pytest.fixture(scope="session")
def ask(slmsql: Slmsql) -> Ask:
    """`ask(cache, model, question, *extra, env=None, preexec=None, wait=True)`: `slmsql ask --json`
    on the demo database at temperature 0 in a fresh process; its answer and warnings (`finish`),
    or the running process when wait=False."""

    def run(
        cache: Path,
        model: Path,
        question: str,
        *extra: str,
        env: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
        wait: bool = True,
    ) -> Any:
        args = ["ask", "--db", DEMO_DB, "-m", model, "-n", "1", "--max-tokens", "16", "--temperature", "0"]
        args += ["--no-merge", "--json", *extra, question]
        proc = slmsql.start(*args, cache=cache, env=env, text=True, preexec_fn=preexec)
        return finish(proc) if wait else proc

    return run


def finish(proc: subprocess.Popen[str]) -> tuple[dict[str, Any], list[str]]:
    """The answer document and stderr's other lines: the warnings. Progress lines (printed off a
    terminal, "sampling 1 candidate(s)…") and the answer's own error and hint are not warnings."""
    out, err = proc.communicate(timeout=900)
    assert "Traceback" not in err, err
    assert out, err
    doc = json.loads(out)
    outcome = {f"error: {doc.get('error')}", f"hint: {doc.get('hint')}"}
    lines = [
        line
        for line in err.splitlines()
        if line.strip() and line not in outcome and not re.search(r"…( \(\d+s\))?$", line)
    ]
    return doc, lines


def answer(doc: dict[str, Any]) -> tuple[Any, ...]:
    """What the user gets, without the timings."""
    return doc["sql"], doc["rows"], doc["error"], doc["candidates"]


@pytest.fixture(scope="module")
def runs(ask: Ask, gemma_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Without a cache: both questions; with one: the first question fills it."""
    cache = tmp_path_factory.mktemp("kv") / "cache"
    plain = {q: ask(cache, gemma_gguf, q, "--no-prompt-cache")[0] for q in (FIRST, SECOND)}
    assert not (cache / "kv").exists()
    first, warnings = ask(cache, gemma_gguf, FIRST)
    assert warnings == []
    return {"cache": cache, "plain": plain, "first": first}


def filled(runs: dict[str, Any], tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    shutil.copytree(runs["cache"], cache)
    return cache


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("kv/*/*.kv"), key=lambda p: p.stat().st_size)


def test_a_new_process_evaluates_only_what_differs(
    ask: Ask, runs: dict[str, Any], gemma_gguf: Path, tmp_path: Path
) -> None:
    first = runs["first"]["generation"]
    assert first["prompt_tokens_evaluated"] == first["prompt_tokens"] > 1024
    assert answer(runs["first"]) == answer(runs["plain"][FIRST])
    cache = filled(runs, tmp_path)
    doc, warnings = ask(cache, gemma_gguf, SECOND)
    stats = doc["generation"]
    assert warnings == []
    assert stats["prompt_tokens_from_disk"] >= 1024
    assert stats["prompt_tokens_evaluated"] == stats["prompt_tokens"] - stats["prompt_tokens_from_disk"]
    assert answer(doc) == answer(runs["plain"][SECOND])  # temperature 0: the same candidates


def damage_truncate(cache: Path, model: Path) -> None:
    path = entries(cache)[-1]
    path.write_bytes(path.read_bytes()[:-1000])


def damage_flip(cache: Path, model: Path) -> None:
    for path in entries(cache):
        data = bytearray(path.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(
            b ^ 0x5A for b in data[len(data) // 2 : len(data) // 2 + 64]
        )
        path.write_bytes(bytes(data))


def damage_foreign(cache: Path, model: Path) -> None:
    for path in entries(cache):
        path.write_bytes(b"PK\x03\x04 not a prompt cache" + os.urandom(4096))


def damage_mismatched(cache: Path, model: Path) -> None:
    """Entries whose header names another key (as if copied from another model's folder)."""
    for path in entries(cache):
        path.write_bytes(path.read_bytes().replace(b'"format": 1', b'"format": 7', 1))


@pytest.mark.parametrize(
    "damage",
    [damage_truncate, damage_flip, damage_foreign, damage_mismatched],
    ids=["truncated", "flipped bytes", "foreign", "other key"],
)
def test_damaged_entry_is_ignored_with_one_warning_and_rebuilt(
    ask: Ask, runs: dict[str, Any], gemma_gguf: Path, tmp_path: Path, damage: Callable[[Path, Path], None]
) -> None:
    cache = filled(runs, tmp_path)
    damage(cache, gemma_gguf)
    doc, warnings = ask(cache, gemma_gguf, SECOND)
    assert len(warnings) == 1 and warnings[0].startswith("warning: ignored a damaged prompt-cache file")
    assert answer(doc) == answer(runs["plain"][SECOND])
    again, warnings = ask(cache, gemma_gguf, SECOND)  # rebuilt: the next process uses it
    assert warnings == [] and again["generation"]["prompt_tokens_from_disk"] >= 1024


def test_a_model_replaced_under_the_same_name_misses(
    ask: Ask, runs: dict[str, Any], gemma_gguf: Path, tmp_path: Path
) -> None:
    """Same path, size and mtime; different content (as `cp -p` of another model would leave)."""
    model = tmp_path / gemma_gguf.name
    shutil.copyfile(gemma_gguf, model)
    cache = tmp_path / "cache"
    ask(cache, model, FIRST)
    stat = model.stat()
    with model.open("r+b") as fh:  # the last tensor's last bytes
        fh.seek(stat.st_size - 4096)
        block = fh.read(2048)
        fh.seek(stat.st_size - 4096)
        fh.write(bytes(reversed(block)))
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    expected, _ = ask(cache, model, SECOND, "--no-prompt-cache")
    doc, warnings = ask(cache, model, SECOND)
    assert warnings == [] and doc["generation"]["prompt_tokens_from_disk"] == 0
    assert answer(doc) == answer(expected)


def limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (4 * 1024 * 1024, 4 * 1024 * 1024))


@pytest.mark.parametrize("fault", ["unwritable", "full"])
def test_unwritable_or_full_cache_folder_means_one_warning(
    ask: Ask, runs: dict[str, Any], gemma_gguf: Path, tmp_path: Path, fault: str
) -> None:
    cache = filled(runs, tmp_path)
    shutil.rmtree(cache / "kv")
    if fault == "unwritable":  # (tests run as root, where a read-only mode does not stop writes)
        (cache / "kv").write_text("a file where the folder should be")
        doc, warnings = ask(cache, gemma_gguf, SECOND)
    else:  # writes past 4 MB fail with EFBIG, as on a full disk (the prompt state is ~20 MB)
        doc, warnings = ask(cache, gemma_gguf, SECOND, preexec=limit_file_size)
    assert len(warnings) == 1 and "cannot write the cache folder" in warnings[0], warnings
    assert answer(doc) == answer(runs["plain"][SECOND])
    assert not list(cache.glob("kv/*/.*.tmp"))


def test_two_processes_writing_the_same_entries_at_once(
    ask: Ask, runs: dict[str, Any], gemma_gguf: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    both = [ask(cache, gemma_gguf, FIRST, wait=False) for _ in range(2)]
    for proc in both:
        doc, warnings = finish(proc)
        assert warnings == [] and answer(doc) == answer(runs["plain"][FIRST])
    assert not list(cache.glob("kv/*/.*.tmp"))
    doc, warnings = ask(cache, gemma_gguf, SECOND)
    assert warnings == [] and doc["generation"]["prompt_tokens_from_disk"] >= 1024
    assert answer(doc) == answer(runs["plain"][SECOND])
