"""`slmsql eval`'s run: predict each question, run gold and prediction, score, record, resume.

Every gold and predicted SQL runs through `targets.run_many` (read-only, time-limited), so a
prediction that tries to write scores 0 and changes nothing. `--engine duckdb|postgres` runs the
predictions on copies of the databases in that engine (`load_copies`) while the gold runs on the
SQLite file as the benchmark defines it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmsql_cli.benchmark_data import BenchmarkDatabases
from slmsql_cli.errors import UserError
from slmsql_cli.eval.metrics import bird_match, rounded, spider_match, spider_order_matters, spider_sql
from slmsql_cli.eval.questions import Question
from slmsql_cli.eval.results import ResultsFile
from slmsql_cli.schema import Schema
from slmsql_cli.targets import Target, run_many
from slmsql_cli.targets.result import ExecResult
from slmsql_cli.targets.sqlite_target import SQLiteTarget
from slmsql_cli.vote import candidate_dicts

if TYPE_CHECKING:
    from slmsql_cli.pipeline import AskConfig

ENGINES = ("sqlite", "duckdb", "postgres")  # where eval --engine runs the predictions
DEFAULT_TIMEOUT = 30.0  # BIRD's meta_time_out and CSC-SQL's eval timeout
EVAL_MAX_ROWS = 1_000_000  # the official evaluators fetch everything; this only guards memory


@dataclass
class EngineCopy:
    """A benchmark database copied into DuckDB or PostgreSQL (`sqlite_copy`), open for queries."""

    target: Target
    schema: Schema  # the copy's tables and column types, for the transpiler


@dataclass
class Score:
    correct: bool
    pred: ExecResult | None
    gold: ExecResult


def score(
    db_path: Path,
    gold_sql: str,
    pred_sql: str | None,
    fmt: str,
    timeout: float = DEFAULT_TIMEOUT,
    target: EngineCopy | None = None,
) -> Score:
    """Execute gold and prediction on the database and compare them with the format's metric.

    With a `target` (the database copied into DuckDB or PostgreSQL) the prediction is transpiled
    and runs there, while the gold runs on the SQLite file as the benchmark defines it: the
    reference result never depends on the transpiler, so a gold-as-prediction run measures it."""
    rewrite = spider_sql if fmt == "spider" else (lambda sql: sql)
    gold_sql_run, pred_sql_run = rewrite(gold_sql), rewrite(pred_sql) if pred_sql else None
    sqlite = SQLiteTarget(Path(db_path))
    if target is None:
        # gold and prediction run side by side (the executor's overlap), each with its own deadline
        gold, pred = run_many(sqlite, [gold_sql_run, pred_sql_run], timeout=timeout, max_rows=EVAL_MAX_ROWS)
    else:
        (gold,) = run_many(sqlite, [gold_sql_run], timeout=timeout, max_rows=EVAL_MAX_ROWS)
        (pred,) = run_many(
            target.target, [pred_sql_run], timeout=timeout, max_rows=EVAL_MAX_ROWS, schema=target.schema
        )
    assert gold is not None
    gold_rows, pred_rows = gold.rows, pred.rows if pred else []
    if target is not None:
        gold_rows, pred_rows = rounded(gold_rows), rounded(pred_rows)
    if fmt == "spider":
        ok = bool(
            gold.ok
            and pred
            and pred.ok
            and spider_match(gold_rows, pred_rows, spider_order_matters(gold_sql))
        )
    else:
        ok = bool(gold.ok and pred and pred.ok and bird_match(gold_rows, pred_rows))
    return Score(ok, pred, gold)


@dataclass
class Prediction:
    sql: str | None
    candidates: list[dict[str, Any]] = field(default_factory=list)  # sql, group, votes, error
    merged: bool = False
    timings: dict[str, float] = field(default_factory=dict)


Predictor = Callable[[Question, Path], Prediction]


def file_predictor(predictions: Sequence[str]) -> Predictor:
    return lambda q, _db: Prediction(sql=predictions[q.index] or None)


def model_predictor(pipeline: Any, databases: BenchmarkDatabases) -> Predictor:
    """Answer each question with `pipeline.ask`, exactly as `slmsql ask` would."""

    def predict(q: Question, _db_path: Path) -> Prediction:
        answer = pipeline.ask(databases.open(q.db_id), q.question, q.evidence)
        return Prediction(
            answer.sql,
            candidate_dicts(answer.generation.candidates, answer.generation.groups, text=False),
            answer.merged,
            dict(answer.timings),
        )

    return predict


def evaluate_question(
    q: Question,
    db_path: Path,
    predict: Predictor,
    fmt: str,
    timeout: float,
    run: dict,
    target: EngineCopy | None = None,
) -> dict:
    """Predict, score (the prediction on `target` when given), and return the question's JSONL record."""
    t = time.perf_counter()
    pred = predict(q, db_path)
    latency = time.perf_counter() - t
    s = score(db_path, q.gold, pred.sql, fmt, timeout, target)
    return {
        "index": q.index,
        "question_id": q.question_id,
        "db_id": q.db_id,
        "question": q.question,
        "evidence": q.evidence,
        "level": q.level,
        "gold": q.gold,
        "pred": pred.sql,
        "correct": s.correct,
        "error": _error_text(s.pred) if pred.sql else "no SQL",
        "gold_error": _error_text(s.gold),
        "latency": round(latency, 4),
        "timings": {k: round(v, 4) for k, v in pred.timings.items()},
        "candidates": pred.candidates,
        "merged": pred.merged,
        "run": run,
    }


