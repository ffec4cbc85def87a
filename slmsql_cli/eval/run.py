"""`slmsql eval`'s run: predict each question, run gold and prediction, score, record, resume.

`EvalRun` is the run as its options give it; `prepare` checks it and finds what is left to do
(`Plan`), `execute` scores that; the command only parses, calls these and renders.

Every gold and predicted SQL runs through `targets.run_many` (read-only, time-limited), so a
prediction that tries to write scores 0 and changes nothing. `--engine duckdb|postgres` runs the
predictions on copies of the databases in that engine (`load_copies`) while the gold runs on the
SQLite file as the benchmark defines it.

SParC/CoSQL turns are scored one by one by Spider's rule. The model answers a turn as `chat`
answers a follow-up: `Pipeline.ask` with the interaction's earlier turns, rendered into the
question field as `--earlier-turns` says (conversation.py): the earlier questions, and for the
`evidence` rendering the SQL that answered them. That SQL is the model's own earlier answers by
default (what a user has: a wrong answer early carries forward, as it would for the user; one
that did not run is left out, as chat leaves it out), or the gold SQL with `--earlier-sql gold`
(an upper bound: every earlier turn answered right). So an interaction's turns are answered in
order, and `--concurrency` keeps several interactions, not turns, in flight.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from slmsql_cli.benchmark_data import BenchmarkDatabases, sibling_tables_json
from slmsql_cli.config import AskConfig, ModelSource
from slmsql_cli.conversation import DEFAULT_RENDERING, RENDERINGS, Turn
from slmsql_cli.errors import UserError
from slmsql_cli.eval.metrics import bird_match, rounded, spider_match, spider_order_matters, spider_sql
from slmsql_cli.eval.questions import INTERACTION_FORMATS, Question, load_questions, read_predictions
from slmsql_cli.eval.results import ResultsFile
from slmsql_cli.schema import Schema
from slmsql_cli.targets import Target, run_many
from slmsql_cli.targets.result import ExecResult
from slmsql_cli.targets.sqlite_target import SQLiteTarget
from slmsql_cli.vote import candidate_dicts

ENGINES = ("sqlite", "duckdb", "postgres")  # where eval --engine runs the predictions
DEFAULT_TIMEOUT = 30.0  # BIRD's meta_time_out and CSC-SQL's eval timeout
EVAL_MAX_ROWS = 1_000_000  # the official evaluators fetch everything; this only guards memory
EARLIER_SQL = ("predicted", "gold")  # whose SQL the `evidence` rendering shows for earlier turns


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
    reference result never depends on the transpiler, so a gold-as-prediction run measures it.
    Every format but BIRD (Spider, SParC and CoSQL turns) is scored by Spider's rule."""
    fmt = "bird" if fmt == "bird" else "spider"
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
    earlier: dict[str, Any] | None = None  # a turn's: the rendering, earlier turns used and dropped
    prompt_tokens: int | None = None  # the generation prompt's length (what context costs)


Predictor = Callable[[Question, Path], Prediction]


def file_predictor(predictions: Sequence[str]) -> Predictor:
    return lambda q, _db: Prediction(sql=predictions[q.index] or None)


def model_predictor(
    pipeline: Any, databases: BenchmarkDatabases, rendering: str = DEFAULT_RENDERING
) -> Predictor:
    """Answer each question with `pipeline.ask`, exactly as `slmsql ask` would; a SParC/CoSQL turn
    as a follow-up of its earlier turns (`Place.earlier`, with the SQL `with_earlier` chose), in
    `rendering`, as `chat` asks it."""

    def predict(q: Question, _db_path: Path) -> Prediction:
        db = databases.open(q.db_id)
        if q.place is None:
            answer = pipeline.ask(db, q.question, q.evidence)
        else:
            answer = pipeline.ask(db, q.question, q.evidence, turns=q.place.earlier, rendering=rendering)
        context = answer.context
        return Prediction(
            answer.sql,
            candidate_dicts(answer.generation.candidates, answer.generation.groups, text=False),
            answer.merged,
            dict(answer.timings),
            None
            if q.place is None or context is None
            else {"rendering": rendering, "turns": len(context.used), "dropped": context.dropped},
            answer.generation.stats.prompt_tokens,
        )

    return predict


