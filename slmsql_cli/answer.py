"""What `ask` produces: an `Answer` and its sampling rounds, plain dataclasses.

The pipeline makes them; the confidence flags, rendering (`ask --json`, the table), saved
answers and `serve` read them. They live apart from the pipeline so that a reader of an answer
does not import the machinery that makes one (the engine, the prompt builder, pruning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slmsql_cli.conversation import Rendered, Turn
from slmsql_cli.engine_protocol import GenerationStats
from slmsql_cli.schema import Schema
from slmsql_cli.targets.result import ExecResult
from slmsql_cli.vote import Candidate, Group


@dataclass
class SamplingRound:
    """One sampling step - the generation, or the merge's revisions: what was drawn, run and voted."""

    candidates: list[Candidate]
    groups: list[Group]  # vote(candidates): largest first
    stats: GenerationStats
    pruned_schema: Schema | None = None  # the subset of tables the prompt showed, when all did not fit
    build_seconds: float = 0.0  # building the prompt: serializing, counting tokens, pruning
    context: Rendered | None = None  # the earlier turns the prompt carried (None: no prompt, a saved answer)
    constrained: bool = False  # drawn under --constrain: only names the database has (constraint.py)

    @property
    def winner(self) -> Group | None:
        return self.groups[0] if self.groups else None


@dataclass
class Answer:
    question: str
    sql: str | None
    result: ExecResult | None
    generation: SamplingRound
    revision: SamplingRound | None = None  # the merge step, when the vote was split
    merged: bool = False  # the answer is the revision's winner
    timings: dict[str, float] = field(default_factory=dict)
    schema_tables: tuple[int, int] | None = None  # (kept, total) when the schema was pruned to fit
    unmatched_values: list[str] = field(default_factory=list)  # question values the database lacks
    saved_id: int | None = None  # answered from the saved answers (saved.py), not by the model
    notes: list[str] = field(default_factory=list)  # said before answering: a similar saved question

    @property
    def context(self) -> Rendered | None:
        """Which earlier turns the generation prompt carried, in which rendering, and how many
        were left out (None when no model was asked: a saved answer)."""
        return self.generation.context

    @property
    def follows(self) -> bool:
        """Whether the answer is a follow-up: its prompt carried earlier turns."""
        return self.context is not None and bool(self.context.used)

    @property
    def turn(self) -> Turn:
        """This answer as an earlier turn of the next question: the question and the SQL that
        answered it (None when none ran: a failing SQL is no answer to follow)."""
        return Turn(self.question, self.sql if self.failure is None else None)

    @property
    def final_round(self) -> SamplingRound:
        """The round that produced the answer."""
        return self.revision if self.merged and self.revision is not None else self.generation

    @property
    def failure(self) -> str | None:
        """Why there is no usable result, in words; None when the answer's SQL ran."""
        if self.result is not None and self.result.ok:
            return None
        n = len(self.generation.candidates)
        if self.sql is None:
            return f"the model wrote no SQL in any of its {n} candidate(s)"
        why = "it timed out" if self.result is None or self.result.timed_out else self.result.error
        return f"none of the {n} candidate(s) wrote SQL that ran; the first one failed: {why}"

    @property
    def agreement(self) -> tuple[int, int]:
        """(votes of the winning group, candidates sampled) for the round that produced the answer."""
        final = self.final_round
        return (final.groups[0].votes if final.groups else 0, len(final.candidates))
