"""`slmsql eval`: execution accuracy on Spider / BIRD style question files and SParC / CoSQL
interactions; `eval compare`: two runs side by side.

This module parses the options, calls `eval.run` (prepare, execute) and renders: the progress
bar, the summary table, the comparison.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from slmsql_cli.cli import options as opt
from slmsql_cli.cli.app import app, reflow
from slmsql_cli.cli.common import err, load_pipeline, out, user_errors
from slmsql_cli.config import AskConfig, ModelSource
from slmsql_cli.conversation import DEFAULT_RENDERING, RENDERINGS
from slmsql_cli.errors import UserError
from slmsql_cli.eval.run import DEFAULT_TIMEOUT, EARLIER_SQL, ENGINES

if TYPE_CHECKING:
    from rich.console import Console

    from slmsql_cli.eval.run import Plan

eval_app = typer.Typer()

PlotFile = typer.Option(
    None,
    "--plot",
    metavar="PNG",
    help="Chart EX overall and by difficulty (needs matplotlib).",
    rich_help_panel=opt.OUTPUT,
)


def _engine(value: str) -> str:
    if value not in ENGINES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(ENGINES)}")
    return value


def _one_of(names: tuple[str, ...]) -> Callable[[str | None], str | None]:
    def check(value: str | None) -> str | None:
        if value is not None and value not in names:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(names)}")
        return value

    return check


@user_errors
@opt.ask_options(skip=("timeout",))  # eval's --timeout is the queries' (BIRD's 30 s)
def eval_command(
    *,
    ctx: typer.Context,
    questions: Path | None = typer.Option(
        None,
        "--questions",
        "-q",
        metavar="FILE",
        help="Spider or BIRD dev.json (questions with gold SQL), or SParC/CoSQL's (interactions).",
        rich_help_panel=opt.DATA,
    ),
    db_dir: Path | None = typer.Option(
        None,
        "--db-dir",
        metavar="DIR",
        help="Folder of <db_id>/<db_id>.sqlite, or one database or data file.",
        rich_help_panel=opt.DATA,
    ),
    tables: Path | None = typer.Option(
        None,
        "--tables",
        metavar="FILE",
        help="tables.json for the prompts (default: the one next to --questions).",
        rich_help_panel=opt.DATA,
    ),
    fmt: str | None = typer.Option(
        None,
        "--format",
        metavar="NAME",
        help="spider (test-suite match), bird (set EX), sparc or cosql (follow-ups, each turn by "
        "Spider's rule); default: from the file.",
        rich_help_panel=opt.DATA,
    ),
    rendering: str | None = typer.Option(
        None,
        "--earlier-turns",
        callback=_one_of(RENDERINGS),
        metavar="HOW",
        show_default=False,
        help=f"sparc/cosql: a turn's earlier questions given to the model as {', '.join(RENDERINGS)} "
        f"(default {DEFAULT_RENDERING}; none asks each turn alone, evidence adds their SQL).",
        rich_help_panel=opt.DATA,
    ),
    earlier_sql: str | None = typer.Option(
        None,
        "--earlier-sql",
        callback=_one_of(EARLIER_SQL),
        metavar="WHOSE",
        show_default=False,
        help="With --earlier-turns evidence: the earlier turns' SQL is the model's own answers "
        "(predicted, default: what a user has) or the gold (gold: an upper bound).",
        rich_help_panel=opt.DATA,
    ),
    source: ModelSource,
    config: AskConfig,
    predictions: Path | None = typer.Option(
        None,
        "--predictions",
        "-p",
        metavar="FILE",
        help="Score given SQL instead: one per line in question order (per turn, in file order, "
        "for sparc/cosql), or BIRD's JSON; questions past the last one are not scored.",
        rich_help_panel=opt.MODEL,
    ),
    results: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        metavar="FILE",
        help="JSONL, one record per question; a rerun skips what is there.",
        rich_help_panel=opt.OUTPUT,
    ),
    limit: int | None = typer.Option(
        None,
        "--limit",
        callback=opt.bounded(1),
        metavar="K",
        help="Only the first K questions.",
        rich_help_panel=opt.DATA,
    ),
    timeout: float = typer.Option(
        DEFAULT_TIMEOUT,
        "--timeout",
        callback=opt.bounded(0.1),
        metavar="SECONDS",
        show_default=False,
        help="Seconds one gold or predicted query may run (default 30, as BIRD).",
        rich_help_panel=opt.PERFORMANCE,
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        metavar="",
        help="End with one JSON object: ex, correct, total, by_level (and interactions).",
        rich_help_panel=opt.OUTPUT,
    ),
    plot_file: Path | None = PlotFile,
    engine: str = typer.Option(
        "sqlite",
        "--engine",
        callback=_engine,
        metavar="NAME",
        show_default=False,
        help="Run the predictions on sqlite (default), duckdb or postgres: each database copied "
        "there, the SQL transpiled; the gold runs on SQLite.",
        rich_help_panel=opt.DATA,
    ),
    concurrency: int = typer.Option(
        1,
        "--concurrency",
        callback=opt.bounded(1, 256),
        metavar="K",
        show_default=False,
        help="Questions in flight at once, 1-256 (default 1; needs --endpoint: the server batches "
        "them). Resume and --out work as with 1.",
        rich_help_panel=opt.SERVER_ENGINE,
    ),
    pg_url: str | None = typer.Option(
        None,
        "--pg-url",
        envvar="SLMSQL_PG_URL",
        metavar="URL",
        help="PostgreSQL server for --engine postgres (a postgresql:// URL; password from "
        "PGPASSWORD or ~/.pgpass); scratch databases, dropped after.",
        rich_help_panel=opt.DATA,
    ),
) -> None:
    """Score a model (or given SQL) by execution accuracy, the way BIRD and Spider do.

    --format bird: a prediction is right when its set of rows equals the gold's. --format spider
    (test-suite execution match): rows compare as multisets, in order only when the gold has
    ORDER BY, columns in any order, DISTINCT ignored. All SQL runs read-only with a time limit.

    --format sparc|cosql (SParC/CoSQL files: interactions of follow-up questions): each turn is
    scored as a Spider question, after the interaction's earlier turns as --earlier-turns gives them;
    the summary adds accuracy by turn (1, 2, 3, 4+) and by interaction (every turn right). A turn
    whose gold SQL does not execute counts as wrong, as in every format, and is reported.

    Results go to --out as one JSON line per question; rerun the same command to resume after
    Ctrl-C. `slmsql eval compare A B` shows where two such files differ.

    Examples (tests/data holds a subset of BIRD, Spider and SParC dev):

      slmsql eval -q tests/data/bird_dev/dev.json \\
          --db-dir tests/data/bird_dev/dev_databases -m slm-sql-0.5b -o n8.jsonl
      slmsql eval -q spider/dev.json --db-dir spider/database -p pred.sql
      slmsql eval compare n1.jsonl n8.jsonl --plot n1_vs_n8.png
      slmsql eval -q dev.json --db-dir dbs/ -p gold.sql --engine duckdb
      slmsql eval -q tests/data/sparc_dev/dev.json --earlier-turns evidence \\
          --db-dir tests/data/spider_dev/database -m slm-sql-0.5b -o sparc.jsonl
    """
    from slmsql_cli.eval import chart
    from slmsql_cli.eval import results as result_files
    from slmsql_cli.eval import run as ev

    if ctx.invoked_subcommand is not None:  # `eval compare`: its own options, its own function
        return
    if questions is None or db_dir is None:
        raise UserError(
            "--questions and --db-dir are required",
            "e.g. slmsql eval -q dev.json --db-dir dev_databases --predictions pred.sql",
        )
    run = ev.EvalRun(
        questions,
        db_dir,
        fmt=fmt,
        tables=tables,
        predictions=predictions,
        source=source,
        config=replace(config, timeout=timeout),
        out=results,
        limit=limit,
        engine=engine,
        pg_url=pg_url,
        concurrency=concurrency,
        rendering=rendering,
        earlier_sql=earlier_sql,
    )
    plan = ev.prepare(run, note=lambda text: err.print(text, markup=False, highlight=False))
    try:
        seconds = ev.execute(plan, _Screen(), _load)
    except KeyboardInterrupt:
        err.print(
            f"[yellow]stopped after {len(plan.records)} of {len(plan.questions)} question(s)[/]"
            + (f"; rerun the same command to resume from {escape(str(results))}" if results else "")
        )
        _print_summary(result_files.summarize(plan.records, plan.fmt), plan.fmt, err)
        raise
    if plan.pending:
        n = len(plan.pending)
        err.print(
            f"throughput: {n} question(s) in {seconds:.1f}s, {60 * n / seconds:.2f} per minute, "
            f"{concurrency} in flight",
            highlight=False,
        )
    summary = result_files.summarize(plan.records, plan.fmt)
    _print_summary(summary, plan.fmt, err if as_json else out)
    if plot_file:
        label = result_files.run_label(plan.records, str(predictions or source.model))
        err.print(
            f"chart written to {chart.plot([(label, plan.records)], plot_file, plan.fmt)}", markup=False
        )
    if as_json:
        doc = {
            **summary,
            "format": plan.fmt,
            "out": str(results) if results else None,
            "unscored": plan.unscored,
        }
        sys.stdout.write(json.dumps(doc) + "\n")
    ev.check_gold_ran(plan.records)


eval_app.callback(invoke_without_command=True)(eval_command)
app.add_typer(eval_app, name="eval", help=reflow(eval_command.__doc__ or ""))


def _load(source: ModelSource, config: AskConfig) -> Any:
    """The model, loaded under eval's spinner (`common.load_pipeline`)."""
    return load_pipeline(source.model, source.merge_model, config)


