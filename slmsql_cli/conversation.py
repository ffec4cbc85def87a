"""Follow-up questions inside the trained prompt (issue 29).

The models read one question: OmniSQL's question field, which already carries BIRD-style
evidence on the line before the question (`prompts.question_text`). A follow-up ("only the rock
ones") means nothing alone, so the earlier turns of the conversation are written into that same
field, in one of these renderings, and the prompt keeps its trained form:

- `none`: the question alone (a single question: today's prompt, byte for byte);
- `questions`: the earlier questions and the new one joined, oldest first, as the classic SParC
  baseline does (Suhr et al. 2019 concatenate the interaction's utterances);
- `evidence`: the earlier questions and the SQL that answered them, in the evidence slot before the
  question (and before any evidence of the question's own).

Which rendering is the default is a measurement (SParC/CoSQL turns, docs/ACCURACY.md), not a
taste: `questions` (`DEFAULT_RENDERING`, the one place that chooses: `ask --after`, `chat`,
`serve` and the web page all use it). SmolLM2-135M trained in it answered 21 of 158 held-out
SParC follow-ups with the earlier questions against 6 without (p=0.0007), and 11 of 149 CoSQL
ones either way; `evidence` is not trained and measured yet. The turns kept are bounded: at most
MAX_TURNS, and `fit` drops the oldest first until the text fits a token room, and says how many
it dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

RENDERINGS = ("none", "questions", "evidence")
# Chosen before it was measured (see above): the SParC baseline's rendering. Either rendering
# writes the earlier turns after the schema block, so a follow-up's prompt starts as the last
# one's did and llama.cpp's prompt cache reads only what changed (docs/PERFORMANCE.md).
DEFAULT_RENDERING = "questions"
MAX_TURNS = 8  # earlier turns kept at most, before any token budget: SParC's interactions average 3


@dataclass(frozen=True)
class Turn:
    """One earlier turn: what was asked and the SQL that answered it (None: no SQL ran)."""

    question: str
    sql: str | None = None


@dataclass(frozen=True)
class Rendered:
    """The question and evidence a prompt is built from, and which turns went into them."""

    question: str
    evidence: str
    rendering: str
    used: tuple[Turn, ...] = ()
    dropped: int = 0  # earlier turns left out, oldest first, to fit the budget or MAX_TURNS


def render(question: str, evidence: str, turns: Sequence[Turn], rendering: str) -> Rendered:
    """The question field's parts for `question` after `turns` (oldest first), in `rendering`.
    With no turns, or rendering `none`, the question and evidence are returned unchanged."""
    if rendering not in RENDERINGS:
        raise ValueError(f"unknown rendering {rendering!r}; one of {', '.join(RENDERINGS)}")
    kept = tuple(turns)[-MAX_TURNS:]
    dropped = len(turns) - len(kept)
    if rendering == "none" or not kept:
        return Rendered(question, evidence, rendering, (), len(turns) if rendering == "none" else 0)
    if rendering == "questions":
        joined = " ".join([*(t.question.strip() for t in kept), question.strip()])
        return Rendered(joined, evidence, rendering, kept, dropped)
    lines = []
    for turn in kept:
        lines.append(f"Previous question: {turn.question.strip()}")
        if turn.sql:
            lines.append(f"Its SQL: {' '.join(turn.sql.split())}")
    context = "\n".join(lines)
    return Rendered(
        question, context + ("\n" + evidence if evidence.strip() else ""), rendering, kept, dropped
    )


def fit(
    question: str,
    evidence: str,
    turns: Sequence[Turn],
    rendering: str,
    fits: Callable[[Rendered], bool],
) -> Rendered:
    """`render` with as many of the latest turns as `fits` accepts, dropping the oldest first;
    with none left, the question alone (which the caller's own budget check then judges)."""
    turns = tuple(turns)
    for start in range(len(turns) + 1):
        rendered = render(question, evidence, turns[start:], rendering)
        rendered = Rendered(
            rendered.question, rendered.evidence, rendering, rendered.used, rendered.dropped + start
        )
        if not rendered.used or fits(rendered):
            return rendered
    raise AssertionError("unreachable: the last try has no turns")
