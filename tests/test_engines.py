"""The engine seam: which kind of engine a --model spec becomes (engines.py), and the one
vocabulary reader both the local and the remote engine use (`_internals.Model`, vocab-only here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmsql_cli import _internals, engines
from slmsql_cli.errors import UserError
from slmsql_cli.pipeline import AskConfig, Pipeline
from slmsql_cli.remote_engine import Endpoint
from slmsql_cli.scripted import ScriptedEngine

LOCAL = AskConfig()
REMOTE = AskConfig(endpoint=Endpoint.parse("http://127.0.0.1:9/v1"))


def test_the_config_chooses_local_or_remote_and_a_spec_cannot_name_them() -> None:
    assert engines.kind_of("model.gguf", LOCAL) == "local"
    assert engines.kind_of("model.gguf", REMOTE) == "remote"
    # a spec is a model unless it names a registered kind other than the two built in
    assert engines.kind_of("remote:model.gguf", LOCAL) == "local"
    assert engines.kind_of("local:q8_0", REMOTE) == "remote"
    assert engines.kind_of("scripted", LOCAL) == "local"  # no scripted kind outside a test's registration


def test_a_registered_kind_is_chosen_by_its_name_and_put_back_after() -> None:
    made: list[tuple[str, AskConfig]] = []

    def factory(spec: str, config: AskConfig, export: object) -> ScriptedEngine:
        made.append((spec, config))
        return ScriptedEngine([], name=spec)

    with engines.registered("canned", factory):
        assert engines.kind_of("canned", LOCAL) == "canned"
        assert engines.kind_of("canned:merger", REMOTE) == "canned"  # the spec wins over the endpoint
        assert engines.kind_of("canned-model.gguf", LOCAL) == "local"
        with Pipeline.load("canned", "canned:merger", AskConfig(n=1)) as pipeline:
            assert (pipeline.engine.path.name, pipeline.merge_engine.path.name) == (
                "canned.gguf",
                "canned:merger.gguf",
            )
    assert [spec for spec, _ in made] == ["canned", "canned:merger"]
    assert engines.kind_of("canned", LOCAL) == "local"


def test_a_built_in_kind_can_be_swapped_for_a_block_and_comes_back(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.gguf")
    stand_in = ScriptedEngine([])
    with engines.registered(engines.LOCAL, lambda spec, config, export: stand_in):
        assert engines.load_engine(missing, LOCAL) is stand_in
    with pytest.raises(UserError, match="model file not found"):  # the real local kind again
        engines.load_engine(missing, LOCAL)


def test_the_vocab_only_reader_reads_what_llama_cpp_python_reads(gemma_vocab: Path) -> None:
    """`_internals.Model(vocab_only=True)` replaced `llama_cpp.Llama(vocab_only=True)` in the remote
    engine: the same metadata, tokens and special tokens from the same file."""
    import llama_cpp

    from slmsql_cli import llama_logs

    llama_logs.silence()
    text = "<start_of_turn>user\nHow many singers are there?<end_of_turn>\n<start_of_turn>model\n"
    llm = llama_cpp.Llama(model_path=str(gemma_vocab), vocab_only=True, n_ctx=64, verbose=False)
    model = _internals.Model(gemma_vocab, vocab_only=True)
    try:
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        special = {
            which: (llama_cpp.llama_vocab_get_text(vocab, token) or b"").decode("utf-8")
            for which, token in (
                ("bos", llama_cpp.llama_vocab_bos(vocab)),
                ("eos", llama_cpp.llama_vocab_eos(vocab)),
            )
        }
        assert model.metadata() == dict(llm.metadata)
        assert model.metadata()["general.architecture"] == "gemma3"
        tokens = model.tokenize(text.encode(), add_special=False, parse_special=True)
        assert tokens == llm.tokenize(text.encode(), add_bos=False, special=True)
        assert len(tokens) < len(text) // 2  # the turn markers are single special tokens
        assert (
            {w: model.special_token_text(w) for w in ("bos", "eos")}
            == special
            == {"bos": "<bos>", "eos": "<eos>"}
        )
        assert model.adds_bos() is bool(llama_cpp.llama_vocab_get_add_bos(vocab)) is True  # Gemma adds BOS
    finally:
        model.close()
        llm.close()
    model.close()  # closing twice is harmless