class _Screen:
    """`eval.run.Display` on stderr: a spinner while databases are copied, then a progress bar
    with the EX so far."""

    @contextlib.contextmanager
    def copying(self, engine: str) -> Iterator[Callable[[str], None]]:
        with err.status(f"copying the databases into {engine}…") as status:
            yield lambda m: status.update(escape(m) + "…")

    @contextlib.contextmanager
    def scoring(self, plan: Plan) -> Iterator[Callable[[dict], None]]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        records = plan.records

        def ex_text() -> str:
            done = len(records)
            return (
                f"EX {100.0 * sum(bool(r['correct']) for r in records) / done:5.1f}%" if done else "EX   -  "
            )

        columns = (
            TextColumn("[bold]eval"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[ex]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err, transient=False) as progress:
            task = progress.add_task("eval", total=len(plan.questions), completed=len(records), ex=ex_text())
            yield lambda _record: progress.update(task, advance=1, ex=ex_text())


def _print_summary(summary: dict[str, Any], fmt: str, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    interactions = summary.get("interactions")
    label = "difficulty" if fmt == "bird" else "turn" if interactions else "hardness"
    table = Table(title=f"execution accuracy ({fmt})")
    table.add_column(label)
    for col in ("turns" if interactions else "questions", "correct", "EX %"):
        table.add_column(col, justify="right")
    for level, s in summary["by_level"].items():
        table.add_row(Text(str(level)), str(s["total"]), str(s["correct"]), f"{s['ex']:.2f}")
    table.add_row(
        "[bold]all", f"[bold]{summary['total']}", f"[bold]{summary['correct']}", f"[bold]{summary['ex']:.2f}"
    )
    if interactions:  # every turn right; the first column counts interactions here
        table.add_section()
        table.add_row(
            "[bold]interactions",
            f"[bold]{interactions['total']}",
            f"[bold]{interactions['correct']}",
            f"[bold]{interactions['ex']:.2f}",
        )
    console.print(table, soft_wrap=False)
    if interactions and interactions["partial"]:
        console.print(f"{interactions['partial']} interaction(s) with turns not scored are left out of it")
    if summary["gold_errors"]:
        console.print(
            f"[yellow]{summary['gold_errors']} gold query(ies) failed to execute and count as wrong[/]"
        )


@eval_app.command("compare")
@user_errors
def compare_command(
    a_file: Path = typer.Argument(..., metavar="A", show_default=False, help="One run's --out file."),
    b_file: Path = typer.Argument(..., metavar="B", show_default=False, help="The other's."),
    plot_file: Path | None = PlotFile,
    as_json: bool = typer.Option(
        False,
        "--json",
        metavar="",
        help="End with one JSON object: both runs' EX and every question that differs.",
        rich_help_panel=opt.OUTPUT,
    ),
) -> None:
    """Show where two `slmsql eval --out` files differ (no evaluation runs).

    EX overall and by difficulty side by side, on the questions both files scored; then each
    question one run got right and the other wrong, and how many questions only one of them scored.

    Example:

      slmsql eval compare n1.jsonl n8.jsonl --plot n1_vs_n8.png
    """
    from rich.table import Table
    from rich.text import Text

    from slmsql_cli.eval import chart
    from slmsql_cli.eval import results as ev

    files = (a_file, b_file)
    a, b = (ev.load_records(f) for f in files)
    fmt = next((r["run"].get("format") for r in a if isinstance(r.get("run"), dict)), None)
    result = ev.compare(a, b, fmt)
    names = [ev.run_label(a, files[0].name), ev.run_label(b, files[1].name)]
    console = err if as_json else out
    table = Table(title=f"a vs b on {result['common']} shared question(s)")  # the headers name the runs
    table.add_column("", no_wrap=True)
    for side, name in zip("ab", names):  # run labels are long file names: fold them, never cut them
        table.add_column(Text(f"{side}: {name}"), justify="right", overflow="fold")
    table.add_row("EX %", f"{result['a']['ex']:.2f}", f"{result['b']['ex']:.2f}")
    turns = "interactions" in result["a"]
    for level in dict.fromkeys([*result["a"]["by_level"], *result["b"]["by_level"]]):
        ea, eb = result["a"]["by_level"].get(level, {}), result["b"]["by_level"].get(level, {})
        name = f"  turn {level}" if turns else f"  {level}"
        table.add_row(Text(name), f"{ea.get('ex', 0):.2f}", f"{eb.get('ex', 0):.2f}")
    if turns:
        ia, ib = result["a"]["interactions"], result["b"]["interactions"]
        table.add_row(f"interactions % ({ia['total']})", f"{ia['ex']:.2f}", f"{ib['ex']:.2f}")
    table.add_row("right only here", str(result["only_a"]), str(result["only_b"]))
    console.print(table, soft_wrap=False)
    console.print(f"right in both: {result['both_correct']} · right in neither: {result['neither']}")
    if result["only_in_a"] or result["only_in_b"]:  # questions one run has and the other lacks
        console.print(
            f"not compared: {result['only_in_a']} question(s) scored only in a, "
            f"{result['only_in_b']} only in b"
        )
    for d in result["differ"][:20]:
        winner, loser = ("a", "b") if d["a_correct"] else ("b", "a")
        console.print(
            f"[dim]#{d['index']}[/] right in {winner}, wrong in {loser}: {escape(d['question'])}",
            highlight=False,
        )
    if len(result["differ"]) > 20:
        console.print(f"[dim]… {len(result['differ']) - 20} more (--json lists all)[/]")
    if plot_file:
        err.print(
            f"chart written to {chart.plot([(names[0], a), (names[1], b)], plot_file, fmt)}", markup=False
        )
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
