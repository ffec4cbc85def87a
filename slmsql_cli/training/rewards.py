"""GRPO rewards: execution (CSC-SQL / SLM-SQL), format, and FINER-SQL's atomic reward.

Each reward is a plain function of one completion, tested on its own; `RewardFunctions` wraps them
in TRL's batch signature (`f(prompts, completions, **dataset_columns) -> list[float]`), with the
weights from the config. SLM-SQL trains with R = R_EX + 0.1·R_format (the CSC-SQL and SLM-SQL papers,
arXiv 2505.13271 and 2507.22478, as quoted by a secondary source: unverified);
FINER-SQL adds the atomic reward for wrong but executable SQL.

SQL runs through the SQLite target `ask` uses (`targets.sqlite_target.SQLiteTarget`: the
read-only executor), so a candidate is judged exactly as `ask` would run it. A `SqlJudge` runs many candidates in worker processes, each
with SQLite's own deadline plus a wall-clock deadline that kills a stuck worker, and remembers
every (database, SQL) it has run: the rewards of one batch, and the gold queries of every batch,
execute once.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmsql_cli.extract import extract_sql
from slmsql_cli.targets.result import MAX_ROWS
from slmsql_cli.targets.sqlcheck import check_sql
from slmsql_cli.targets.sqlite_target import SQLiteTarget
from slmsql_cli.training.atomic import FINER_BETA, FINER_E, FINER_GAMMA, shaped, similarity

# ---- one query's outcome ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What executing one SQL gave, small enough to cache by the million and to send between processes."""

    ok: bool
    digest: str | None = None  # fingerprint of the result set; equal digests = equal ExecResult.key()
    error: str | None = None
    timed_out: bool = False


