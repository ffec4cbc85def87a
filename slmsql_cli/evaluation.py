"""`slmsql eval`: execution accuracy the way BIRD and Spider define it.

Two metrics, because the benchmarks disagree and published numbers follow their own:

* **BIRD EX** (official `evaluation.py`, CSC-SQL, OmniSQL): correct when
  `set(pred_rows) == set(gold_rows)`. Row order and duplicate rows are ignored, column order
  counts (rows are tuples).
* **Spider execution match** (test-suite `exec_eval.py`, which OmniSQL's Spider numbers use):
  `DISTINCT` is removed from both queries; rows compare as multisets, in order only when the gold
  SQL contains `order by` (upstream tests the text, so a subquery's ORDER BY counts too); columns
  may come in any order (a permutation search, pruned and bounded here - see `spider_match`).
  Only the database itself is used: this is EX, not the test-suite (TS) metric over
  distilled database copies.

Every gold and predicted SQL runs through `targets.run_many` (read-only, time-limited), so a
prediction that tries to write scores 0 and changes nothing. Breakdowns: BIRD `difficulty`;
Spider hardness computed with the Spider evaluator's own rules from the parsed `sql` field of
Spider's dev.json. Question files without either (e.g. the Chinook questions) get no breakdown.

Results go to a JSONL file, one line per question, appended and flushed as each question
finishes; a rerun skips the questions already there, and an interrupted last line is dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmsql_cli.benchmark_data import BenchmarkDatabases, question_row
from slmsql_cli.errors import UserError
from slmsql_cli.executor import ExecResult
from slmsql_cli.schema import Schema
from slmsql_cli.targets import run_many
from slmsql_cli.targets.sqlite_target import SQLiteTarget
from slmsql_cli.vote import candidate_dicts

if TYPE_CHECKING:
    from slmsql_cli.targets import Target

FORMATS = ("spider", "bird")
ENGINES = ("sqlite", "duckdb", "postgres")  # where eval --engine runs the predictions
DEFAULT_TIMEOUT = 30.0  # BIRD's meta_time_out and CSC-SQL's eval timeout
EVAL_MAX_ROWS = 1_000_000  # the official evaluators fetch everything; this only guards memory
MAX_PERMUTATIONS = 10_000  # column permutations tried per comparison before giving up
LEVELS = {"bird": ["simple", "moderate", "challenging"], "spider": ["easy", "medium", "hard", "extra"]}


# --- questions, databases, predictions ---------------------------------------------------------


@dataclass
class Question:
    index: int  # position in the questions file: the resume key
    question: str
    gold: str
    db_id: str
    evidence: str = ""
    level: str | None = None  # BIRD difficulty / Spider hardness
    question_id: Any = None  # BIRD's question_id, when there is one


def detect_format(items: Sequence[dict]) -> str:
    """BIRD files carry the gold SQL under "SQL", Spider files under "query"."""
    return "bird" if items and "SQL" in items[0] else "spider"


def load_questions(path: Path, fmt: str | None = None) -> tuple[list[Question], str]:
    """Questions from a Spider (dev.json, Chinook questions.json) or BIRD (dev.json) file."""
    text = _read_text(path, "questions file", "pass Spider's or BIRD's dev.json with --questions")
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise UserError(
            f"cannot read questions file {path}: {exc}", "it must be a JSON list of questions"
        ) from None
    if items == []:
        raise UserError(f"{path} holds no questions", "pass Spider's or BIRD's dev.json with --questions")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise UserError(
            f"{path} is not a list of questions",
            'expected Spider/BIRD dev.json: [{"question": …, "db_id": …}, …]',
        )
    fmt = fmt or detect_format(items)
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}", "use --format spider or --format bird")
    gold_key = "SQL" if fmt == "bird" else "query"
    questions = []
    for i, item in enumerate(items):
        missing = [k for k in ("question", "db_id", gold_key) if k not in item]
        if missing:
            raise UserError(
                f"question {i} in {path} has no {', '.join(missing)}",
                f"--format {fmt} expects question, db_id and {gold_key}",
            )
        wrong = next((k for k in ("question", "db_id", gold_key) if not isinstance(item[k], str)), None)
        if wrong:
            raise UserError(
                f"question {i} in {path}: {wrong} is {item[wrong]!r}, not text",
                f"each question needs question, db_id and {gold_key} as JSON strings",
            )
        row = question_row(item, (gold_key,))
        if not row.question:
            raise UserError(f"question {i} in {path} is empty", "every question needs its text")
        level = item.get("difficulty") if fmt == "bird" else _spider_level(item.get("sql"))
        questions.append(
            Question(i, row.question, row.gold, row.db_id, row.evidence, level, item.get("question_id"))
        )
    return questions, fmt


def read_predictions(path: Path) -> list[str]:
    """One SQL per question, in question order: a text file with one SQL per line (Spider's
    `SQL<TAB>db_id` lines are fine), or BIRD's JSON {"0": "SQL\\t----- bird -----\\tdb_id", …}."""
    text = _read_text(path, "predictions file", "one SQL per line, in the order of the questions")
    if Path(path).suffix == ".json":
        bird = 'BIRD predictions are a JSON object {"0": "SQL\\t----- bird -----\\tdb_id", …} keyed by question number'
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UserError(f"cannot parse {path}: {exc}", bird) from None
        if isinstance(data, dict):
            bad = next((k for k in data if not k.strip().isdigit()), None)
            if bad is not None:
                raise UserError(f"{path}: the key {bad!r} is not a question number", bird)
            values = [data[k] for k in sorted(data, key=int)]
        elif isinstance(data, list):
            values = data
        else:
            raise UserError(f"{path} holds neither an object nor a list of predictions", bird)
        return [str(v).split("\t", 1)[0].strip() for v in values]
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.split("\t", 1)[0].strip() for line in lines]


