"""`ask` end to end: prompt → N candidates → execute → vote → corrective merge → answer.

The same `Pipeline` object serves `ask` (one question), `chat` (many questions, model and KV
cache kept warm) and `eval` (a benchmark), so all three run exactly the same steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from slmsql_cli.database import Database
from slmsql_cli.engine import Completion, Engine, GenerationStats, SamplingParams
from slmsql_cli.errors import UserError
from slmsql_cli.executor import ExecResult, execute_many
from slmsql_cli.extract import extract_sql
from slmsql_cli.merge import merge_message, needs_merge
from slmsql_cli.prompts import SYSTEM_PROMPT, fallback_template, question_text, render_chat
from slmsql_cli.prune import keep_tables, rank_tables
from slmsql_cli.schema import Schema
from slmsql_cli.vote import Candidate, Group, vote

Progress = Callable[[str], None]


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


@dataclass
class Answer:
    question: str
    sql: str | None
    result: ExecResult | None
    candidates: list[Candidate]
    groups: list[Group]
    merged: bool = False
    merge_candidates: list[Candidate] = field(default_factory=list)
    merge_groups: list[Group] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    generation: GenerationStats | None = None
    merge_generation: GenerationStats | None = None
    schema_tables: tuple[int, int] | None = None  # (kept, total) when the schema was pruned to fit

    @property
    def agreement(self) -> tuple[int, int]:
        """(votes of the winning group, candidates sampled) for the stage that produced the answer."""
        groups, cands = (
            (self.merge_groups, self.merge_candidates) if self.merged else (self.groups, self.candidates)
        )
        return (groups[0].votes if groups else 0, len(cands))


class Pipeline:
    """A loaded generator (and optional merge model) plus the settings to answer questions with them."""

    def __init__(self, engine: Engine, merge_engine: Engine | None, config: AskConfig) -> None:
        self.engine = engine
        self.merge_engine = merge_engine
        self.config = config

    @classmethod
    def load(
        cls,
        model: str | None = None,
        merge_model: str | None = None,
        config: AskConfig | None = None,
        progress: Progress | None = None,
    ) -> Pipeline:
        """Resolve and load the models. With the default generator the default merge model is used;
        with a model of your own and no --merge-model, the generator revises its own drafts."""
        from slmsql_cli import models

        config = config or AskConfig()
        say = progress or (lambda _msg: None)
        spec = model or models.default_model()
        say(f"loading model {spec}")
        engine = load_engine(spec, config)
        merge_engine: Engine | None = None
        if config.merge:
            merge_spec = merge_model or (models.DEFAULT_MERGE_MODEL if model is None else None)
            if merge_spec is None or _same_model(merge_spec, spec):
                merge_engine = engine
            else:
                say(f"loading merge model {merge_spec}")
                merge_engine = load_engine(merge_spec, config)
        return cls(engine, merge_engine, config)

    def chat_text(self, engine: Engine, user_message: str) -> str:
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

    def _sample(
        self, engine: Engine, user_message: str, n: int, seed: int, on_token: Callable[[int], None] | None
    ):
        params = SamplingParams(
            n=n, temperature=self.config.temperature, max_tokens=self.config.max_tokens, seed=seed
        )
        return engine.sample(self.chat_text(engine, user_message), params, on_token=on_token)

    def _candidates(self, db: Database, completions: list[Completion]) -> list[Candidate]:
        sqls = [extract_sql(c.text) for c in completions]
        results = execute_many(db.path, sqls, timeout=self.config.timeout)  # identical SQL runs once
        return [Candidate(text=c.text, sql=sql, result=r) for c, sql, r in zip(completions, sqls, results)]

    def _fits(self, message: str) -> bool:
        return (
            len(self.engine.tokenize(self.chat_text(self.engine, message))) + self.config.max_tokens
            <= self.engine.n_ctx_limit
        )

    def generation_message(
        self, db: Database, question: str, evidence: str = ""
    ) -> tuple[str, Schema | None]:
        """The generation prompt, with the full schema when it fits the context (the usual case);
        otherwise with the largest question-ranked subset of tables that fits (and that subset)."""
        cfg = self.config
        message = db.generation_prompt(question, evidence, use_values=cfg.use_values)
        if self._fits(message):
            return message, None
        values = db.relevant_values(question, evidence) if cfg.use_values else {}
        ranked = rank_tables(db.schema, question_text(question, evidence), values)
        lo, hi, best = 1, len(ranked) - 1, None  # binary search for the most tables that fit
        while lo <= hi:
            mid = (lo + hi) // 2
            schema = keep_tables(db.schema, ranked[:mid])
            pruned = db.generation_prompt(question, evidence, use_values=cfg.use_values, schema=schema)
            if self._fits(pruned):
                best, lo = (pruned, schema), mid + 1
            else:
                hi = mid - 1
        if best is None:
            raise UserError(
                f"even the most relevant table of {db.path.name} does not fit the model's context ({self.engine.n_ctx_limit} tokens)",
                "lower --max-tokens or raise --context",
            )
        return best

    def generate(
        self, db: Database, question: str, evidence: str = "", on_token: Callable[[int], None] | None = None
    ):
        """Step 1: sample N candidates for the generation prompt, execute them and vote."""
        cfg = self.config
        user_message, schema = self.generation_message(db, question, evidence)
        completions, stats = self._sample(self.engine, user_message, cfg.n, cfg.seed, on_token)
        candidates = self._candidates(db, completions)
        return candidates, vote(candidates), stats, schema

    def revise(
        self,
        db: Database,
        question: str,
        evidence: str,
        groups: list[Group],
        on_token: Callable[[int], None] | None = None,
    ):
        """Step 2 (CSC-SQL): the merge model sees the top two drafts and their results, revises, votes again."""
        if self.merge_engine is None or len(groups) < 2:
            raise ValueError("revise needs a merge model and two result groups")
        message = merge_message(db, question, evidence, groups, self.config.use_values)
        completions, stats = self._sample(
            self.merge_engine, message, self.config.merge_n, self.config.seed + 1000, on_token
        )
        candidates = self._candidates(db, completions)
        return candidates, vote(candidates), stats

    def ask(
        self,
        db: Database,
        question: str,
        evidence: str = "",
        progress: Progress | None = None,
        on_token: Callable[[int], None] | None = None,
    ) -> Answer:
        say = progress or (lambda _msg: None)
        cfg = self.config
        t_start = time.perf_counter()
        say(f"sampling {cfg.n} candidate(s)")
        candidates, groups, gen_stats, schema = self.generate(db, question, evidence, on_token)
        timings = {
            "generate": gen_stats.wall_seconds,
            "execute": time.perf_counter() - t_start - gen_stats.wall_seconds,
        }
        answer = Answer(
            question=question,
            sql=None,
            result=None,
            candidates=candidates,
            groups=groups,
            generation=gen_stats,
        )
        if schema is not None:
            answer.schema_tables = (len(schema.tables), len(db.schema.tables))
            say(f"schema pruned to {len(schema.tables)} of {len(db.schema.tables)} tables to fit the context")
        if groups:
            answer.sql, answer.result = groups[0].sql, groups[0].result

        if self.merge_engine is not None and needs_merge(groups):
            say(f"merging the top two drafts ({cfg.merge_n} revision(s))")
            t = time.perf_counter()
            answer.merge_candidates, answer.merge_groups, answer.merge_generation = self.revise(
                db, question, evidence, groups, on_token
            )
            if answer.merge_groups:  # a merge that produced nothing executable keeps the vote's winner
                answer.merged = True
                answer.sql, answer.result = answer.merge_groups[0].sql, answer.merge_groups[0].result
            timings["merge"] = time.perf_counter() - t

        if answer.sql is None:  # nothing executed: show the first SQL the model wrote, with its error
            first = next((c for c in candidates if c.sql), None)
            if first is not None:
                answer.sql, answer.result = first.sql, first.result
        timings["total"] = time.perf_counter() - t_start
        answer.timings = timings
        return answer

    def close(self) -> None:
        if self.merge_engine is not None and self.merge_engine is not self.engine:
            self.merge_engine.close()
        self.engine.close()


def load_engine(spec: str, config: AskConfig) -> Engine:
    """Resolve a --model spec and load it: the one place a model becomes an engine (the tests'
    scripted engine is put in here)."""
    from slmsql_cli import models

    return Engine(models.resolve(spec), threads=config.threads, n_ctx=config.context)


def _same_model(a: str, b: str) -> bool:
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())
