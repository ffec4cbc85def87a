"""`slmsql chat` keeps the model loaded and re-evaluates only the part of the prompt that changed."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO, Slmsql

DEMO = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"


def test_second_question_reuses_the_cached_prompt(slmsql: Slmsql, gemma_gguf: Path, tmp_path: Path) -> None:
    questions = "How many books are there?\nHow many customers are there?\nexit\n"
    proc = slmsql(
        "chat", "--db", DEMO, "-m", gemma_gguf, "-n", "2", "--max-tokens", "16", "--no-merge", "--no-values",
        stdin=questions, cache=tmp_path / "cache", env={"PATH": "/usr/bin:/bin"}, inherit=False, timeout=600,
    )  # fmt: skip
    # Gemma 270M may write no SQL in 16 tokens: that question has no answer, which exits 1
    assert proc.returncode in (0, 1), proc.stderr
    stats = [tuple(map(int, m)) for m in re.findall(r"prompt (\d+) tokens, (\d+) evaluated", proc.stderr)]
    assert len(stats) == 2, proc.stderr
    (total1, evaluated1), (total2, evaluated2) = stats
    assert evaluated1 == total1  # first question: the whole prompt
    # Second question: the schema prefix comes from the KV cache; only the question onwards is new.
    assert 0 < evaluated2 < total2 // 4
    assert "Traceback" not in proc.stderr
