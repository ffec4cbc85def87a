"""The engine's native handles: freed once, in order, and never used after `close`."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from slmsql_cli.engine import Engine
from slmsql_cli.engine_protocol import SamplingParams

PROMPT = "<bos><start_of_turn>user\nCount the rows of table albums.<end_of_turn>\n<start_of_turn>model\n"
PARAMS = SamplingParams(n=2, max_tokens=4, ignore_eos=True, stop=())


def test_close_twice_is_safe_and_a_closed_engine_refuses_use(gemma_gguf: Path) -> None:
    engine = Engine(gemma_gguf, threads=2)
    completions, _ = engine.sample(PROMPT, PARAMS)  # a context and a batch exist now
    assert len(completions) == 2 and not engine.closed
    engine.close()
    engine.close()
    assert engine.closed
    for use in (
        lambda: engine.sample(PROMPT, PARAMS),
        lambda: engine.tokenize("SELECT 1"),
        lambda: engine.token_text(0),
        lambda: engine.special_token_text("bos"),
    ):
        with pytest.raises(RuntimeError, match=f"the engine for {gemma_gguf.name} is closed"):
            use()
    engine.close_context()  # nothing left to free: still harmless


def test_context_manager_closes_and_context_can_be_remade(gemma_gguf: Path) -> None:
    with Engine(gemma_gguf, threads=2) as engine:
        first, _ = engine.sample(PROMPT, PARAMS)
        engine.close_context()  # the model stays; the next call makes a new context
        second, _ = engine.sample(PROMPT, PARAMS)
        assert [c.text for c in first] == [c.text for c in second]
    assert engine.closed


def test_an_engine_nobody_closes_is_freed_when_collected(gemma_gguf: Path) -> None:
    engine = Engine(gemma_gguf, threads=2)
    engine.sample(PROMPT, PARAMS)
    finalizer = engine._finalizer
    ref = weakref.ref(engine)
    del engine
    gc.collect()
    assert ref() is None  # nothing native keeps the engine alive…
    assert not finalizer.alive  # …and collecting it ran the exit stack
