"""The one builder of the generation message: example values, schema block, budget and pruning.

`ask`, `chat`, `eval`, `serve`, `bench`, `slmsql prompt` and `train`'s Spider/BIRD examples all
build the user message with `generation_message`, so a model is trained on exactly the text it
will read: a schema over the prompt budget is cut to the question's tables (`prune.py`) in
training as at inference. All the builder needs of a model is how it counts tokens
(`TokenCounter`): the engine's tokenizer at inference (`Pipeline.counter`), the training
tokenizer under the same chat template in `train` (`training.model.ChatFormat.counter`).
Without one (`slmsql prompt` without --model) nothing can be counted: the whole schema is shown,
and `may_exceed` tells whether it could be over the budget.

`Database` answers questions about the data (schema, samples, matched values); the text is
written here and in prompts.py. The question was checked where it came in (`check_question` at
each front end: ask, chat, prompt, serve, eval, training rows), not again here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from slmsql_cli.conversation import DEFAULT_RENDERING, Rendered, Turn, fit, render
from slmsql_cli.database import Database, Values
from slmsql_cli.engine_protocol import SamplingParams
from slmsql_cli.errors import UserError
from slmsql_cli.prompts import PROMPT_BUDGET, SYSTEM_PROMPT, generation_prompt, question_text
from slmsql_cli.prune import choose_tables, keep_tables
from slmsql_cli.schema import Schema, combine_values, serialize_schema, serialize_tables

# What a chat template adds around the system prompt and the message: 7-12 tokens in ChatML,
# Gemma's and Llama 3's templates; `may_exceed` allows this many.
TEMPLATE_TOKENS = 32
# When the schema must be pruned anyway, earlier turns may take at most this share of the room
# (the rest is the tables'): tables come first, and a follow-up still says what it follows.
CONTEXT_SHARE = 0.25

CountTokens = Callable[[str], int]


@dataclass(frozen=True)
class TokenCounter:
    """How a model counts. `message`: the tokens of a user message as the model reads it (the system
    prompt and the chat template around it); `text`: those of plain text (a table's block, the question)."""

    message: CountTokens
    text: CountTokens


@dataclass(frozen=True)
class Budget:
    """The most tokens a generation message may have (`room`), and the limits that set it, so that
    an error names the one that binds."""

    prompt_budget: int = PROMPT_BUDGET
    context: int | None = None  # the model's context window; None: none to share (training data)
    answer_tokens: int = 0  # kept in the context for the answer (--max-tokens)

    @property
    def room(self) -> int:
        if self.context is None:
            return self.prompt_budget
        return min(self.prompt_budget, self.context - self.answer_tokens)


@dataclass
class GenerationMessage:
    """The generation user message, the tables it shows when the whole schema did not fit, its
    tokens as the model reads it (None: built without a tokenizer, nothing counted), and the
    earlier turns it carries (`conversation.Rendered`)."""

    text: str
    pruned: Schema | None = None
    tokens: int | None = None
    context: Rendered | None = None


class OverBudget(UserError):
    """Not even the question with one table fits the budget (training skips such a row)."""


def matched_values(db: Database, question: str, evidence: str = "", *, use_values: bool = True) -> Values:
    """The database values the question mentions, shown first in every prompt built for it
    (none when `use_values` is off): look them up once per question."""
    return db.relevant_values(question, evidence) if use_values else {}


def schema_block(db: Database, matched: Values, schema: Schema | None = None) -> str:
    """The "Database Schema" block: `schema` (default the database's whole one) with the question's
    `matched` values first, then the sampled ones. With none matched ({}) it is what every prompt
    shows of the database (serve's describe_database); the merge prompt starts from it too."""
    return serialize_schema(schema or db.schema, _shown_values(db, matched))


def _shown_values(db: Database, matched: Values) -> Values:
    return combine_values(matched, db.samples)


def generation_message(
    db: Database,
    question: str,
    evidence: str = "",
    *,
    matched: Values | None = None,
    counter: TokenCounter | None = None,
    budget: Budget | None = None,
    turns: Sequence[Turn] = (),
    rendering: str = DEFAULT_RENDERING,
) -> GenerationMessage:
    """The generation user message: with the whole schema when it fits `budget.room` (the usual
    case), otherwise with the question's tables (`prune.choose_tables`), and that subset.

    `turns` are the conversation's earlier turns, oldest first, written into the question field
    in `rendering` (conversation.py); with none the message is the single question's, byte for
    byte. They are bounded by the budget, the oldest dropped first, and before any table: with
    the whole schema as many as fit beside it; when the schema must be pruned anyway, as many as
    fit in CONTEXT_SHARE of the room and leave room for the question's first table. `context` on
    the result says which were used.

    `matched` is `matched_values(...)` when the caller has it already (a question's prompts all
    show the same values; for a follow-up, looked up in `context_text`), {} for sampled values
    only, None to look them up now.
    """
    if matched is None:
        matched = matched_values(db, *context_text(question, evidence, turns, rendering))
    budget = budget or Budget()
    context = render(question, evidence, turns, rendering)
    if context.used and counter is not None:
        context = _fit_turns(db, question, evidence, turns, rendering, matched, counter, budget)
    while True:
        try:
            built = _fit_schema(db, context.question, context.evidence, matched, counter, budget)
        except OverBudget:
            if not context.used:
                raise
            # not even the first table fits beside these turns: one turn fewer, the oldest
            context = fit(question, evidence, turns, rendering, _at_most(len(context.used) - 1))
            continue
        built.context = context
        return built


def _at_most(n: int) -> Callable[[Rendered], bool]:
    """A `conversation.fit` test that keeps at most `n` turns."""
    return lambda rendered: len(rendered.used) <= n


def context_text(question: str, evidence: str, turns: Sequence[Turn], rendering: str) -> tuple[str, str]:
    """The question field's (question, evidence) with every earlier turn kept (at most
    conversation.MAX_TURNS) in `rendering`: what the question's values are looked up in, so that
    a follow-up's prompt shows the values its earlier questions named too."""
    rendered = render(question, evidence, turns, rendering)
    return rendered.question, rendered.evidence


def _fit_turns(
    db: Database,
    question: str,
    evidence: str,
    turns: Sequence[Turn],
    rendering: str,
    found: Values,
    counter: TokenCounter,
    budget: Budget,
) -> Rendered:
    """The latest turns that fit: beside the whole schema when the whole message fits the room
    (counted whole, as the model reads it); else, when the whole schema fits without them, none
    (tables before turns); else (pruning is needed anyway) those whose text takes at most
    CONTEXT_SHARE of the room."""
    block = schema_block(db, found)

    def whole_fits(r: Rendered) -> bool:
        return counter.message(generation_prompt(block, r.question, r.evidence)) <= budget.room

    context = fit(question, evidence, turns, rendering, whole_fits)
    if context.used or whole_fits(context):
        return context
    own = counter.text(question_text(question, evidence))
    share = int(budget.room * CONTEXT_SHARE)
    return fit(
        question,
        evidence,
        turns,
        rendering,
        lambda r: counter.text(question_text(r.question, r.evidence)) - own <= share,
    )


def _fit_schema(
    db: Database,
    question: str,
    evidence: str,
    found: Values,
    counter: TokenCounter | None,
    budget: Budget,
) -> GenerationMessage:
    """The message for one question field (`question`, `evidence`): with the whole schema when it
    fits `budget.room` (the usual case), otherwise with the question's tables
    (`prune.choose_tables`), and that subset. Each table's block is counted once, and only as many
    blocks as it takes to know that the schema does not fit; the whole message is counted only
    when it is within the budget, to check it (the sum of the blocks can be off by a token per
    junction). Without a `counter` the whole schema, uncounted."""

    def message(schema: Schema | None = None) -> str:
        return generation_prompt(schema_block(db, found, schema), question, evidence)

    if counter is None:
        return GenerationMessage(message())
    room = budget.room
    bare = _check_room(counter, budget, question, evidence, message(keep_tables(db.schema, [])))
    blocks = serialize_tables(db.schema, _shown_values(db, found))

    @functools.cache
    def cost(table: str) -> int:  # the blank line that joins it to the block before it included
        return counter.text("\n\n" + blocks[table]) if table in blocks else 0

    spent = bare
    for table in blocks:
        spent += cost(table)
        if spent > room + len(blocks):
            break
    else:
        whole = message()
        tokens = counter.message(whole)
        if tokens <= room:
            return GenerationMessage(whole, None, tokens)
    names = choose_tables(db.schema, question_text(question, evidence), found, cost, room - bare)
    while names:  # the tokens of joined blocks can differ from their sum by a token or two
        schema = keep_tables(db.schema, names)
        pruned = message(schema)
        tokens = counter.message(pruned)
        if tokens <= room:
            return GenerationMessage(pruned, schema, tokens)
        names.pop()
    # name only the limit that binds, so that the hint fits `prompt` too (no --max-tokens there)
    raise OverBudget(
        f"even the most relevant table of {db.name} does not fit the {room}-token prompt budget",
        "raise --prompt-budget"
        if room == budget.prompt_budget
        else "raise --context (or lower --max-tokens): the context must hold the prompt and the answer",
    )


def _check_room(counter: TokenCounter, budget: Budget, question: str, evidence: str, bare: str) -> int:
    """The tokens of `bare`, the message without any table; blame --max-tokens or the question when
    even that does not fit."""
    limit, reserved = budget.context, budget.answer_tokens
    if limit is not None and reserved >= limit:
        raise UserError(
            f"--max-tokens {reserved} leaves no room for the prompt in the model's {limit}-token context",
            f"use --max-tokens well below {limit} (the default is {SamplingParams.max_tokens})",
        )
    tokens = counter.message(bare)
    if tokens <= budget.room:
        return tokens
    words = counter.text(question_text(question, evidence))
    what = "question and evidence are" if evidence else "question is"
    if limit is None or budget.prompt_budget < limit - reserved:
        raise OverBudget(
            f"the {what} too long for the {budget.prompt_budget}-token prompt budget: {words} tokens, and "
            f"the instructions around them take {tokens - words} more",
            "shorten the question or raise --prompt-budget",
        )
    raise OverBudget(
        f"the {what} too long for the model's context: {words} tokens, and {reserved} more are "
        f"kept for the answer, of {limit}",
        "shorten the question, lower --max-tokens or raise --context",
    )


def may_exceed(message: str, budget: Budget) -> bool:
    """Whether `message` could be over the budget for some model, told without a tokenizer. A token
    holds at least one byte of text (byte-level BPE; SentencePiece's byte fallback), so a message
    whose bytes, with the system prompt's and a chat template's markers, stay within the room fits
    whatever the model; past that only the model's tokenizer can tell."""
    size = len(SYSTEM_PROMPT.encode("utf-8")) + len(message.encode("utf-8")) + TEMPLATE_TOKENS
    return size > budget.room