def load_copies(
    engine: str,
    db_paths: dict[str, Path],
    stack: contextlib.ExitStack,
    pg_url: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, EngineCopy]:
    """Each benchmark database in `engine`, open for queries ("duckdb": cached files; "postgres":
    scratch databases on the server at `pg_url`); closed and dropped when `stack` closes. {} for "sqlite"."""
    from slmsql_cli.targets import sqlite_copy
    from slmsql_cli.targets.duckdb_target import DuckDBTarget
    from slmsql_cli.targets.postgres_target import PostgresTarget

    if engine == "sqlite":
        return {}
    if engine == "postgres" and not pg_url:
        raise UserError(
            "--engine postgres needs a server to copy the databases into",
            "pass --pg-url postgresql://user@host:port/postgres or set SLMSQL_PG_URL",
        )
    copies: dict[str, EngineCopy] = {}
    for db_id, path in db_paths.items():
        progress(f"loading {db_id} into {engine}")
        if engine == "duckdb":
            copy = sqlite_copy.to_duckdb(path)
            target: Target = DuckDBTarget(Path(copy.location))
        else:
            copy = stack.enter_context(sqlite_copy.to_postgres(path, str(pg_url)))
            target = PostgresTarget(copy.location)
        stack.callback(
            target.close
        )  # before the scratch database is dropped (callbacks run last in, first out)
        copies[db_id] = EngineCopy(target, copy.schema)
    return copies


def check_gold_ran(records: Sequence[dict]) -> None:
    """When no gold query ran, the score measures the databases, not the model: say so."""
    if records and all(r.get("gold_error") for r in records):
        raise UserError(
            f"none of the {len(records)} gold queries ran (the first: {records[0]['gold_error']}), so EX means nothing",
            "check that --db-dir holds this benchmark's databases",
            exit_code=1,
        )


def _error_text(result: ExecResult | None) -> str | None:
    if result is None or result.ok:
        return None
    return "timeout" if result.timed_out else result.error


# Settings that change how fast an answer comes, not what it is: a run may resume with others.
# speed only; the endpoints are recorded as their public URLs (never a key or user:password@)
_SPEED_ONLY = ("threads", "gpu_layers", "prompt_cache", "endpoint", "merge_endpoint")


def run_record(
    fmt: str,
    timeout: float,
    *,
    predictions: Path | None = None,
    model: str | None = None,
    merge_model: str | None = None,
    config: AskConfig | None = None,
    engine: str = "sqlite",
    endpoint: str | None = None,
    served_model: str | None = None,
) -> dict[str, Any]:
    """What makes a run: written into every record of its results file, and compared on resume.

    With a model, the AskConfig's fields as they are (`asdict`; a setting added to AskConfig is
    recorded without being listed here), less those that only change speed (`_SPEED_ONLY`)."""
    record: dict[str, Any] = {
        "format": fmt,
        "predictions": str(predictions.resolve()) if predictions else None,
        "model": model,
        "merge_model": merge_model,
    }
    if model is not None and config is not None:
        settings = {k: v for k, v in asdict(config).items() if k not in _SPEED_ONLY}
        if not config.merge:
            settings.pop("merge_n")
        record.update(settings)
    record["timeout"] = timeout  # the gold's and prediction's query timeout
    if engine != "sqlite":  # absent for SQLite, so that SQLite records compare as they did
        record["engine"] = engine
    if endpoint:  # absent in-process, likewise
        from slmsql_cli.remote_engine import public_url

        record["endpoint"] = public_url(endpoint)
        record["served_model"] = served_model
    return record


def resume(questions: Sequence[Question], store: ResultsFile | None) -> tuple[list[dict], list[Question]]:
    """(the records already in `store`, in question order; the questions still to run)."""
    done = store.done if store else {}
    return [done[q.index] for q in questions if q.index in done], [
        q for q in questions if q.index not in done
    ]


def evaluate(
    pending: Sequence[Question],
    db_paths: dict[str, Path],
    predict: Predictor,
    fmt: str,
    timeout: float,
    run: dict,
    *,
    records: list[dict],
    store: ResultsFile | None = None,
    copies: dict[str, EngineCopy] | None = None,
    on_record: Callable[[dict], None] = lambda _record: None,
    concurrency: int = 1,
) -> list[dict]:
    """Each pending question predicted and scored, `concurrency` at a time (`inflight.in_flight`:
    in order when 1, else as they finish): its record appended to `store` (as soon as it is
    scored: Ctrl-C loses at most the questions in progress) and to `records`."""
    from slmsql_cli.inflight import in_flight

    copies = copies or {}

    def one(q: Question) -> dict:
        return evaluate_question(q, db_paths[q.db_id], predict, fmt, timeout, run, copies.get(q.db_id))

    for record in in_flight(pending, one, concurrency):
        if store:
            store.append(record)
        records.append(record)
        on_record(record)
    return records