def _read_text(path: Path, what: str, hint: str) -> str:
    """A UTF-8 text file's contents, or a UserError saying what is wrong with it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}", hint) from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder", hint) from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not text (it is not UTF-8)", hint) from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}", hint) from None


# --- metrics -----------------------------------------------------------------------------------


def bird_match(gold_rows: Sequence[tuple], pred_rows: Sequence[tuple]) -> bool:
    """BIRD EX: the same set of rows."""
    return set(pred_rows) == set(gold_rows)


def spider_match(gold_rows: Sequence[tuple], pred_rows: Sequence[tuple], order_matters: bool) -> bool:
    """Test-suite `result_eq`: equal as bags of rows (as lists if `order_matters`), up to a column permutation.

    Upstream prunes the permutation search with 20 random rows; pruning never changes the answer,
    only the work, so here every row prunes (deterministic) and at most MAX_PERMUTATIONS
    permutations are tried (upstream has no bound; only results with many columns holding
    identical value sets can reach it, and they then count as different).
    """
    gold, pred = list(gold_rows), list(pred_rows)
    if not gold and not pred:
        return True
    if len(gold) != len(pred):
        return False
    ncols = len(gold[0])
    if len(pred[0]) != ncols:
        return False
    if not _quick_rej(gold, pred, order_matters):
        return False
    gold_cols = [{row[i] for row in gold} for i in range(ncols)]
    pred_cols = [{row[j] for row in pred} for j in range(ncols)]
    allowed = [[j for j in range(ncols) if pred_cols[j] == gold_cols[i]] for i in range(ncols)]
    gold_set = set(gold)
    for tried, perm in enumerate(_permutations(allowed)):
        if tried >= MAX_PERMUTATIONS:
            return False
        permuted = pred if ncols == 1 else [tuple(row[j] for j in perm) for row in pred]
        if order_matters:
            if permuted == gold:
                return True
        elif set(permuted) == gold_set and Counter(permuted) == Counter(gold):
            return True
    return False


def _unorder_row(row: tuple) -> tuple:
    return tuple(sorted(row, key=lambda x: str(x) + str(type(x))))


def _quick_rej(gold: list[tuple], pred: list[tuple], order_matters: bool) -> bool:
    """Upstream's cheap necessary condition: the same rows once each row's values are sorted."""
    a, b = [_unorder_row(r) for r in gold], [_unorder_row(r) for r in pred]
    return a == b if order_matters else set(a) == set(b)


def _permutations(allowed: list[list[int]]) -> Iterator[tuple[int, ...]]:
    """Injective choices perm[i] in allowed[i], depth first."""
    n = len(allowed)
    perm: list[int] = []
    used: set[int] = set()

    def walk(i: int) -> Iterator[tuple[int, ...]]:
        if i == n:
            yield tuple(perm)
            return
        for j in allowed[i]:
            if j not in used:
                used.add(j)
                perm.append(j)
                yield from walk(i + 1)
                perm.pop()
                used.discard(j)

    return walk(0)


_DISTINCT = re.compile(r"\bdistinct\b", re.IGNORECASE)
_CUR_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.IGNORECASE)


def spider_sql(sql: str) -> str:
    """What the test-suite evaluator executes: `> =` fixed, current year plugged in, DISTINCT removed
    (outside string literals and quoted names)."""
    sql = sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")
    sql = _CUR_YEAR.sub("2020", sql)
    parts = re.split(r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\])""", sql)
    return "".join(p if i % 2 else _DISTINCT.sub("", p) for i, p in enumerate(parts))


