"""`ask` end to end: prompt → N candidates → execute → vote → corrective merge → answer.

The same `Pipeline` object serves `ask` (one question), `chat` (many questions, model and KV
cache kept warm) and `eval` (a benchmark), so all three run exactly the same steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from slmsql_cli import engines, prompt_builder
from slmsql_cli.answer import Answer, SamplingRound
from slmsql_cli.config import AskConfig
from slmsql_cli.constraint import Names
from slmsql_cli.conversation import DEFAULT_RENDERING, Turn
from slmsql_cli.database import Database, Values
from slmsql_cli.engine_protocol import (
    CONSTRAINED,
    Completion,
    Engine,
    GenerationStats,
    PromptProgress,
    SamplingParams,
)
from slmsql_cli.errors import UserError
from slmsql_cli.extract import extract_sql
from slmsql_cli.merge import merge_message, needs_merge
from slmsql_cli.prompt_builder import Budget, GenerationMessage, TokenCounter
from slmsql_cli.prompts import SYSTEM_PROMPT, fallback_template, render_chat
from slmsql_cli.targets.result import ExecResult
from slmsql_cli.unmatched import unmatched_values
from slmsql_cli.vote import Candidate, Group, vote

# Why a candidate --constrain ended gets no vote (its SQL is not run).
UNFINISHED = "unfinished: --constrain ended it where no likely token names only what the database has"
# Why a candidate --max-tokens cut before its SQL was whole gets none under --constrain.
CUT = "unfinished: --max-tokens cut it before its SQL named only what the database has"
# Why SQL found outside the answer block (the text --constrain reads) gets none when the
# constraint does not admit it.
OUTSIDE = "refused: SQL written outside the answer block, which --constrain did not guide and does not admit"

if TYPE_CHECKING:
    from slmsql_cli.models import Exporter

Progress = Callable[[str], None]
RoundDone = Callable[[str, SamplingRound], None]  # ("generation" | "merge", the round), as each ends


def chat_text(engine: Engine, user_message: str) -> str:
    """The exact text the model reads: system prompt + user message in the model's own chat template."""
    template = engine.chat_template() or fallback_template(engine.architecture)
    if template is None:
        raise UserError(
            f"{engine.path.name} has no chat template and slmsql has none for architecture '{engine.architecture}'",
            "export the model with its tokenizer_config.json chat template (slmsql export)",
        )
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user_message}]
    return render_chat(
        template,
        messages,
        bos_token=engine.special_token_text("bos"),
        eos_token=engine.special_token_text("eos"),
        add_generation_prompt=True,
    )