def with_earlier(q: Question, answered: dict[int, str | None], earlier_sql: str) -> Question:
    """The turn with the SQL of its earlier turns as the model is to see them: the answers given
    to them in this run ("predicted"; `answered`: question index -> the predicted SQL when it ran,
    else None, as `chat` follows no SQL that failed) or their gold ("gold", as the question file
    has them). A turn's interaction is numbered consecutively."""
    if q.place is None or earlier_sql == "gold":
        return q
    first = q.index - (q.place.turn - 1)
    earlier = tuple(Turn(t.question, answered.get(first + k)) for k, t in enumerate(q.place.earlier))
    return replace(q, place=replace(q.place, earlier=earlier))


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
    record = {
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
        "prompt_tokens": pred.prompt_tokens,
        "timings": {k: round(v, 4) for k, v in pred.timings.items()},
        "candidates": pred.candidates,
        "merged": pred.merged,
        "run": run,
    }
    if q.place is not None:  # a SParC/CoSQL turn: where it sits, and what the model was given
        place = q.place
        record.update(interaction=place.interaction, turn=place.turn, turns=place.turns, earlier=pred.earlier)
    return record


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
    rendering: str | None = None,
    earlier_sql: str = "predicted",
) -> dict[str, Any]:
    """What makes a run: written into every record of its results file, and compared on resume.

    With a model, the AskConfig's fields as they are (`asdict`; a setting added to AskConfig is
    recorded without being listed here), less those that only change speed (`_SPEED_ONLY`); for
    SParC/CoSQL turns answered by a model, how their earlier turns were given (`rendering`, `earlier_sql`)."""
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
        if not config.constrain:  # absent unconstrained, so that records compare as they did
            settings.pop("constrain")
        record.update(settings)
        if rendering is not None:  # absent for Spider and BIRD, so that their records compare as they did
            record.update(rendering=rendering, earlier_sql=earlier_sql)
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
    earlier_sql: str = "predicted",
) -> list[dict]:
    """Each pending question predicted and scored, `concurrency` at a time (`inflight.in_flight`:
    in order when 1, else as they finish): its record appended to `store` (as soon as it is
    scored: Ctrl-C loses at most the questions in progress) and to `records`.

    The turns of one SParC/CoSQL interaction are answered in order, each after the answers to the
    turns before it (`with_earlier`; those of a resumed run come from `records`); with
    `concurrency` above 1 whole interactions are in flight, and one's records are written when it
    ends."""
    from slmsql_cli.inflight import in_flight

    copies = copies or {}
    answered: dict[int, str | None] = {r["index"]: _ran(r) for r in records}

    def turns(unit: list[Question]) -> Iterator[dict]:
        for q in unit:
            q = with_earlier(q, answered, earlier_sql)
            record = evaluate_question(q, db_paths[q.db_id], predict, fmt, timeout, run, copies.get(q.db_id))
            answered[q.index] = _ran(record)  # each unit writes only its own turns' entries
            yield record

    units = _units(pending)
    done = (
        (record for unit in units for record in turns(unit))
        if concurrency <= 1
        else (record for batch in in_flight(units, lambda u: list(turns(u)), concurrency) for record in batch)
    )
    for record in done:
        if store:
            store.append(record)
        records.append(record)
        on_record(record)
    return records


def _ran(record: dict) -> str | None:
    """A record's predicted SQL if it ran (what a follow-up may build on), else None."""
    return record.get("pred") if not record.get("error") else None


def _units(pending: Sequence[Question]) -> list[list[Question]]:
    """What must run in order: the pending turns of one interaction together, any other question alone."""
    units: list[list[Question]] = []
    for q in pending:
        last = units[-1][-1].place if units else None
        if q.place is not None and last is not None and last.interaction == q.place.interaction:
            units[-1].append(q)
        else:
            units.append([q])
    return units