def spider_order_matters(gold_sql: str) -> bool:
    return "order by" in spider_sql(gold_sql).lower()


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
        gold_rows, pred_rows = _rounded(gold_rows), _rounded(pred_rows)
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


FLOAT_DIGITS = 12  # significant digits compared when gold and prediction ran on different engines


def _rounded(rows: Sequence[tuple]) -> list[tuple]:
    """Rows with every float rounded to FLOAT_DIGITS significant digits: a sum of doubles differs
    in its last bits between engines (another summation order), which is not a different answer.
    Only `eval --engine duckdb|postgres` compares this way; SQLite against SQLite stays exact."""
    return [tuple(float(f"{v:.{FLOAT_DIGITS}g}") if isinstance(v, float) else v for v in row) for row in rows]


# --- Spider hardness (the Spider evaluator's rules, on dev.json's parsed "sql") ---------------

_WHERE_LIKE = 9  # WHERE_OPS.index('like')


def _spider_level(sql: dict | None) -> str | None:
    if not isinstance(sql, dict):
        return None
    try:
        return spider_hardness(sql)
    except (KeyError, TypeError, IndexError):
        return None


def spider_hardness(sql: dict) -> str:
    """`Evaluator.eval_hardness` from taoyds/spider evaluation.py, quirks included (a NOT and an
    AND/OR token in HAVING count as aggregations, as upstream's `has_agg` reads them)."""
    comp1, comp2, others = _count_component1(sql), len(_nested(sql)), _count_others(sql)
    if comp1 <= 1 and others == 0 and comp2 == 0:
        return "easy"
    if (others <= 2 and comp1 <= 1 and comp2 == 0) or (comp1 <= 2 and others < 2 and comp2 == 0):
        return "medium"
    if (
        (others > 2 and comp1 <= 2 and comp2 == 0)
        or (2 < comp1 <= 3 and others <= 2 and comp2 == 0)
        or (comp1 <= 1 and others == 0 and comp2 <= 1)
    ):
        return "hard"
    return "extra"


def _conds(sql: dict) -> list:
    return sql["from"]["conds"][::2] + sql["where"][::2] + sql["having"][::2]


def _nested(sql: dict) -> list[dict]:
    nested = [v for cond in _conds(sql) for v in (cond[3], cond[4]) if isinstance(v, dict)]
    return nested + [sql[k] for k in ("intersect", "except", "union") if sql[k] is not None]


def _count_agg(units: list) -> int:
    return sum(1 for unit in units if unit[0] != 0)  # AGG_OPS.index('none') == 0


def _count_component1(sql: dict) -> int:
    count = sum(
        [len(sql["where"]) > 0, len(sql["groupBy"]) > 0, len(sql["orderBy"]) > 0, sql["limit"] is not None]
    )
    if sql["from"]["table_units"]:
        count += len(sql["from"]["table_units"]) - 1
    connectives = sql["from"]["conds"][1::2] + sql["where"][1::2] + sql["having"][1::2]
    count += sum(1 for tok in connectives if tok == "or")
    count += sum(1 for cond in _conds(sql) if cond[1] == _WHERE_LIKE)
    return count


