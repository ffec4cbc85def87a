"""Where a --model spec becomes an engine: a small registry of engine kinds.

Two kinds are built in: "local" (llama.cpp in this process, `engine.Engine`) and "remote" (an
OpenAI-compatible server generates, `remote_engine.RemoteEngine`; the local GGUF is read
vocab-only). `config.endpoint` chooses between them. Any other kind is put in with `register`
and chosen by the spec itself, `KIND` or `KIND:NAME`: that is how the tests' scripted engine
(`scripted.ScriptedEngine`) stands in for a model (the `scripted_engine` fixture in
tests/conftest.py registers "scripted", so `--model scripted` loads it). No such kind is
registered outside the tests, so a user's spec always means a model.

The pipeline and `slmsql prompt` load through `load_engine`, never through a constructor, so
an engine kind is swapped here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from slmsql_cli.engine_protocol import Engine

if TYPE_CHECKING:
    from slmsql_cli.config import AskConfig
    from slmsql_cli.models import Exporter

# (the --model spec, the settings, how to turn a checkpoint into a GGUF) -> a loaded engine
Factory = Callable[[str, "AskConfig", "Exporter | None"], Engine]

LOCAL = "local"
REMOTE = "remote"


def _local(spec: str, config: AskConfig, export: Exporter | None) -> Engine:
    """llama.cpp in this process, with the config's threads, context, GPU layers and prompt cache."""
    from slmsql_cli import models
    from slmsql_cli.engine import Engine as LlamaEngine

    engine = LlamaEngine(
        models.resolve(spec, export=export),
        threads=config.threads,
        n_ctx=config.context,
        gpu_layers=config.gpu_layers,
    )
    engine.prompt_cache = config.prompt_cache
    return engine


def _remote(spec: str, config: AskConfig, export: Exporter | None) -> Engine:
    """The config's server generates; the local GGUF gives the template and the tokenizer only."""
    from slmsql_cli import models
    from slmsql_cli.remote_engine import RemoteEngine

    if config.endpoint is None:
        raise ValueError("a remote engine needs config.endpoint")
    return RemoteEngine(models.resolve(spec, export=export), config.endpoint, name=spec, n_ctx=config.context)


_FACTORIES: dict[str, Factory] = {LOCAL: _local, REMOTE: _remote}


def register(kind: str, factory: Factory) -> Factory | None:
    """Make `factory` load the engines of `kind`; returns the factory it replaces, if any."""
    previous = _FACTORIES.get(kind)
    _FACTORIES[kind] = factory
    return previous


@contextmanager
def registered(kind: str, factory: Factory) -> Iterator[None]:
    """`register` for the length of a `with` block, then put back what was there (tests)."""
    previous = register(kind, factory)
    try:
        yield
    finally:
        if previous is None:
            del _FACTORIES[kind]
        else:
            _FACTORIES[kind] = previous


def kind_of(spec: str, config: AskConfig) -> str:
    """The kind that loads `spec`: a registered kind the spec names (`KIND` or `KIND:NAME`, not
    one of the built-in two), else remote where the config has an endpoint, else local."""
    named = spec.partition(":")[0]
    if named in _FACTORIES and named not in (LOCAL, REMOTE):
        return named
    return REMOTE if config.endpoint is not None else LOCAL


def load_engine(spec: str, config: AskConfig, export: Exporter | None = None) -> Engine:
    """Resolve a --model spec and load it: the one place a model becomes an engine. `export` turns
    a checkpoint into a GGUF (`models.resolve`)."""
    return _FACTORIES[kind_of(spec, config)](spec, config, export)
