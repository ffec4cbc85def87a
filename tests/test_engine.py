"""The batched llama.cpp engine, on the real Gemma 3 270M GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmsql_cli._internals import check_gguf_file
from slmsql_cli.cpu import physical_cores
from slmsql_cli.engine import Engine
from slmsql_cli.engine_protocol import SamplingParams
from slmsql_cli.errors import UserError

PROMPT = "<bos><start_of_turn>user\nWrite one SQL query that counts the rows of table albums.<end_of_turn>\n<start_of_turn>model\n"


@pytest.fixture(scope="module")
def engine(gemma_gguf: Path) -> Engine:
    e = Engine(gemma_gguf, threads=2)
    yield e
    e.close()


def test_batch_returns_n_candidates_of_fixed_length(engine: Engine) -> None:
    completions, stats = engine.sample(PROMPT, SamplingParams(n=4, max_tokens=12, ignore_eos=True, stop=()))
    assert len(completions) == 4
    assert all(c.tokens == 12 and c.finish_reason == "length" for c in completions)
    assert stats.generated_tokens == 48
    assert stats.prompt_tokens == len(engine.tokenize(PROMPT))
    assert stats.wall_seconds >= stats.prompt_seconds > 0
    # Each sequence has its own seed: at temperature 0.8 four 12-token samples are not all equal.
    assert len({c.text for c in completions}) > 1


def test_same_seed_same_candidates(engine: Engine) -> None:
    params = SamplingParams(n=3, max_tokens=10, seed=7, ignore_eos=True, stop=())
    first, _ = engine.sample(PROMPT, params)
    engine.close_context()
    second, _ = engine.sample(PROMPT, params)
    assert [c.text for c in first] == [c.text for c in second]


def test_greedy_candidates_are_identical(engine: Engine) -> None:
    completions, _ = engine.sample(
        PROMPT, SamplingParams(n=3, temperature=0.0, max_tokens=8, ignore_eos=True, stop=())
    )
    assert len({c.text for c in completions}) == 1


def test_cached_prefix_is_not_evaluated_again(engine: Engine) -> None:
    engine.close_context()
    _, first = engine.sample(PROMPT, SamplingParams(n=2, max_tokens=4))
    assert first.prompt_tokens_evaluated == first.prompt_tokens
    longer = PROMPT.replace("albums", "albums and tracks")
    _, second = engine.sample(longer, SamplingParams(n=2, max_tokens=4))
    # Only the tokens from the first difference on are evaluated.
    assert 0 < second.prompt_tokens_evaluated < second.prompt_tokens
    _, third = engine.sample(longer, SamplingParams(n=2, max_tokens=4))
    assert third.prompt_tokens_evaluated == 1  # same prompt: only the last token, for fresh logits


def test_stop_string_ends_a_sequence(engine: Engine) -> None:
    # A stop string that any text contains ends each sequence after its first token holding it.
    completions, _ = engine.sample(PROMPT, SamplingParams(n=2, max_tokens=64, stop=("e",)))
    assert any(c.finish_reason == "stop" for c in completions)
    for c in completions:
        # a sequence that ended otherwise (end of turn, length) never wrote the stop string
        assert c.text.count("e") == (1 if c.finish_reason == "stop" else 0)
        assert c.finish_reason != "stop" or c.text.endswith("e")


def test_rounds_when_n_does_not_fit(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    prompt_len = len(engine.tokenize(PROMPT))
    monkeypatch.setattr(engine, "n_ctx_limit", prompt_len + 2 * 16 + 1)  # room for two sequences only
    engine.close_context()
    completions, stats = engine.sample(PROMPT, SamplingParams(n=5, max_tokens=16, ignore_eos=True, stop=()))
    assert len(completions) == 5 and stats.rounds == 3
    assert all(c.tokens == 16 for c in completions)


def test_prompt_too_long_is_a_user_error(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "n_ctx_limit", 20)
    with pytest.raises(UserError, match="exceeds the model's context"):
        engine.sample(PROMPT, SamplingParams(n=1, max_tokens=16))


def test_bad_model_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        check_gguf_file(tmp_path / "missing.gguf")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(UserError, match="not a GGUF"):
        check_gguf_file(fake)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(UserError, match="could not load"):
        Engine(truncated)


def test_physical_cores_is_positive() -> None:
    assert physical_cores() >= 1
