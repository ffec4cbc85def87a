"""What the pipeline needs of a model: the `Engine` protocol.

`engine.Engine` (llama.cpp in this process) and `scripted.ScriptedEngine` (fixed completions, for
fast tests of the pipeline's logic) implement it, and mypy checks that they do (the
`_IMPLEMENTATIONS` below); a remote engine implements the same methods. The pipeline is typed
against this protocol only, never against a concrete engine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from slmsql_cli.engine import Completion, GenerationStats, SamplingParams


class Engine(Protocol):
    path: Path  # the model file (its name is shown to the user, and keys caches)
    architecture: str  # GGUF general.architecture: picks a fallback chat template
    n_ctx_limit: int  # the longest context (prompt + answer) it takes, in tokens
    threads: int  # CPU threads it computes with (`-v` says how many and why; 1 when not local)

    def tokenize(self, text: str) -> list[int]:
        """The tokens of `text`, special tokens parsed, no BOS added (the chat template writes it)."""
        ...

    def chat_template(self) -> str | None:
        """The model's own Jinja chat template, if it has one."""
        ...

    def special_token_text(self, which: str) -> str:
        """The text of the "bos" or "eos" token ("" when the model has none)."""
        ...

    def sample(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        on_token: Callable[[int], None] | None = None,
    ) -> tuple[list[Completion], GenerationStats]:
        """`params.n` completions of `prompt` (text, or its tokens when the caller has them);
        `on_token(i)` after each token of completion i (an exception there stops decoding)."""
        ...

    def close(self) -> None:
        """Free what it holds; closing twice is harmless."""
        ...


if TYPE_CHECKING:  # mypy: each implementation has every member above, with compatible types
    from slmsql_cli import engine, scripted

    _IMPLEMENTATIONS: tuple[type[Engine], ...] = (engine.Engine, scripted.ScriptedEngine)