def result_digest(rows: Sequence[tuple]) -> str:
    """A process-independent fingerprint of `frozenset(rows)` (the executor's vote key).

    Python's own hash of strings is salted per process, so the worker hashes a canonical text:
    the distinct rows' reprs, sorted. 1.0 and 1 compare equal in the set and here alike.
    """

    def norm(v: Any) -> Any:
        return int(v) if isinstance(v, float) and v.is_integer() else v

    canonical = sorted({repr(tuple(norm(v) for v in row)) for row in rows})
    return hashlib.blake2b("\n".join(canonical).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def run_query(db_path: str, sql: str, timeout: float) -> Outcome:
    """Execute one SQL read-only on the SQLite file, as `ask` does, and reduce the result to an Outcome."""
    try:
        res = SQLiteTarget(Path(db_path)).run(sql, timeout, MAX_ROWS)
    except Exception as exc:  # a missing database is a UserError there; here it is a failed query
        return Outcome(ok=False, error=str(exc))
    if not res.ok:
        return Outcome(ok=False, error=res.error, timed_out=res.timed_out)
    return Outcome(ok=True, digest=result_digest(res.rows))


def _run_job(job: tuple[str, str, float]) -> Outcome:
    return run_query(*job)


class SqlJudge:
    """Executes (database, SQL) pairs in worker processes, caching each pair's Outcome.

    `workers=0` runs in-process (small jobs, tests). Workers are spawned, not forked: forking a
    process that holds CUDA or torch thread pools is unsafe, and the workers need only sqlite3.
    """

    def __init__(self, workers: int | None = None, timeout: float = 10.0, grace: float = 5.0) -> None:
        self.workers = min(8, os.cpu_count() or 1) if workers is None else workers
        self.timeout = timeout
        self.grace = grace
        self.cache: dict[tuple[str, str], Outcome] = {}
        self.executed = 0
        self.killed = 0
        self._pool: Any = None

    def outcome(self, db_path: str, sql: str) -> Outcome:
        return self.outcomes([(db_path, sql)])[0]

    def outcomes(self, pairs: Sequence[tuple[str, str]]) -> list[Outcome]:
        todo = list(dict.fromkeys(p for p in pairs if p not in self.cache))
        if todo:
            self.cache.update(zip(todo, self._execute(todo)))
            self.executed += len(todo)
        return [self.cache[p] for p in pairs]

    def _execute(self, pairs: list[tuple[str, str]]) -> list[Outcome]:
        jobs = [(db, sql, self.timeout) for db, sql in pairs]
        if self.workers <= 0 or len(jobs) == 1:
            return [_run_job(j) for j in jobs]
        import time

        pool = self._get_pool()
        pending = [pool.apply_async(_run_job, (j,)) for j in jobs]
        # Every query has its own SQLite deadline; this wall clock only catches a worker stuck
        # outside SQLite's progress handler (a huge allocation, a C-level hang).
        rounds = math.ceil(len(jobs) / self.workers)
        deadline = time.monotonic() + rounds * self.timeout + self.grace
        out: list[Outcome] = []
        stuck = False
        for handle in pending:
            try:
                out.append(handle.get(timeout=max(0.0, deadline - time.monotonic())))
            except multiprocessing.TimeoutError:
                out.append(Outcome(ok=False, error="killed after the wall-clock deadline", timed_out=True))
                stuck = True
        if stuck:
            self.killed += 1
            self.close()
        return out

    def _get_pool(self) -> Any:
        if self._pool is None:
            self._pool = multiprocessing.get_context("spawn").Pool(self.workers)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> SqlJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- the rewards, one completion at a time ----------------------------------------------------

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_LAYOUT = re.compile(r"\A\s*<think>.*?</think>\s*<answer>(?P<answer>.*?)</answer>\s*\Z", re.DOTALL)


def completion_text(completion: Any) -> str:
    """TRL passes strings for text prompts and message lists for conversational ones."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        return str(completion[-1].get("content", ""))
    return ""


def format_reward(completion: str) -> float:
    """1.0 for `<think>…</think><answer>SQL</answer>` with each tag once and one read-only query inside; else 0.

    Whitespace between and around the blocks is allowed, text outside them is not. The SQL check
    is the executor's own (one statement, a query); SQL that sqlglot cannot parse still counts
    here, and the execution reward then judges it.
    """
    if any(completion.count(tag) != 1 for tag in _TAGS):
        return 0.0
    match = _LAYOUT.match(completion)
    if match is None:
        return 0.0
    sql = extract_sql(completion)
    if sql is None or check_sql(sql) is not None:
        return 0.0
    return 1.0


def execution_reward(completion: str, db_path: str, gold_sql: str, judge: SqlJudge) -> float:
    """1.0 when the completion's SQL returns the gold SQL's result set (rows as a set, column order kept); else 0."""
    sql = extract_sql(completion)
    if not sql:
        return 0.0
    pred, gold = judge.outcomes([(db_path, sql), (db_path, gold_sql)])
    return 1.0 if pred.ok and gold.ok and pred.digest == gold.digest else 0.0


def atomic_reward(
    completion: str,
    db_path: str,
    gold_sql: str,
    judge: SqlJudge,
    e: float = FINER_E,
    beta: float = FINER_BETA,
    gamma: float = FINER_GAMMA,
) -> float:
    """FINER-SQL's partial credit: 1.0 if correct, shaped Jaccard of atomic ops if it runs but is wrong, 0 if it fails.

    FINER-SQL scores correct 2.0, executable-but-wrong 1.0 + shaped(s), failing 0; as a separate
    reward on a 0-1 scale the order is the same: a correct query (1.0) always beats the best wrong
    one (shaped(1) = e + (1−e)·β = 0.8005 with the S3 values).
    """
    sql = extract_sql(completion)
    if not sql:
        return 0.0
    pred, gold = judge.outcomes([(db_path, sql), (db_path, gold_sql)])
    if not pred.ok:
        return 0.0
    if gold.ok and pred.digest == gold.digest:
        return 1.0
    return shaped(similarity(sql, gold_sql), e, beta, gamma)


# ---- TRL's batch signature -------------------------------------------------------------------

RewardFn = Callable[..., list[float]]


class RewardFunctions:
    """The configured rewards as TRL reward functions, named so TRL logs rewards/<name>/mean."""

    def __init__(
        self,
        weights: dict[str, float],
        judge: SqlJudge,
        e: float = FINER_E,
        beta: float = FINER_BETA,
        gamma: float = FINER_GAMMA,
    ) -> None:
        self.weights = {k: w for k, w in weights.items() if w}
        self.judge = judge
        self.atomic_params = (e, beta, gamma)

    def functions(self) -> tuple[list[RewardFn], list[float]]:
        makers = {"execution": self._execution, "format": self._format, "atomic": self._atomic}
        names = [n for n in ("execution", "format", "atomic") if n in self.weights]
        funcs = []
        for name in names:
            fn = makers[name]

            def reward(prompts: list, completions: list, _fn: Callable = fn, **columns: Any) -> list[float]:
                return _fn([completion_text(c) for c in completions], columns)

            reward.__name__ = name
            funcs.append(reward)
        return funcs, [self.weights[n] for n in names]

    def _prefetch(self, texts: list[str], columns: dict[str, Any]) -> None:
        """Run every candidate and gold of the batch at once, in parallel; the rewards then read the cache."""
        pairs = []
        for text, db, gold in zip(texts, columns["db_path"], columns["gold_sql"]):
            sql = extract_sql(text)
            if sql:
                pairs.append((db, sql))
            pairs.append((db, gold))
        self.judge.outcomes(pairs)

    def _execution(self, texts: list[str], columns: dict[str, Any]) -> list[float]:
        self._prefetch(texts, columns)
        return [
            execution_reward(t, db, gold, self.judge)
            for t, db, gold in zip(texts, columns["db_path"], columns["gold_sql"])
        ]

    def _format(self, texts: list[str], columns: dict[str, Any]) -> list[float]:
        return [format_reward(t) for t in texts]

    def _atomic(self, texts: list[str], columns: dict[str, Any]) -> list[float]:
        self._prefetch(texts, columns)
        return [
            atomic_reward(t, db, gold, self.judge, *self.atomic_params)
            for t, db, gold in zip(texts, columns["db_path"], columns["gold_sql"])
        ]
