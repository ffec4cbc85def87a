"""Training data: four sources, one `Example` shape, and a count of every row left out.

* **think** - SynSQL-Think-style rows: a prompt and a `<think>…</think><answer>SQL</answer>`
  target (columns `prompt`/`input_seq` and `completion`/`output_seq`, or chat `messages`), from a
  local JSON/JSONL/parquet/CSV file or the Hub (`datasets`).
* **spider** - Spider/BIRD rows: `question`, gold SQL (`query`/`SQL`), `db_id`, optional
  `evidence`, with `--db-dir` (and `--tables`). The prompt comes from the same builder `ask` uses
  (`prompt_builder.generation_message`), counted with the training tokenizer under the run's chat
  template: a schema over `prompt_budget` is cut to the question's tables exactly as `ask` cuts
  it, so a model is trained on the text it will see.
* **candidates** - merge-revision rows: Spider/BIRD columns plus `candidates`, SQL drafts sampled
  by a generation model (`python -m slmsql_cli.training.sample` writes them). The drafts are executed and
  voted on as `ask` does; the two largest disagreeing groups go into `ask`'s merge prompt and the
  gold SQL is the target. As in CSC-SQL's training mode, when neither draft is right the gold SQL
  takes one of the two slots at random.
* **sparc** - SParC/CoSQL interactions (`database_id`, `interaction: [{utterance, query}]`), with
  `--db-dir`: each turn is an example whose prompt is the one `ask`/`chat` send for that turn as a
  follow-up (`prompt_builder.generation_message` with the earlier turns, in `rendering`, cut to
  the budget as `ask` cuts it). The earlier turns carry their gold SQL, the conversation as it
  should have gone; at `eval` and in `chat` they carry the model's own answers (`eval
  --earlier-sql` measures the difference). Turns come as `data`, or as `followup_data` mixed with
  `data`'s single questions, each turn drawn `followup_weight` times on average.

A bad row (missing database, gold SQL that does not parse or run, a prompt over the length limit)
is counted and skipped, never fatal: a long run does not die on row 80,000. Reading the rows from
a file or the Hub, and telling the format from their columns, is records.py's.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmsql_cli import prompt_builder
from slmsql_cli.benchmark_data import (
    BenchmarkDatabases,
    QuestionRow,
    find_database,
    first_value,
    interaction_rows,
    question_row,
    sibling_tables_json,
)
from slmsql_cli.conversation import Turn
from slmsql_cli.database import check_question
from slmsql_cli.errors import UserError
from slmsql_cli.extract import extract_sql
from slmsql_cli.prompts import SYSTEM_PROMPT
from slmsql_cli.training.config import TrainConfig
from slmsql_cli.training.records import (
    CHAT_COLUMNS,
    PROMPT_COLUMNS,
    TARGET_COLUMNS,
    detect_format,
    read_records,
)


@dataclass
class Example:
    """One training row, before the chat template: the user message and what the model should answer."""

    prompt: str
    target: str  # "<think>…</think>\n<answer>\nSQL\n</answer>"
    db_path: str = ""  # for GRPO's execution rewards
    gold_sql: str = ""
    system: str = SYSTEM_PROMPT


@dataclass
class DataReport:
    """How many rows came in, how many are kept, and why the others were skipped."""

    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return self.rows - sum(self.skipped.values())

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def summary(self) -> str:
        lines = [f"{self.kept} of {self.rows} rows kept"]
        lines += [f"  skipped {n}: {reason}" for reason, n in self.skipped.most_common()]
        return "\n".join(lines)


def answer_target(sql: str, reasoning: str = "") -> str:
    """A target in the format of the system prompt; Spider/BIRD rows have no reasoning, so the thought is empty."""
    return f"<think>\n{reasoning.strip()}\n</think>\n<answer>\n{sql.strip()}\n</answer>"


# ---- think rows ------------------------------------------------------------------------------


def think_examples(records: list[dict[str, Any]], cfg: TrainConfig, report: DataReport) -> Iterator[Example]:
    """SynSQL-Think-style rows; with `db_id` and --db-dir they can also feed GRPO."""
    db_dir = Path(cfg.db_dir).expanduser() if cfg.db_dir else None
    for row in records:
        report.rows += 1
        system, prompt, target = _think_fields(row)
        if not prompt or not target:
            report.skip("empty prompt or target")
            continue
        sql = extract_sql(target)
        if sql is None or "<answer>" not in target:
            report.skip("target has no <answer>SQL</answer>")
            continue
        db_path = ""
        if db_dir is not None and row.get("db_id"):
            found = find_database(db_dir, str(row["db_id"]))
            if found is None:
                report.skip("database not found")
                continue
            db_path = str(found)
        yield Example(prompt, target, db_path, sql, system or SYSTEM_PROMPT)


def _think_fields(row: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    chat = first_value(row, CHAT_COLUMNS)
    if isinstance(chat, list):
        messages = [
            {"role": m.get("role", m.get("from")), "content": m.get("content", m.get("value"))} for m in chat
        ]
        role = {"human": "user", "gpt": "assistant"}
        by_role: dict[str, str] = {}
        for m in messages:
            by_role.setdefault(role.get(m["role"], m["role"]), m["content"])
        return by_role.get("system"), by_role.get("user"), by_role.get("assistant")
    prompt, target = first_value(row, PROMPT_COLUMNS), first_value(row, TARGET_COLUMNS)
    if isinstance(prompt, list):  # conversational prompt-completion
        by_role = {m["role"]: m["content"] for m in prompt}
        prompt_text, system = by_role.get("user"), by_role.get("system")
        target_text = target[-1]["content"] if isinstance(target, list) and target else target
        return system, prompt_text, target_text
    return row.get("system"), prompt, target


# ---- Spider / BIRD rows ----------------------------------------------------------------------


def find_tables_json(cfg: TrainConfig) -> Path | None:
    """--tables, else the tables.json beside the data file (`benchmark_data.sibling_tables_json`)."""
    if cfg.tables:
        path = Path(cfg.tables).expanduser()
        if not path.is_file():
            raise UserError(
                f"tables file not found: {path}", "pass the Spider/BIRD tables.json with --tables"
            )
        return path
    data = Path(cfg.data).expanduser()
    single_db = cfg.db_dir is not None and Path(cfg.db_dir).expanduser().is_file()  # describes itself
    return sibling_tables_json(data) if data.is_file() and not single_db else None


def check_gold(sql: str) -> str | None:
    """Why a gold SQL cannot be trained on (does not parse, not one query), or None."""
    import sqlglot
    from sqlglot.errors import SqlglotError

    from slmsql_cli.targets.sqlcheck import check_sql

    try:
        sqlglot.parse(sql, read="sqlite")
    except SqlglotError:
        return "gold SQL does not parse"
    return "gold SQL is not one query" if check_sql(sql) else None


class Databases:
    """The benchmark's databases, each opened once; remembers which ones failed and why."""

    def __init__(self, cfg: TrainConfig, report: DataReport) -> None:
        if not cfg.db_dir:
            raise UserError(
                "Spider/BIRD-style data needs the databases",
                "pass --db-dir (the folder with <db_id>/<db_id>.sqlite, or one .sqlite file)",
            )
        db_dir = Path(cfg.db_dir).expanduser()
        if not db_dir.exists():
            raise UserError(f"database folder not found: {db_dir}", "pass --db-dir")
        tables = find_tables_json(cfg)
        note = f"using the schema names in {tables}"
        if tables is not None and not cfg.tables and note not in report.notes:
            report.notes.append(note)
        self.databases = BenchmarkDatabases(db_dir, tables)
        self.cache: dict[str, Any] = {}

    def open(self, db_id: str) -> Any:
        """A Database, or the reason (str) it cannot be used."""
        if db_id not in self.cache:
            if self.databases.path(db_id) is None:
                self.cache[db_id] = "database not found"
            else:
                try:
                    self.cache[db_id] = self.databases.open(db_id)
                except UserError as exc:
                    self.cache[db_id] = "database unusable: " + exc.message.split(":")[0]
        return self.cache[db_id]