@dataclass
class EvalRun:
    """One `slmsql eval`, as its options give it: what to score, with what, and where it goes."""

    questions: Path  # Spider's or BIRD's dev.json: questions with gold SQL
    db_dir: Path  # a folder of <db_id>/<db_id>.sqlite, or one database or data file
    fmt: str | None = None  # "spider" or "bird"; None: as the questions file says
    tables: Path | None = None  # tables.json for the prompts; None: the one beside the questions
    predictions: Path | None = None  # SQL to score instead of a model's answers
    source: ModelSource = field(default_factory=ModelSource)  # the model, when no predictions
    # the model's settings; its timeout is each gold and predicted query's
    config: AskConfig = field(default_factory=lambda: AskConfig(timeout=DEFAULT_TIMEOUT))
    out: Path | None = None  # the resumable JSONL file, one record per question
    limit: int | None = None  # only the first questions
    engine: str = "sqlite"  # where predictions run (ENGINES); the gold runs on SQLite
    pg_url: str | None = None  # the server for engine "postgres"
    concurrency: int = 1  # questions in flight (a model server only)
    # SParC/CoSQL: how a turn's earlier turns are given (conversation.RENDERINGS; None: the
    # default, DEFAULT_RENDERING) and whose SQL for them (EARLIER_SQL; None: "predicted")
    rendering: str | None = None
    earlier_sql: str | None = None

    def check(self) -> None:
        """The user errors a run's options can hold, before anything is read."""
        if (self.source.model is None) == (self.predictions is None):
            raise UserError(
                "pass either --model (run a model) or --predictions (score given SQL)",
                "--predictions takes one SQL per line, in the order of the questions",
            )
        if self.concurrency > 1 and not (self.source.model is not None and self.source.endpoint):
            raise UserError(
                "--concurrency above 1 needs a model served with --endpoint",
                "the in-process model answers one question at a time; serve it (vLLM, llama-server) and pass --endpoint URL",
            )
        if not self.db_dir.exists():
            raise UserError(
                f"database folder not found: {self.db_dir}", "pass the folder holding <db_id>/<db_id>.sqlite"
            )
        if self.rendering is not None and self.rendering not in RENDERINGS:
            raise UserError(
                f"unknown --earlier-turns {self.rendering!r}", f"use one of {', '.join(RENDERINGS)}"
            )
        if self.earlier_sql is not None and self.earlier_sql not in EARLIER_SQL:
            raise UserError(
                f"unknown --earlier-sql {self.earlier_sql!r}", f"use one of {', '.join(EARLIER_SQL)}"
            )

    def check_format(self, fmt: str) -> None:
        """--earlier-turns and --earlier-sql are for follow-up questions only."""
        given = [
            name
            for name, value in (("--earlier-turns", self.rendering), ("--earlier-sql", self.earlier_sql))
            if value
        ]
        if given and fmt not in INTERACTION_FORMATS:
            raise UserError(
                f"{' and '.join(given)} apply to follow-up questions, and {self.questions} is read as {fmt}",
                "pass a SParC or CoSQL file (--format sparc|cosql)",
            )


@dataclass
class Plan:
    """What `prepare` found for a run: the questions it scores, its record, and what is done."""

    run: EvalRun
    fmt: str
    questions: list[Question]  # those scored: after --limit, and no further than the predictions
    databases: BenchmarkDatabases
    db_paths: dict[str, Path]
    predictions: list[str] | None
    unscored: int  # questions past the last prediction, not scored
    record: dict[str, Any]  # run_record: written into every record, compared on resume
    store: ResultsFile | None
    records: list[dict]  # the scored records, in question order as they come; resumed ones first
    pending: list[Question]  # still to score