def _count_others(sql: dict) -> int:
    agg = _count_agg(sql["select"][1]) + _count_agg(sql["where"][::2]) + _count_agg(sql["groupBy"])
    if sql["orderBy"]:
        units = sql["orderBy"][1]
        agg += _count_agg([u[1] for u in units if u[1]] + [u[2] for u in units if u[2]])
    agg += _count_agg(sql["having"])
    return sum([agg > 1, len(sql["select"][1]) > 1, len(sql["where"]) > 1, len(sql["groupBy"]) > 1])


# --- running and recording ---------------------------------------------------------------------


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
    from slmsql_cli import sqlite_copy
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


class ResultsFile:
    """The resumable JSONL results: records already there are kept and skipped, new ones appended.

    Each record is one `os.write` of a complete line on an O_APPEND descriptor, so Ctrl-C leaves
    whole lines; a torn last line (a crash mid-write) is cut off when the file is reopened.
    """

    def __init__(self, path: Path, run: dict, questions: Sequence[Question]) -> None:
        self.path = Path(path)
        self.done: dict[int, dict] = {}
        if self.path.is_dir():
            raise UserError(f"--out {path} is a folder", "pass a file name, e.g. --out results.jsonl")
        if self.path.exists():
            self.done = self._load(run, questions)
        if self.path.parent.exists() and not self.path.parent.is_dir():
            raise UserError(
                f"--out {path}: {self.path.parent} is a file, not a folder", "pass a writable --out file"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise UserError(
                f"cannot write the results to {path}: {exc.strerror or exc}", "pass a writable --out file"
            ) from None

    def _load(self, run: dict, questions: Sequence[Question]) -> dict[int, dict]:
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        torn = data[len(whole) :]
        # Only a torn record of ours is cut off; any other file is refused before it is touched.
        not_ours = UserError(
            f"{self.path} is not a results file of slmsql eval",
            "pass a new --out file (slmsql does not overwrite other files)",
        )
        if torn and not (torn.startswith(b'{"index"') or b'{"index"'.startswith(torn)):
            raise not_ours
        try:
            text = whole.decode("utf-8")
        except UnicodeDecodeError:
            raise not_ours from None
        by_index = {q.index: q for q in questions}
        done: dict[int, dict] = {}
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                raise UserError(f"{self.path} line {n} is not JSON", "pass a fresh --out file") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("index"), int):
                raise not_ours
            if rec.get("run") != run:
                raise UserError(
                    f"{self.path} holds results of another run ({_describe_run(rec.get('run'))})",
                    "pass a new --out file, or the same options as that run to resume it",
                )
            q = by_index.get(rec["index"])
            if q is not None and q.question != rec.get("question"):
                raise UserError(
                    f"{self.path} belongs to another questions file (question {q.index} differs)",
                    "pass a new --out file",
                )
            done[rec["index"]] = rec
        if torn:
            with self.path.open("r+b") as fh:
                fh.truncate(len(whole))
        return done

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        os.write(self._fd, line)
        self.done[record["index"]] = record

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe_run(run: Any) -> str:
    if not isinstance(run, dict):
        return "unknown"
    return ", ".join(f"{k}={v}" for k, v in run.items() if v not in (None, "", False))


def load_records(path: Path) -> list[dict]:
    """The records of a results file (a torn last line is skipped)."""
    hint = "pass a file written by slmsql eval --out"
    lines = _read_text(path, "results file", hint).splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if n == len(lines):
                break
            raise UserError(f"{path} line {n} is not JSON", hint) from None
        if not isinstance(rec, dict) or not isinstance(rec.get("index"), int):
            raise UserError(f"{path} line {n} is not a result of slmsql eval", hint)
        records.append(rec)
    return records


# --- summaries, comparisons, charts ------------------------------------------------------------


def summarize(records: Sequence[dict], fmt: str | None = None) -> dict[str, Any]:
    """EX (percent), correct and total overall and per level, in the benchmark's level order."""
    correct = sum(1 for r in records if r.get("correct"))
    total = len(records)
    by_level: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        if r.get("level"):
            by_level[r["level"]][0] += bool(r.get("correct"))
            by_level[r["level"]][1] += 1
    order = LEVELS.get(fmt or "", [])
    levels = [lv for lv in order if lv in by_level] + sorted(lv for lv in by_level if lv not in order)
    latencies = [r["latency"] for r in records if isinstance(r.get("latency"), (int, float))]
    return {
        "ex": _pct(correct, total),
        "correct": correct,
        "total": total,
        "by_level": {
            lv: {"ex": _pct(*by_level[lv]), "correct": by_level[lv][0], "total": by_level[lv][1]}
            for lv in levels
        },
        "gold_errors": sum(1 for r in records if r.get("gold_error")),
        "seconds_per_question": round(sum(latencies) / len(latencies), 3) if latencies else None,
    }


