"""What the pipeline needs of a model: the `Engine` protocol, and the types it speaks in.

`SamplingParams` (how to draw), `Completion` (one candidate's text) and `GenerationStats` (what a
draw cost) live here, beside the protocol, so that every engine and every caller takes them from
the contract rather than from one implementation. `engine.Engine` (llama.cpp in this process),
`remote_engine.RemoteEngine` (an OpenAI-compatible server) and `scripted.ScriptedEngine` (fixed
completions, for fast tests of the pipeline's logic) implement the protocol, and mypy checks that
they do (each module's `_IS_AN_ENGINE`: this module imports none of them). The pipeline is typed
against this protocol only, never against a concrete engine; `engines.load_engine` is where a
--model spec becomes one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# on_prompt(read, total, cached): the prompt is being read (evaluated into the KV cache); `read` of
# its `total` tokens are in, `cached` of them reused rather than computed (the engine's cache of the
# last prompt, or the prompt cache on disk). Called once the reused prefix is in place and after
# each chunk; an exception raised there stops the reading.
PromptProgress = Callable[[int, int, int], None]


class Gate(Protocol):
    """One candidate's reading by a constraint (`constraint.Gate`): whether its text may go on."""

    def copy(self) -> Gate:
        """The same reading, to try a token on without changing this one."""
        ...

    def feed(self, data: bytes) -> bool:
        """Read a token's bytes; False when the text with them is not admissible (the gate is
        then spent: feed a `copy`)."""
        ...

    def can_end(self) -> bool:
        """Whether the candidate may end here (an end-of-turn token)."""
        ...


class Constraint(Protocol):
    """What a candidate may write (`constraint.Names`: only names the database has)."""

    def start(self) -> Gate:
        """A gate for a new candidate."""
        ...


@dataclass
class SamplingParams:
    """How to draw candidates. Defaults follow CSC-SQL: T=0.8, up to 1024 new tokens, stop at `</answer>`.

    `constraint`: an engine that draws its own tokens (`engine.Engine`) draws only tokens its gates
    admit; an engine that cannot (a model server) refuses one."""

    n: int = 4
    temperature: float = 0.8
    max_tokens: int = 1024
    seed: int = 42
    stop: tuple[str, ...] = ("</answer>",)
    top_p: float = 1.0
    ignore_eos: bool = False  # benchmarks only: generate exactly max_tokens
    constraint: Constraint | None = None


CONSTRAINED = "constrained"  # a Completion's finish_reason: see below


@dataclass
class Completion:
    text: str
    tokens: int
    # "stop" (a stop string), "eog" (end of turn), "length", or "constrained": the constraint left
    # no token it admits among the likely ones, so the candidate ended there
    finish_reason: str


@dataclass
class GenerationStats:
    """What one `sample` call cost; llama.cpp's own counters next to the wall clock."""

    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0  # after reusing the cached prefix
    prompt_tokens_from_disk: int = 0  # of the reused prefix, loaded from the on-disk prompt cache
    generated_tokens: int = 0
    prompt_seconds: float = 0.0  # evaluating the (uncached part of the) prompt
    decode_seconds: float = 0.0  # llama.cpp's compute for the generated tokens
    wall_seconds: float = 0.0
    rounds: int = 0  # > 1 when N did not fit in one batch

    @property
    def overhead_seconds(self) -> float:
        """Everything that is not llama.cpp compute: sampling, detokenizing, Python."""
        return max(self.wall_seconds - self.prompt_seconds - self.decode_seconds, 0.0)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_evaluated": self.prompt_tokens_evaluated,
            "prompt_tokens_from_disk": self.prompt_tokens_from_disk,
            "generated_tokens": self.generated_tokens,
            "prompt_seconds": round(self.prompt_seconds, 4),
            "decode_seconds": round(self.decode_seconds, 4),
            "wall_seconds": round(self.wall_seconds, 4),
            "overhead_seconds": round(self.overhead_seconds, 4),
            "rounds": self.rounds,
        }


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
        on_prompt: PromptProgress | None = None,
    ) -> tuple[list[Completion], GenerationStats]:
        """`params.n` completions of `prompt` (text, or its tokens when the caller has them);
        `on_token(i)` after each token of completion i (an exception there stops decoding);
        `on_prompt` while the prompt is read (see PromptProgress), by an engine that can tell."""
        ...

    def close(self) -> None:
        """Free what it holds; closing twice is harmless."""
        ...