def _usable_row(
    row: dict[str, Any], dbs: Databases, report: DataReport, ok: bool = True
) -> tuple[str, str, str, Any] | None:
    """(question, evidence, gold SQL, Database) of a question row, or None after counting why it is skipped."""
    return _usable(question_row(row), dbs, report, ok)


def _usable(
    fields: QuestionRow, dbs: Databases, report: DataReport, ok: bool = True
) -> tuple[str, str, str, Any] | None:
    report.rows += 1
    if not fields.question or not fields.gold or not ok:
        report.skip("empty question, gold SQL or candidates" if not ok else "empty question or gold SQL")
        return None
    try:
        check_question(fields.question, fields.evidence)  # once, here: the prompt builder does not
    except UserError as exc:
        report.skip(exc.message)
        return None
    problem = check_gold(fields.gold)
    if problem:
        report.skip(problem)
        return None
    db = dbs.open(fields.db_id)
    if isinstance(db, str):
        report.skip(db)
        return None
    return fields.question, fields.evidence, fields.gold, db


def spider_examples(
    records: list[dict[str, Any]],
    cfg: TrainConfig,
    report: DataReport,
    counter: prompt_builder.TokenCounter | None = None,
) -> Iterator[Example]:
    """Spider/BIRD rows with `ask`'s generation prompt; the target is the gold SQL with an empty thought.

    `counter` counts as the model will (`ChatFormat.counter`: the training tokenizer under the
    run's chat template), so a schema over `cfg.prompt_budget` is cut to the question's tables as
    `ask` cuts it (with a context that holds the budget and the answer, the usual case). Without
    one the whole schema: for looking at data only, `train` always passes its tokenizer's."""
    dbs = Databases(cfg, report)
    budget = prompt_builder.Budget(cfg.prompt_budget)
    for row in records:
        usable = _usable_row(row, dbs, report)
        if usable is None:
            continue
        question, evidence, gold, db = usable
        matched = prompt_builder.matched_values(db, question, evidence, use_values=cfg.use_values)
        try:
            built = prompt_builder.generation_message(
                db, question, evidence, matched=matched, counter=counter, budget=budget
            )
        except prompt_builder.OverBudget:
            report.skip(f"prompt over prompt_budget ({cfg.prompt_budget} tokens) even with one table")
            continue
        yield Example(built.text, answer_target(gold), str(db.file), gold)


