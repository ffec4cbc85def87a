"""`ask` end to end: prompt → N candidates → execute → vote → corrective merge → answer.

The same `Pipeline` object serves `ask` (one question), `chat` (many questions, model and KV
cache kept warm) and `eval` (a benchmark), so all three run exactly the same steps.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from slmsql_cli.confidence import unmatched_values
from slmsql_cli.database import Database, Values, check_question
from slmsql_cli.engine import Completion, GenerationStats, SamplingParams
from slmsql_cli.engine_protocol import Engine
from slmsql_cli.errors import UserError
from slmsql_cli.extract import extract_sql
from slmsql_cli.merge import merge_message, needs_merge
from slmsql_cli.prompts import (
    SYSTEM_PROMPT,
    fallback_template,
    generation_prompt,
    question_text,
    render_chat,
)
from slmsql_cli.prune import choose_tables, keep_tables
from slmsql_cli.schema import Schema, serialize_tables
from slmsql_cli.targets.executor import ExecResult
from slmsql_cli.vote import Candidate, Group, vote

if TYPE_CHECKING:
    from slmsql_cli.models import Exporter
    from slmsql_cli.remote_engine import Endpoint

Progress = Callable[[str], None]
RoundDone = Callable[[str, "SamplingRound"], None]  # ("generation" | "merge", the round), as each ends


# OmniSQL's inference cut prompts at 6,144 tokens of an 8,192-token window (`max_input_len` in
# train_and_evaluate/infer.py; 8,192 is also its SFT block size), and CSC-SQL/SLM-SQL ran vLLM with
# max_model_len 8,192 and 1,024 new tokens: their models never saw a longer prompt. A larger schema
# is pruned to the question's tables rather than filling a 32k context (slow, and out of training).
PROMPT_BUDGET = 6144


@dataclass
class AskConfig:
    """Sampling and execution settings. Papers used N=8-64 on GPUs; 4 keeps a laptop answer under a minute."""

    n: int = SamplingParams.n
    temperature: float = SamplingParams.temperature
    max_tokens: int = SamplingParams.max_tokens
    seed: int = SamplingParams.seed
    merge: bool = True
    merge_n: int = 4
    timeout: float = 10.0
    use_values: bool = True
    threads: int | None = None
    context: int | None = None  # cap on the context window (tokens); default: the model's own
    prompt_budget: int = PROMPT_BUDGET  # larger schemas are pruned to the question's tables
    gpu_layers: int | None = None  # layers offloaded to a GPU; default all where llama.cpp has one
    prompt_cache: bool = True  # reuse prompts evaluated by earlier processes (kv_cache.py)
    endpoint: Endpoint | None = None  # generate on an OpenAI-compatible server (remote_engine.py)
    merge_endpoint: Endpoint | None = None  # the merge model's server (remote_engine.endpoints)


@dataclass
class SamplingRound:
    """One sampling step - the generation, or the merge's revisions: what was drawn, run and voted."""

    candidates: list[Candidate]
    groups: list[Group]  # vote(candidates): largest first
    stats: GenerationStats
    pruned_schema: Schema | None = None  # the subset of tables the prompt showed, when all did not fit
    build_seconds: float = 0.0  # building the prompt: serializing, counting tokens, pruning

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

    @classmethod
    def load(
        cls,
        model: str | None = None,
        merge_model: str | None = None,
        config: AskConfig | None = None,
        progress: Progress | None = None,
        export: Exporter | None = None,
    ) -> Pipeline:
        """Resolve and load the models. With the default generator the default merge model is used;
        with a model of your own and no --merge-model, the generator revises its own drafts.
        `export` turns a checkpoint into a GGUF (`models.resolve`)."""
        from slmsql_cli import models

        config = config or AskConfig()
        say = progress or (lambda _msg: None)
        spec = model or models.default_model()
        say(f"loading model {spec}")
        engine = load_engine(spec, config, export)
        merge_engine: Engine | None = None
        if config.merge:
            merge_spec = merge_model or (models.DEFAULT_MERGE_MODEL if model is None else None)
            same_server = config.merge_endpoint == config.endpoint
            if same_server and (merge_spec is None or _same_model(merge_spec, spec)):
                merge_engine = engine
            else:
                say(f"loading merge model {merge_spec or spec}")
                merge_config = replace(config, endpoint=config.merge_endpoint)
                merge_engine = load_engine(merge_spec or spec, merge_config, export)
                if config.endpoint is not None or config.merge_endpoint is not None:
                    from slmsql_cli.remote_engine import check_distinct

                    check_distinct(engine, merge_engine, spec, merge_spec or spec)
        return cls(engine, merge_engine, config)

    def _sample(
        self, engine: Engine, user_message: str, n: int, seed: int, on_token: Callable[[int], None] | None
    ) -> tuple[list[Completion], GenerationStats]:
        params = SamplingParams(
            n=n, temperature=self.config.temperature, max_tokens=self.config.max_tokens, seed=seed
        )
        text = chat_text(engine, user_message)
        counted = self._counted  # the prompt as generation_message counted it: not tokenized again
        prompt = counted[1] if engine is self.engine and counted is not None and counted[0] == text else text
        return engine.sample(prompt, params, on_token=on_token)

    def _round(
        self,
        db: Database,
        engine: Engine,
        user_message: str,
        n: int,
        seed: int,
        on_token: Callable[[int], None] | None,
        progress: Progress | None = None,
    ) -> SamplingRound:
        completions, stats = self._sample(engine, user_message, n, seed, on_token)
        sqls = [extract_sql(c.text) for c in completions]
        if progress is not None:
            progress(f"executing {sum(sql is not None for sql in sqls)} of {n} candidate(s)")
        results = db.run_many(sqls, timeout=self.config.timeout)  # identical SQL runs once
        candidates = [
            Candidate(text=c.text, sql=sql, result=r) for c, sql, r in zip(completions, sqls, results)
        ]
        return SamplingRound(candidates, vote(candidates), stats)

    def _tokens(self, message: str) -> int:
        text = chat_text(self.engine, message)
        self._counted = (text, self.engine.tokenize(text))
        return len(self._counted[1])

    @property
    def prompt_room(self) -> int:
        """Most tokens a generation prompt may have: the prompt budget, or less when the context
        must also hold --max-tokens new tokens."""
        return min(self.config.prompt_budget, self.engine.n_ctx_limit - self.config.max_tokens)

    def matched_values(self, db: Database, question: str, evidence: str = "") -> Values:
        """The database values the question mentions, shown in every prompt built for it (none
        with use_values off): looked up once per question (`ask` checked the question)."""
        return db.relevant_values(question, evidence) if self.config.use_values else {}

    def generation_message(
        self, db: Database, question: str, evidence: str = "", *, matched_values: Values | None = None
    ) -> tuple[str, Schema | None]:
        """The generation prompt, with the full schema when it fits `prompt_room` (the usual case);
        otherwise with the question's tables (`prune.choose_tables`) and that subset.

        Each table's block is tokenized once, and only as many blocks as it takes to know that the
        schema does not fit; the whole prompt is tokenized only when it is within the budget, to
        check it (the sum of the blocks can be off by a token per junction)."""
        if matched_values is None:
            matched_values = self.matched_values(db, question, evidence)
        use_values = self.config.use_values

        def prompt(schema: Schema | None = None) -> str:
            details = db.db_details(
                question, evidence, use_values=use_values, matched_values=matched_values, schema=schema
            )
            return generation_prompt(details, question, evidence)

        room = self.prompt_room
        bare = self._check_room(question, evidence, prompt(keep_tables(db.schema, [])))
        values = db.prompt_values(question, evidence, use_values=use_values, matched_values=matched_values)
        blocks = serialize_tables(db.schema, values)

        @functools.cache
        def cost(table: str) -> int:  # the blank line that joins it to the block before it included
            return len(self.engine.tokenize("\n\n" + blocks[table])) if table in blocks else 0

        spent = bare
        for table in blocks:
            spent += cost(table)
            if spent > room + len(blocks):
                break
        else:
            message = prompt()
            if self._tokens(message) <= room:
                return message, None
        names = choose_tables(db.schema, question_text(question, evidence), matched_values, cost, room - bare)
        while names:  # the tokens of joined blocks can differ from their sum by a token or two
            schema = keep_tables(db.schema, names)
            pruned = prompt(schema)
            if self._tokens(pruned) <= room:
                return pruned, schema
            names.pop()
        # name only the limit that binds, so that the hint fits `prompt` too (no --max-tokens there)
        raise UserError(
            f"even the most relevant table of {db.name} does not fit the {room}-token prompt budget",
            "raise --prompt-budget"
            if room == self.config.prompt_budget
            else "raise --context (or lower --max-tokens): the context must hold the prompt and the answer",
        )

    def _check_room(self, question: str, evidence: str, bare: str) -> int:
        """The tokens of `bare`, the prompt without any table; blame --max-tokens or the question
        when even that does not fit."""
        limit, reserved = self.engine.n_ctx_limit, self.config.max_tokens
        if reserved >= limit:
            raise UserError(
                f"--max-tokens {reserved} leaves no room for the prompt in the model's {limit}-token context",
                f"use --max-tokens well below {limit} (the default is {SamplingParams.max_tokens})",
            )
        tokens = self._tokens(bare)
        if tokens <= self.prompt_room:
            return tokens
        words = len(self.engine.tokenize(question_text(question, evidence)))
        what = "question and evidence are" if evidence else "question is"
        budget = self.config.prompt_budget
        if budget < limit - reserved:
            raise UserError(
                f"the {what} too long for the {budget}-token prompt budget: {words} tokens, and the "
                f"instructions around them take {tokens - words} more",
                "shorten the question or raise --prompt-budget",
            )
        raise UserError(
            f"the {what} too long for the model's context: {words} tokens, and {reserved} more are "
            f"kept for the answer, of {limit}",
            "shorten the question, lower --max-tokens or raise --context",
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
    ) -> SamplingRound:
        """Step 1: sample N candidates for the generation prompt, execute them and vote."""
        cfg = self.config
        t = time.perf_counter()
        message, schema = self.generation_message(db, question, evidence, matched_values=matched_values)
        built = time.perf_counter() - t
        db.target.prepare()  # a SQLite query worker starts while the model samples
        generated = self._round(db, self.engine, message, cfg.n, cfg.seed, on_token, progress)
        generated.pruned_schema, generated.build_seconds = schema, built
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
    ) -> SamplingRound:
        """Step 2 (CSC-SQL): the merge model sees the top two drafts and their results, revises, votes again."""
        if self.merge_engine is None or len(groups) < 2:
            raise ValueError("revise needs a merge model and two result groups")
        cfg = self.config
        message = merge_message(
            db, question, evidence, groups, use_values=cfg.use_values, matched_values=matched_values
        )
        return self._round(db, self.merge_engine, message, cfg.merge_n, cfg.seed + 1000, on_token, progress)

    def ask(
        self,
        db: Database,
        question: str,
        evidence: str = "",
        progress: Progress | None = None,
        on_token: Callable[[int], None] | None = None,
        on_round: RoundDone | None = None,
    ) -> Answer:
        """`on_token(candidate)` runs after every sampled token (an exception raised there stops
        decoding: `serve` cancels a request that way); `on_round` gets each round once it is voted."""
        say = progress or (lambda _msg: None)
        round_done = on_round or (lambda _step, _round: None)
        cfg = self.config
        t_start = time.perf_counter()
        check_question(question, evidence)  # once; the prompts below are built from schema and values
        matched = self.matched_values(db, question, evidence)
        say(f"sampling {cfg.n} candidate(s)")
        generated = self.generate(db, question, evidence, on_token, matched_values=matched, progress=say)
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
        if generated.winner is not None:
            answer.sql, answer.result = generated.winner.sql, generated.winner.result

        if self.merge_engine is not None and needs_merge(generated.groups):
            say(f"merging the top two drafts ({cfg.merge_n} revision(s))")
            t = time.perf_counter()
            answer.revision = self.revise(
                db, question, evidence, generated.groups, on_token, matched_values=matched, progress=say
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


def load_engine(spec: str, config: AskConfig, export: Exporter | None = None) -> Engine:
    """Resolve a --model spec and load it: the one place a model becomes an engine (the tests'
    scripted engine, `scripted.ScriptedEngine`, is put in here). With `config.endpoint` the server
    generates and the local GGUF is read vocab-only (`remote_engine.RemoteEngine`)."""
    from slmsql_cli import models
    from slmsql_cli.engine import Engine as LlamaEngine

    if config.endpoint is not None:  # the local GGUF gives the template and tokenizer only
        from slmsql_cli.remote_engine import RemoteEngine

        return RemoteEngine(
            models.resolve(spec, export=export), config.endpoint, name=spec, n_ctx=config.context
        )
    engine = LlamaEngine(
        models.resolve(spec, export=export),
        threads=config.threads,
        n_ctx=config.context,
        gpu_layers=config.gpu_layers,
    )
    engine.prompt_cache = config.prompt_cache
    return engine


def _same_model(a: str, b: str) -> bool:
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())