def _pct(correct: int, total: int) -> float:
    return round(100.0 * correct / total, 2) if total else 0.0


def compare(a: Sequence[dict], b: Sequence[dict], fmt: str | None = None) -> dict[str, Any]:
    """Where two runs over the same questions differ, question by question (matched by index)."""
    ra, rb = {r["index"]: r for r in a}, {r["index"]: r for r in b}
    common = sorted(set(ra) & set(rb))
    outcome = Counter((bool(ra[i].get("correct")), bool(rb[i].get("correct"))) for i in common)
    differ = [
        {
            "index": i,
            "question": ra[i].get("question"),
            "a_correct": bool(ra[i].get("correct")),
            "b_correct": bool(rb[i].get("correct")),
            "a_pred": ra[i].get("pred"),
            "b_pred": rb[i].get("pred"),
            "gold": ra[i].get("gold"),
        }
        for i in common
        if bool(ra[i].get("correct")) != bool(rb[i].get("correct"))
    ]
    return {
        "common": len(common),
        "a": summarize([ra[i] for i in common], fmt),
        "b": summarize([rb[i] for i in common], fmt),
        "both_correct": outcome[(True, True)],
        "only_a": outcome[(True, False)],
        "only_b": outcome[(False, True)],
        "neither": outcome[(False, False)],
        "only_in_a": len(set(ra) - set(rb)),
        "only_in_b": len(set(rb) - set(ra)),
        "differ": differ,
    }


def run_label(records: Sequence[dict], fallback: str) -> str:
    run = records[0].get("run") if records else None
    if not isinstance(run, dict):
        return fallback
    if run.get("model"):
        return f"{Path(str(run['model'])).name} n={run.get('n')}" + ("" if run.get("merge") else " no-merge")
    return Path(str(run.get("predictions") or fallback)).name


def plot(runs: Sequence[tuple[str, Sequence[dict]]], path: Path, fmt: str | None = None) -> Path:
    """A PNG bar chart: EX overall and per level, one bar per run."""
    try:
        import matplotlib
    except ImportError:
        raise UserError(
            "--plot needs matplotlib, which is not installed",
            "pip install 'slmsql[train]' (the [train] extra includes matplotlib), or pip install matplotlib",
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = [(label, summarize(recs, fmt)) for label, recs in runs]
    levels = ["all"] + list(dict.fromkeys(lv for _, s in summaries for lv in s["by_level"]))
    width = 0.8 / max(1, len(summaries))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(levels) * max(1, len(summaries)) ** 0.5), 4))
    for k, (label, s) in enumerate(summaries):
        values = [s["ex"] if lv == "all" else s["by_level"].get(lv, {}).get("ex", 0.0) for lv in levels]
        xs = [i + (k - (len(summaries) - 1) / 2) * width for i in range(len(levels))]
        bars = ax.bar(xs, values, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    counts = [
        summaries[0][1]["total"] if lv == "all" else summaries[0][1]["by_level"].get(lv, {}).get("total", 0)
        for lv in levels
    ]
    ax.set_xticks(range(len(levels)), [f"{lv}\n({c})" for lv, c in zip(levels, counts)])
    ax.set_ylabel("execution accuracy (%)")
    ax.set_ylim(0, 118)
    ax.legend(fontsize=8, loc="upper center", ncol=min(3, len(summaries)), frameon=False)
    fig.tight_layout()
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")  # what matplotlib writes when the name has no extension
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    except (OSError, ValueError) as exc:  # ValueError: a format matplotlib cannot write (.xyz)
        raise UserError(
            f"cannot write the chart to {path}: {getattr(exc, 'strerror', None) or exc}",
            "pass a writable file name ending in .png (or .svg, .pdf) to --plot",
        ) from None
    finally:
        plt.close(fig)
    return path
