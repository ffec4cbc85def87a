"""A scripted engine: fixed completions instead of a model, for fast tests of the pipeline's logic.

It implements the `engine_protocol.Engine` protocol (mypy checks it), so `ask`, `chat`, `eval` and
`serve` run every step but sampling for real with it: prompts are built, candidates executed on
the database, voted and merged. Tests put it in through the engine registry: the
`scripted_engine` fixture in tests/conftest.py registers the "scripted" kind
(`engines.register`), so `--model scripted` loads it; it never stands in for the model in a
test about the model itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from slmsql_cli import engine_protocol
from slmsql_cli.engine_protocol import Completion, GenerationStats, PromptProgress, SamplingParams


class ScriptedEngine:
    """Stands where `slmsql_cli.engine.Engine` stands and answers from a script (as simonw/llm's
    scripted model does): each `sample` call returns the next `params.n` texts of the script, and
    records the chat text it was given. No chat template of its own, so the pipeline renders
    prompts with its fallback template for `architecture`. One token per byte: a text longer than
    `max_tokens` is cut there ("length"), as --max-tokens cuts a model's. Under a constraint
    (--constrain) a text ends at the first byte the constraint refuses ("constrained"), as the
    engine ends a candidate that has no admissible token left."""

    def __init__(self, texts: list[str], name: str = "scripted", architecture: str = "qwen2") -> None:
        self.script = list(texts)
        self.path = Path(f"{name}.gguf")
        self.architecture = architecture
        self.threads = 1
        self.n_ctx_limit = 32768
        self.prompts: list[str] = []
        self.closed = False

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def chat_template(self) -> str | None:
        return None

    def special_token_text(self, which: str) -> str:
        return ""

    def sample(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        on_token: Callable[[int], None] | None = None,
        on_prompt: PromptProgress | None = None,  # not called: it reads no prompt
    ) -> tuple[list[Completion], GenerationStats]:
        if len(self.script) < params.n:
            raise AssertionError(
                f"{self.path.name}: asked for {params.n} completions, {len(self.script)} left in the script"
            )
        texts, self.script = self.script[: params.n], self.script[params.n :]
        self.prompts.append(prompt if isinstance(prompt, str) else bytes(prompt).decode("utf-8"))
        completions = []
        for i, text in enumerate(texts):
            if on_token:
                on_token(i)
            if params.constraint is not None:
                admitted = _admitted(text, params.constraint)
                # a scripted model has no other token to offer (unless --max-tokens cuts it first)
                if admitted is not None and len(admitted.encode("utf-8")) < params.max_tokens:
                    completions.append(Completion(admitted, len(admitted.encode("utf-8")), "constrained"))
                    continue
            data = text.encode("utf-8")
            if len(data) > params.max_tokens:
                cut = data[: params.max_tokens].decode("utf-8", "ignore")
                completions.append(Completion(cut, params.max_tokens, "length"))
                continue
            stopped = any(text.endswith(s) for s in params.stop)
            completions.append(Completion(text, len(data), "stop" if stopped else "eog"))
        n_prompt = len(self.tokenize(self.prompts[-1]))
        stats = GenerationStats(
            prompt_tokens=n_prompt,
            prompt_tokens_evaluated=n_prompt,
            generated_tokens=sum(c.tokens for c in completions),
            rounds=1,
        )
        return completions, stats

    def close_context(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _admitted(text: str, constraint: engine_protocol.Constraint) -> str | None:
    """The part of `text` a constraint admits, one byte (token) at a time, where it refuses a byte
    or the end; None when it admits the whole text and its end."""
    gate, data = constraint.start(), text.encode("utf-8")
    for i in range(len(data)):
        if not gate.feed(data[i : i + 1]):
            return data[:i].decode("utf-8", "ignore")
    return None if gate.can_end() else text


if TYPE_CHECKING:  # mypy: every member of the `engine_protocol.Engine` protocol, with compatible types
    _IS_AN_ENGINE: type[engine_protocol.Engine] = ScriptedEngine