# ---- SParC / CoSQL interactions ----------------------------------------------------------------


def turn_examples(
    records: list[dict[str, Any]],
    cfg: TrainConfig,
    report: DataReport,
    counter: prompt_builder.TokenCounter | None = None,
) -> Iterator[Example]:
    """One example per turn of each interaction, its prompt the follow-up prompt `ask` builds for it
    (`Pipeline.matched_values` and `generation_message` with the earlier turns, in `cfg.rendering`:
    the values its earlier questions name too, and as many earlier turns as fit the budget, the
    oldest dropped first). The earlier turns carry their gold SQL; a skipped turn still counts as
    one, so that the turns after it read the conversation as it was."""
    dbs = Databases(cfg, report)
    budget = prompt_builder.Budget(cfg.prompt_budget)
    for row in records:
        earlier: list[Turn] = []
        for turn in interaction_rows(row):
            usable = _usable(turn, dbs, report)
            if usable is not None:
                question, evidence, gold, db = usable
                text = prompt_builder.context_text(question, evidence, earlier, cfg.rendering)
                matched = prompt_builder.matched_values(db, *text, use_values=cfg.use_values)
                try:
                    built = prompt_builder.generation_message(
                        db,
                        question,
                        evidence,
                        matched=matched,
                        counter=counter,
                        budget=budget,
                        turns=earlier,
                        rendering=cfg.rendering,
                    )
                except prompt_builder.OverBudget:
                    report.skip(f"prompt over prompt_budget ({cfg.prompt_budget} tokens) even with one table")
                else:
                    yield Example(built.text, answer_target(gold), str(db.file), gold)
            if turn.question:
                earlier.append(Turn(turn.question, turn.gold or None))


def mix(singles: list[Example], turns: list[Example], cfg: TrainConfig, report: DataReport) -> list[Example]:
    """Single questions and follow-up turns in one list: every single question once, each turn
    `cfg.followup_weight` times on average (whole copies for the integer part, a seeded sample of
    the turns for the rest), shuffled together when `cfg.shuffle`."""
    rng = random.Random(cfg.seed)
    whole, part = divmod(cfg.followup_weight, 1)
    drawn = turns * int(whole) + rng.sample(turns, round(part * len(turns)))
    if singles and turns:
        report.notes.append(
            f"mixed {len(singles)} single question(s) with {len(drawn)} follow-up turn example(s) "
            f"({len(turns)} turns, followup_weight {cfg.followup_weight:g})"
        )
    examples = singles + drawn
    if cfg.shuffle:
        rng.shuffle(examples)
    return examples


# ---- merge-revision rows ---------------------------------------------------------------------