def prepare(run: EvalRun, note: Callable[[str], None] = lambda _: None) -> Plan:
    """Check `run`, read its questions and predictions, and open its results file: what is left.

    `note` hears what the user should know (the tables.json chosen, predictions that stop short,
    a resumed file)."""
    run.check()
    questions, fmt = load_questions(run.questions, run.fmt)
    run.check_format(fmt)
    all_count = len(questions)
    questions = questions[: run.limit] if run.limit else questions
    tables = run.tables
    if tables is None and run.source.model is not None:
        tables = sibling_tables_json(run.questions)
        if tables is not None:
            note(f"using {tables} for the schema (pass --tables to choose another)")
    databases = BenchmarkDatabases(run.db_dir, tables)
    db_paths = {db_id: databases.resolve(db_id) for db_id in dict.fromkeys(q.db_id for q in questions)}

    predictions: list[str] | None = None
    unscored = 0
    if run.predictions is not None:
        predictions = read_predictions(run.predictions)
        if len(predictions) > all_count:
            raise UserError(
                f"{run.predictions} has {len(predictions)} predictions for {all_count} questions",
                "one SQL per line, in the order of the questions (write an empty line for no answer)",
            )
        if len(predictions) < len(questions):  # answers for the first questions only: score those, say so
            unscored = len(questions) - len(predictions)
            questions = questions[: len(predictions)]
            note(
                f"{run.predictions} has predictions for the first {len(predictions)} of "
                f"{len(predictions) + unscored} questions: {unscored} without one are not scored"
            )
    source = run.source
    turns = fmt in INTERACTION_FORMATS
    if turns and run.predictions is not None and (run.rendering or run.earlier_sql):
        note(
            "--earlier-turns and --earlier-sql change what a model is given; --predictions are scored as they are"
        )
    record = run_record(
        fmt,
        run.config.timeout,
        predictions=run.predictions,
        model=source.model,
        merge_model=source.merge_model,
        config=run.config,
        engine=run.engine,
        endpoint=source.endpoint if source.model else None,
        served_model=source.served_model,
        rendering=(run.rendering or DEFAULT_RENDERING) if turns else None,
        earlier_sql=run.earlier_sql or "predicted",
    )
    store = ResultsFile(run.out, record, questions) if run.out else None
    records, pending = resume(questions, store)
    if store and records:
        note(f"resuming {run.out}: {len(records)} of {len(questions)} question(s) already scored")
    return Plan(
        run, fmt, questions, databases, db_paths, predictions, unscored, record, store, records, pending
    )


class Display(Protocol):
    """How a run shows its progress (eval_cmd draws it on stderr); each step a context manager
    that yields its callback."""

    def copying(self, engine: str) -> AbstractContextManager[Callable[[str], None]]:
        """While the databases are copied into `engine`: the callback hears each step."""
        ...

    def scoring(self, plan: Plan) -> AbstractContextManager[Callable[[dict], None]]:
        """While questions are scored: the callback hears each record as it is written."""
        ...


# How the caller loads a model: a context manager of a `pipeline.Pipeline` (eval_cmd shows it loading).
PipelineLoader = Callable[[ModelSource, AskConfig], AbstractContextManager[Any]]


def execute(plan: Plan, display: Display, load: PipelineLoader) -> float:
    """Score the plan's pending questions into `plan.records` (and its results file), predicting
    with the given SQL or with the model `load` gives (loaded only when there is work left);
    the seconds the scoring took. Scratch databases are dropped and the file closed at the end,
    Ctrl-C included (`plan.records` then holds what was scored)."""
    run = plan.run
    with contextlib.ExitStack() as stack:  # scratch PostgreSQL databases, dropped at the end
        if plan.store is not None:
            stack.callback(plan.store.close)  # last: after the databases
        with display.copying(run.engine) as step:
            copies = load_copies(
                run.engine, {q.db_id: plan.db_paths[q.db_id] for q in plan.pending}, stack, run.pg_url, step
            )
        if not plan.pending:
            return 0.0
        if plan.predictions is not None:
            return _score(plan, file_predictor(plan.predictions), copies, display)
        with load(run.source, run.config) as pipeline:
            predict = model_predictor(pipeline, plan.databases, run.rendering or DEFAULT_RENDERING)
            return _score(plan, predict, copies, display)


def _score(plan: Plan, predict: Predictor, copies: dict[str, EngineCopy], display: Display) -> float:
    with display.scoring(plan) as on_record:
        started = time.perf_counter()
        evaluate(
            plan.pending,
            plan.db_paths,
            predict,
            plan.fmt,
            plan.run.config.timeout,
            plan.record,
            records=plan.records,
            store=plan.store,
            copies=copies,
            on_record=on_record,
            concurrency=plan.run.concurrency,
            earlier_sql=plan.run.earlier_sql or "predicted",
        )
    return max(time.perf_counter() - started, 1e-9)