class Pipeline:
    """A loaded generator (and optional merge model) plus the settings to answer questions with them."""

    def __init__(self, engine: Engine, merge_engine: Engine | None, config: AskConfig) -> None:
        self.engine = engine
        self.merge_engine = merge_engine
        self.config = config
        self._counted: tuple[str, list[int]] | None = None  # the last prompt counted, and its tokens
        self._names: tuple[Database, Names] | None = None  # the last database's names (--constrain)

    @classmethod
    def load(
        cls,
        model: str | None = None,
        merge_model: str | None = None,
        config: AskConfig | None = None,
        progress: Progress | None = None,
        export: Exporter | None = None,
    ) -> Pipeline:
        """Resolve and load the models (`models.choose`: --model, SLMSQL_MODEL, `slmsql models
        default`, built in). With the built-in generator the built-in merge model is used; with a
        model of your own and no --merge-model, the generator revises its own drafts. Models not
        downloaded while offline fail before anything loads, all in one error. `export` turns a
        checkpoint into a GGUF (`models.resolve`)."""
        from slmsql_cli import models

        config = config or AskConfig()
        say = progress or (lambda _msg: None)
        choice = models.choose(model, merge_model)
        models.check_downloaded(choice, merge=config.merge)
        spec = choice.model
        say(f"loading model {spec}")
        engine = engines.load_engine(spec, config, export)
        merge_engine: Engine | None = None
        if config.merge:
            merge_spec = choice.merge
            same_server = config.merge_endpoint == config.endpoint
            if same_server and (merge_spec is None or _same_model(merge_spec, spec)):
                merge_engine = engine
            else:
                say(f"loading merge model {merge_spec or spec}")
                merge_config = replace(config, endpoint=config.merge_endpoint)
                merge_engine = engines.load_engine(merge_spec or spec, merge_config, export)
                if config.endpoint is not None or config.merge_endpoint is not None:
                    from slmsql_cli.remote_engine import check_distinct

                    check_distinct(engine, merge_engine, spec, merge_spec or spec)
        return cls(engine, merge_engine, config)

    def _sample(
        self,
        engine: Engine,
        user_message: str,
        n: int,
        seed: int,
        on_token: Callable[[int], None] | None,
        on_prompt: PromptProgress | None = None,
        constraint: Names | None = None,
    ) -> tuple[list[Completion], GenerationStats]:
        params = SamplingParams(
            n=n,
            temperature=self.config.temperature,
            max_tokens=self.config.max_tokens,
            seed=seed,
            constraint=constraint,
        )
        text = chat_text(engine, user_message)
        counted = self._counted  # the prompt as generation_message counted it: not tokenized again
        prompt = counted[1] if engine is self.engine and counted is not None and counted[0] == text else text
        return engine.sample(prompt, params, on_token=on_token, on_prompt=on_prompt)

    def _round(
        self,
        db: Database,
        engine: Engine,
        user_message: str,
        n: int,
        seed: int,
        on_token: Callable[[int], None] | None,
        progress: Progress | None = None,
        on_prompt: PromptProgress | None = None,
    ) -> SamplingRound:
        constraint = self.names(db) if self.config.constrain else None
        completions, stats = self._sample(engine, user_message, n, seed, on_token, on_prompt, constraint)
        sqls = [extract_sql(c.text) for c in completions]
        reasons = [_not_run(c, sql, constraint) for c, sql in zip(completions, sqls)]
        runnable = [None if why else sql for why, sql in zip(reasons, sqls)]
        if progress is not None:
            progress(f"executing {sum(sql is not None for sql in runnable)} of {n} candidate(s)")
        results = db.run_many(runnable, timeout=self.config.timeout)  # identical SQL runs once
        candidates = [
            Candidate(
                text=c.text,
                sql=sql,
                result=ExecResult(error=why) if why else r,
                finish_reason=c.finish_reason,
            )
            for c, sql, r, why in zip(completions, sqls, results, reasons)
        ]
        return SamplingRound(candidates, vote(candidates), stats, constrained=constraint is not None)

    def names(self, db: Database) -> Names:
        """What `db` has, for --constrain (`constraint.Names`): read once per database."""
        if self._names is None or self._names[0] is not db:
            self._names = (db, Names.from_schema(db.schema, db.target.dialect))
        return self._names[1]

    def _tokens(self, message: str) -> int:
        text = chat_text(self.engine, message)
        self._counted = (text, self.engine.tokenize(text))
        return len(self._counted[1])

    @property
    def counter(self) -> TokenCounter:
        """How the generator counts tokens, for `prompt_builder` (the last message counted is kept,
        so that sampling it does not tokenize it again)."""
        return TokenCounter(message=self._tokens, text=lambda text: len(self.engine.tokenize(text)))

    @property
    def budget(self) -> Budget:
        """The prompt budget, or less when the context must also hold --max-tokens new tokens."""
        cfg = self.config
        return Budget(cfg.prompt_budget, self.engine.n_ctx_limit, cfg.max_tokens)

    def matched_values(
        self,
        db: Database,
        question: str,
        evidence: str = "",
        turns: Sequence[Turn] = (),
        rendering: str = DEFAULT_RENDERING,
    ) -> Values:
        """The database values the question mentions (a follow-up's earlier questions too), shown
        in every prompt built for it (none with use_values off): looked up once per question."""
        text = prompt_builder.context_text(question, evidence, turns, rendering)
        return prompt_builder.matched_values(db, *text, use_values=self.config.use_values)

    def generation_message(
        self,
        db: Database,
        question: str,
        evidence: str = "",
        *,
        matched_values: Values | None = None,
        turns: Sequence[Turn] = (),
        rendering: str = DEFAULT_RENDERING,
    ) -> GenerationMessage:
        """`prompt_builder.generation_message` counted with this generator, within `budget`."""
        if matched_values is None:
            matched_values = self.matched_values(db, question, evidence, turns, rendering)
        return prompt_builder.generation_message(
            db,
            question,
            evidence,
            matched=matched_values,
            counter=self.counter,
            budget=self.budget,
            turns=turns,
            rendering=rendering,
        )

    def generate(
        self,
        db: Database,
        question: str,
        evidence: str = "",
        on_token: Callable[[int], None] | None = None,
        *,
        matched_values: Values | None = None,
        progress: Progress | None = None,
        on_prompt: PromptProgress | None = None,
        turns: Sequence[Turn] = (),
        rendering: str = DEFAULT_RENDERING,
    ) -> SamplingRound:
        """Step 1: sample N candidates for the generation prompt (a follow-up of `turns`, oldest
        first, when there are any), execute them and vote."""
        cfg = self.config
        t = time.perf_counter()
        message = self.generation_message(
            db, question, evidence, matched_values=matched_values, turns=turns, rendering=rendering
        )
        built = time.perf_counter() - t
        db.target.prepare()  # a SQLite query worker starts while the model samples
        generated = self._round(db, self.engine, message.text, cfg.n, cfg.seed, on_token, progress, on_prompt)
        generated.pruned_schema, generated.build_seconds = message.pruned, built
        generated.context = message.context
        return generated

    def revise(
        self,
        db: Database,
        question: str,
        evidence: str,
        groups: list[Group],
        on_token: Callable[[int], None] | None = None,
        *,
        matched_values: Values | None = None,
        progress: Progress | None = None,
        on_prompt: PromptProgress | None = None,
    ) -> SamplingRound:
        """Step 2 (CSC-SQL): the merge model sees the top two drafts and their results, revises, votes again."""
        if self.merge_engine is None or len(groups) < 2:
            raise ValueError("revise needs a merge model and two result groups")
        cfg = self.config
        if matched_values is None:
            matched_values = self.matched_values(db, question, evidence)
        message = merge_message(
            prompt_builder.schema_block(db, matched_values), db.schema, question, evidence, groups
        )
        return self._round(
            db, self.merge_engine, message, cfg.merge_n, cfg.seed + 1000, on_token, progress, on_prompt
        )

    def ask(
        self,
        db: Database,
        question: str,
        evidence: str = "",
        progress: Progress | None = None,
        on_token: Callable[[int], None] | None = None,
        on_round: RoundDone | None = None,
        on_prompt: PromptProgress | None = None,
        *,
        turns: Sequence[Turn] = (),
        rendering: str = DEFAULT_RENDERING,
    ) -> Answer:
        """`on_token(candidate)` runs after every sampled token (an exception raised there stops
        decoding: `serve` cancels a request that way); `on_round` gets each round once it is voted;
        `on_prompt(read, total, cached)` while a model reads a round's prompt (the local engine
        reports it between 512-token chunks; a model server does not).
        `turns` make the question a follow-up: the conversation's earlier turns, oldest first,
        carried in the prompt in `rendering` as the budget allows (`Answer.context` says which).
        The question was checked where it came in (`database.check_question`: each front end does)."""
        say = progress or (lambda _msg: None)
        round_done = on_round or (lambda _step, _round: None)
        cfg = self.config
        t_start = time.perf_counter()
        matched = self.matched_values(db, question, evidence, turns, rendering)
        say(f"sampling {cfg.n} candidate(s)")
        generated = self.generate(
            db,
            question,
            evidence,
            on_token,
            matched_values=matched,
            progress=say,
            on_prompt=on_prompt,
            turns=turns,
            rendering=rendering,
        )
        round_done("generation", generated)
        wall, built = generated.stats.wall_seconds, generated.build_seconds
        timings = {"prompt": built, "generate": wall, "execute": time.perf_counter() - t_start - wall - built}
        answer = Answer(question=question, sql=None, result=None, generation=generated)
        schema = generated.pruned_schema
        if schema is not None:
            answer.schema_tables = (len(schema.tables), len(db.schema.tables))
            say(
                f"schema pruned to {len(schema.tables)} of {len(db.schema.tables)} tables to fit the prompt budget"
            )
        context = generated.context
        if context is not None and context.dropped and context.rendering != "none":
            say(f"the oldest {context.dropped} earlier question(s) left out to fit the prompt budget")
        if generated.winner is not None:
            answer.sql, answer.result = generated.winner.sql, generated.winner.result

        if self.merge_engine is not None and needs_merge(generated.groups):
            say(f"merging the top two drafts ({cfg.merge_n} revision(s))")
            t = time.perf_counter()
            # the merge model reads the question field the drafts were written for
            asked = (context.question, context.evidence) if context is not None else (question, evidence)
            answer.revision = self.revise(
                db,
                *asked,
                generated.groups,
                on_token,
                matched_values=matched,
                progress=say,
                on_prompt=on_prompt,
            )
            round_done("merge", answer.revision)
            winner = answer.revision.winner
            if winner is not None:  # a merge that produced nothing executable keeps the vote's winner
                answer.merged = True
                answer.sql, answer.result = winner.sql, winner.result
            timings["merge"] = time.perf_counter() - t

        if answer.sql is None:  # nothing executed: show the first SQL the model wrote, with its error
            first = next((c for c in generated.candidates if c.sql), None)
            if first is not None:
                answer.sql, answer.result = first.sql, first.result
        if cfg.use_values:
            answer.unmatched_values = unmatched_values(db, question, matched)
        timings["total"] = time.perf_counter() - t_start
        answer.timings = timings
        return answer

    def close(self) -> None:
        """Free the models (see `Engine.close`); closing twice is harmless."""
        if self.merge_engine is not None and self.merge_engine is not self.engine:
            self.merge_engine.close()
        self.engine.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _not_run(completion: Completion, sql: str | None, constraint: Names | None) -> str:
    """Why a candidate's SQL is not run ("": it is). A candidate the constraint ended is unfinished
    SQL (often cut inside a name): shown, not run, and no vote; running it would only fail, or
    answer what the model never wrote. Under --constrain, SQL runs only if the constraint admits
    it whole: not one --max-tokens cut inside a name (or with a name still owed), nor SQL that
    `extract_sql` found outside the answer block (a bare reply, an untagged fence), which the
    constraint never read while it was written."""
    if completion.finish_reason == CONSTRAINED:
        return UNFINISHED
    if constraint is None or not sql or constraint.admits(sql, whole=True):
        return ""
    return CUT if completion.finish_reason == "length" else OUTSIDE


def _same_model(a: str, b: str) -> bool:
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())
