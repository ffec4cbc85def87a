"""`--model` resolution (local file, Hub repo from a pre-filled offline cache, alias), `models` and `bench`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, Slmsql

from slmsql_cli.errors import UserError
from slmsql_cli.models import REGISTRY, lookup, pick_gguf, resolve

DEMO = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def offline_hub(tmp_path: Path, gemma_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A Hugging Face cache laid out as huggingface-hub writes it, holding one GGUF repo; network off."""
    hub = tmp_path / "hf" / "hub"
    repo = hub / "models--acme--tiny-sql-GGUF"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SNAPSHOT)
    blobs = repo / "blobs"
    blobs.mkdir()
    blob = blobs / "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    blob.symlink_to(gemma_gguf)
    snap = repo / "snapshots" / SNAPSHOT
    snap.mkdir(parents=True)
    for name in ("tiny-sql.Q8_0.gguf", "tiny-sql.Q4_K_M.gguf"):
        (snap / name).symlink_to(blob)
    env = {
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "SLMSQL_CACHE_DIR": str(tmp_path / "cache"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # huggingface-hub reads its environment once, at import; an earlier test may have imported it.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return env


def test_pick_gguf_prefers_q4_k_m() -> None:
    files = ["README.md", "m.Q8_0.gguf", "m.Q4_K_M.gguf", "m.f16.gguf"]
    assert pick_gguf(files) == "m.Q4_K_M.gguf"
    assert pick_gguf(["m.f16.gguf", "m.Q8_0.gguf"]) == "m.Q8_0.gguf"
    assert pick_gguf(["config.json", "model.safetensors"]) is None


def test_registry_has_the_paper_models() -> None:
    assert lookup("slm-sql-0.5b").repo == "cycloneboy/SLM-SQL-0.5B"
    assert lookup("CSC-MERGE-0.5B").role == "merge"
    assert {m.role for m in REGISTRY} == {"generate", "merge"}


def test_local_file_and_bad_specs(gemma_gguf: Path) -> None:
    assert resolve(str(gemma_gguf)) == gemma_gguf
    with pytest.raises(UserError, match="not found"):
        resolve("nowhere/model.gguf")
    with pytest.raises(UserError, match="unknown model"):
        resolve("no such model")


def test_hub_repo_resolves_offline_from_the_cache(offline_hub: dict[str, str]) -> None:
    path = resolve("acme/tiny-sql-GGUF")
    assert path.name == "tiny-sql.Q4_K_M.gguf" and path.exists()
    assert resolve("acme/tiny-sql-GGUF:tiny-sql.Q8_0.gguf").name == "tiny-sql.Q8_0.gguf"
    with pytest.raises(UserError, match="not cached"):
        resolve("acme/not-downloaded")


def test_cached_repo_needs_no_network_even_when_not_told_offline(
    offline_hub: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A laptop on a plane: HF_HUB_OFFLINE unset and the Hub unreachable. Cached models still load."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")  # a name that never resolves (RFC 2606)
    assert resolve("acme/tiny-sql-GGUF").name == "tiny-sql.Q4_K_M.gguf"
    with pytest.raises(UserError, match="cannot be reached"):
        resolve("acme/not-downloaded")
    assert "Retrying" not in caplog.text  # no network: answer at once, not after ~20 s of retries
    # A host that resolves but refuses connections goes through the client's retries, then the same line.
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(UserError, match="cannot be reached"):
        resolve("acme/not-downloaded")
    assert "Retrying" in caplog.text


def test_ask_with_a_cached_hub_repo(slmsql: Slmsql, offline_hub: dict[str, str]) -> None:
    proc = slmsql(
        "ask",
        "--db",
        str(DEMO),
        "-m",
        "acme/tiny-sql-GGUF",
        "-n",
        "1",
        "--max-tokens",
        "16",
        "--json",
        "How many books are there?",
        env=offline_hub,
        timeout=600,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["candidates"]


def test_models_command_lists_the_registry(slmsql: Slmsql, offline_hub: dict[str, str]) -> None:
    proc = slmsql("models", "--json", env=offline_hub, timeout=600)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [m["alias"] for m in doc] == [m.alias for m in REGISTRY]
    assert all(m["gguf"] is None and not m["checkpoint_cached"] for m in doc)
    table = slmsql("models", env=offline_hub, timeout=600)
    assert "slm-sql-0.5b" in table.stdout and "cycloneboy/SLM-SQL-0.5B" in table.stdout


def test_bench_prints_one_json_line_per_run(slmsql: Slmsql, gemma_gguf: Path, tmp_path: Path) -> None:
    proc = slmsql(
        "bench",
        "--db",
        str(DEMO),
        "-m",
        str(gemma_gguf),
        "-n",
        "1,2",
        "--max-tokens",
        "8",
        env={"SLMSQL_CACHE_DIR": str(tmp_path / "cache")},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["n"] for r in doc["results"]] == [1, 2]
    for r in doc["results"]:
        assert r["generated_tokens"] == 8 * r["n"]
        assert r["prompt_tokens_per_s"] > 0 and r["generated_tokens_per_s"] > 0 and r["peak_rss_mb"] > 0
    bad = slmsql("bench", "--db", str(DEMO), "-m", str(gemma_gguf), "-n", "1,x", env={}, timeout=600)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