def candidate_examples(
    records: list[dict[str, Any]], cfg: TrainConfig, report: DataReport
) -> Iterator[Example]:
    """Merge-revision rows from sampled drafts: vote, take the top two disagreeing groups, target the gold SQL."""
    from slmsql_cli.merge import merge_message, needs_merge
    from slmsql_cli.vote import Candidate, Group, vote

    dbs = Databases(cfg, report)
    rng = random.Random(cfg.seed)
    for row in records:
        drafts = row.get("candidates")
        usable = _usable_row(row, dbs, report, ok=isinstance(drafts, list))
        if usable is None:
            continue
        assert isinstance(drafts, list)  # _usable_row refused the row otherwise
        question, evidence, gold, db = usable
        gold_result = db.run(gold, timeout=cfg.exec_timeout)
        if not gold_result.ok:
            report.skip("gold SQL fails to execute")
            continue
        texts = [str(d) for d in drafts if d]
        sqls = [extract_sql(t) if "<answer>" in t or "```" in t else t for t in texts]
        results = db.run_many(sqls, timeout=cfg.exec_timeout)
        groups = vote([Candidate(t, s, r) for t, s, r in zip(texts, sqls, results)])
        if not needs_merge(groups):
            report.skip("no two disagreeing drafts (nothing to merge)")
            continue
        top2 = list(groups[:2])
        if all(g.result.key() != gold_result.key() for g in top2):
            top2[rng.randrange(2)] = Group(sql=gold, result=gold_result, members=[])
        matched = prompt_builder.matched_values(db, question, evidence, use_values=cfg.use_values)
        details = prompt_builder.schema_block(db, matched)
        prompt = merge_message(details, db.schema, question, evidence, top2)
        yield Example(prompt, answer_target(gold), str(db.file), gold)


# ---- entry point -----------------------------------------------------------------------------


def check_inputs(cfg: TrainConfig, fmt: str) -> None:
    """What the data format needs from the command line, checked before any model loads."""
    if fmt in ("spider", "candidates", "sparc") or cfg.followup_data:
        if not cfg.db_dir:
            raise UserError(
                f"{fmt} data needs the databases",
                "pass --db-dir (the folder with <db_id>/<db_id>.sqlite, or one .sqlite file)",
            )
        if not Path(cfg.db_dir).expanduser().exists():
            raise UserError(f"database folder not found: {cfg.db_dir}", "pass --db-dir")
    if cfg.task == "merge" and (fmt in ("spider", "sparc") or cfg.followup_data):
        raise UserError(
            "merge training needs sampled drafts (a `candidates` column)",
            "sample them with `python -m slmsql_cli.training.sample --model <generation model> --data ... --out candidates.jsonl`",
        )
    if cfg.stage == "grpo" and fmt == "think" and not cfg.db_dir:
        raise UserError(
            "GRPO rewards execute SQL: think-style rows need a `db_id` column and --db-dir",
            "or train GRPO on Spider/BIRD-style data (question, SQL, db_id)",
        )


def load_examples(
    cfg: TrainConfig,
    records: list[dict[str, Any]] | None = None,
    counter: prompt_builder.TokenCounter | None = None,
) -> tuple[list[Example], DataReport, str]:
    """Read, recognise and convert the data of `cfg`: (examples, report, format). `counter`: how the
    model counts tokens, for Spider/BIRD prompts over the budget (`spider_examples`). With
    `cfg.followup_data`, its turns are mixed in (`mix`; `followup_weight` weighs turns against
    single questions, so SParC/CoSQL rows as `data` are used once each); the format returned is
    `data`'s."""
    records = read_records(cfg.data, cfg.data_split) if records is None else records
    if not records:
        raise UserError(f"no rows in {cfg.data}")
    fmt = detect_format(records[0].keys(), cfg.data_format)
    check_inputs(cfg, fmt)
    followups = followup_records(cfg)
    report = DataReport()
    if fmt == "sparc":
        examples = list(turn_examples(_sampled(records, cfg), cfg, report, counter))
    elif fmt == "spider":
        examples = list(spider_examples(_sampled(records, cfg), cfg, report, counter))
    else:
        loader = {"think": think_examples, "candidates": candidate_examples}[fmt]
        examples = list(loader(_sampled(records, cfg), cfg, report))
    if followups:
        turns = list(turn_examples(_sampled(followups, cfg), cfg, report, counter))
        examples = mix(examples, turns, cfg, report)
    return examples, report, fmt


def followup_records(cfg: TrainConfig) -> list[dict[str, Any]]:
    """The interactions of `cfg.followup_data` ([] without it), checked to be SParC/CoSQL rows."""
    if not cfg.followup_data:
        return []
    rows = read_records(cfg.followup_data, cfg.data_split)
    if not rows:
        raise UserError(f"no rows in {cfg.followup_data}")
    if detect_format(rows[0].keys()) != "sparc":
        raise UserError(
            f"followup_data {cfg.followup_data} does not hold SParC/CoSQL interactions",
            "pass a file of [{database_id, interaction: [{utterance, query}, …]}, …]",
        )
    return rows


def _sampled(records: list[dict[str, Any]], cfg: TrainConfig) -> list[dict[str, Any]]:
    """The rows used: shuffled (seeded) when `cfg.shuffle`, then the first `cfg.max_samples`."""
    if cfg.shuffle:
        records = list(records)
        random.Random(cfg.seed).shuffle(records)
    return records[: cfg.max_samples] if cfg.max_samples is not None else records
