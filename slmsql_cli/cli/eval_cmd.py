"""`slmsql eval`: execution accuracy on Spider / BIRD style question files."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from slmsql_cli.benchmark_data import BenchmarkDatabases, sibling_tables_json
from slmsql_cli.cli.app import app
from slmsql_cli.cli import options as opt
from slmsql_cli.cli.common import err, load_pipeline, out, user_errors
from slmsql_cli.errors import UserError
from slmsql_cli.eval.run import ENGINES

if TYPE_CHECKING:
    from rich.console import Console


def _engine(value: str) -> str:
    if value not in ENGINES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(ENGINES)}")
    return value


@app.command("eval")
@user_errors
def eval_command(
    ctx: typer.Context,
    questions: Path | None = typer.Option(
        None,
        "--questions",
        "-q",
        metavar="FILE",
        help="Spider or BIRD dev.json (questions with gold SQL).",
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
        metavar="spider|bird",
        help="Spider's test-suite match or BIRD's set EX (default: from the file).",
        rich_help_panel=opt.DATA,
    ),
    model: opt.Model = None,
    n: opt.Samples = opt.DEFAULTS.n,
    merge_model: opt.MergeModel = None,
    no_merge: opt.NoMerge = False,
    merge_n: opt.MergeSamples = opt.DEFAULTS.merge_n,
    temperature: opt.Temperature = opt.DEFAULTS.temperature,
    max_tokens: opt.MaxTokens = opt.DEFAULTS.max_tokens,
    seed: opt.Seed = opt.DEFAULTS.seed,
    threads: opt.Threads = None,
    gpu_layers: opt.GpuLayers = None,
    no_values: opt.NoValues = False,
    no_prompt_cache: opt.NoPromptCache = False,
    endpoint: opt.Endpoint = None,
    served_model: opt.ServedModel = None,
    merge_endpoint: opt.MergeEndpoint = None,
    merge_served_model: opt.MergeServedModel = None,
    endpoint_timeout: opt.EndpointTimeout = None,
    context: opt.Context = None,
    prompt_budget: opt.PromptBudget = opt.DEFAULTS.prompt_budget,
    predictions: Path | None = typer.Option(
        None,
        "--predictions",
        "-p",
        metavar="FILE",
        help="Score given SQL instead: one per line in question order, or BIRD's JSON; "
        "questions past the last one are not scored.",
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
        30.0,
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
        help="End with one JSON object: ex, correct, total, by_level.",
        rich_help_panel=opt.OUTPUT,
    ),
    compare_files: tuple[Path, Path] | None = typer.Option(
        None,
        "--compare",
        metavar="A B",
        help="Show where two --out files differ (no evaluation runs).",
        rich_help_panel=opt.OUTPUT,
    ),
    plot_file: Path | None = typer.Option(
        None,
        "--plot",
        metavar="PNG",
        help="Chart EX overall and by difficulty (needs matplotlib).",
        rich_help_panel=opt.OUTPUT,
    ),
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
        min=1,
        max=256,
        metavar="K",
        help="Questions in flight at once (needs --endpoint: the server batches them). Resume and --out work as with 1.",
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

    --format bird: a prediction is right when its set of rows equals the gold's. --format spider (test-suite execution match): rows compare as multisets, in order only when the gold has ORDER BY, columns in any order, DISTINCT ignored. All SQL runs read-only with a time limit.

    Results go to --out as one JSON line per question; rerun the same command to resume after Ctrl-C.

    Examples (tests/data holds a subset of BIRD and Spider dev):

      slmsql eval -q tests/data/bird_dev/dev.json \\
          --db-dir tests/data/bird_dev/dev_databases -m slm-sql-0.5b -o n8.jsonl
      slmsql eval -q spider/dev.json --db-dir spider/database -p pred.sql
      slmsql eval --compare n1.jsonl n8.jsonl --plot n1_vs_n8.png
      slmsql eval -q dev.json --db-dir dbs/ -p gold.sql --engine duckdb
    """
    from slmsql_cli.eval import chart
    from slmsql_cli.eval import questions as question_files
    from slmsql_cli.eval import results as result_files
    from slmsql_cli.eval import run as ev

    if compare_files:
        _compare(compare_files, plot_file, as_json)
        return
    if questions is None or db_dir is None:
        raise UserError(
            "--questions and --db-dir are required",
            "e.g. slmsql eval -q dev.json --db-dir dev_databases --predictions pred.sql",
        )
    if (model is None) == (predictions is None):
        raise UserError(
            "pass either --model (run a model) or --predictions (score given SQL)",
            "--predictions takes one SQL per line, in the order of the questions",
        )
    if concurrency > 1 and not (model is not None and endpoint):
        raise UserError(
            "--concurrency above 1 needs a model served with --endpoint",
            "the in-process model answers one question at a time; serve it (vLLM, llama-server) and pass --endpoint URL",
        )
    if not db_dir.exists():
        raise UserError(
            f"database folder not found: {db_dir}", "pass the folder holding <db_id>/<db_id>.sqlite"
        )
    qs, fmt = question_files.load_questions(questions, fmt)
    all_count = len(qs)
    qs = qs[:limit] if limit else qs
    tables = tables or (_sibling_tables(questions) if model is not None else None)
    databases = BenchmarkDatabases(db_dir, tables)
    db_paths = {db_id: databases.resolve(db_id) for db_id in dict.fromkeys(q.db_id for q in qs)}

    preds: list[str] | None = None
    unscored = 0
    if predictions is not None:
        preds = question_files.read_predictions(predictions)
        if len(preds) > all_count:
            raise UserError(
                f"{predictions} has {len(preds)} predictions for {all_count} questions",
                "one SQL per line, in the order of the questions (write an empty line for no answer)",
            )
        if len(preds) < len(qs):  # answers for the first questions only: score those, say so
            unscored = len(qs) - len(preds)
            qs = qs[: len(preds)]
            err.print(
                f"{predictions} has predictions for the first {len(preds)} of {len(preds) + unscored} "
                f"questions: {unscored} without one are not scored",
                markup=False,
                highlight=False,
            )
    config = opt.ask_config(ctx.params)
    run = ev.run_record(
        fmt,
        timeout,
        predictions=predictions,
        model=model,
        merge_model=merge_model,
        config=config,
        engine=engine,
        endpoint=endpoint if model else None,
        served_model=served_model,
    )
    store = result_files.ResultsFile(results, run, qs) if results else None
    records, pending = ev.resume(qs, store)
    if store and records:
        err.print(f"resuming {results}: {len(records)} of {len(qs)} question(s) already scored", markup=False)
    stack = contextlib.ExitStack()  # scratch PostgreSQL databases, dropped at the end
    try:
        with err.status(f"copying the databases into {engine}…") as status:
            copies = ev.load_copies(
                engine,
                {q.db_id: db_paths[q.db_id] for q in pending},
                stack,
                pg_url,
                progress=lambda m: status.update(escape(m) + "…"),
            )
        if pending and preds is not None:
            _run(
                pending,
                records,
                db_paths,
                ev.file_predictor(preds),
                fmt,
                timeout,
                run,
                store,
                len(qs),
                copies,
                concurrency,
            )
        elif pending:  # the model is loaded only when there is work left
            with load_pipeline(model, merge_model, config) as pipeline:
                predict = ev.model_predictor(pipeline, databases)
                _run(
                    pending,
                    records,
                    db_paths,
                    predict,
                    fmt,
                    timeout,
                    run,
                    store,
                    len(qs),
                    copies,
                    concurrency,
                )
    except KeyboardInterrupt:
        err.print(
            f"[yellow]stopped after {len(records)} of {len(qs)} question(s)[/]"
            + (f"; rerun the same command to resume from {escape(str(results))}" if results else "")
        )
        _print_summary(result_files.summarize(records, fmt), fmt, err)
        raise
    finally:
        stack.close()
        if store:
            store.close()

    summary = result_files.summarize(records, fmt)
    _print_summary(summary, fmt, err if as_json else out)
    if plot_file:
        label = result_files.run_label(records, str(predictions or model))
        err.print(f"chart written to {chart.plot([(label, records)], plot_file, fmt)}", markup=False)
    if as_json:
        doc = {**summary, "format": fmt, "out": str(results) if results else None, "unscored": unscored}
        sys.stdout.write(json.dumps(doc) + "\n")
    ev.check_gold_ran(records)


def _sibling_tables(questions: Path) -> Path | None:
    found = sibling_tables_json(questions)
    if found is not None:
        err.print(f"using {found} for the schema (pass --tables to choose another)", markup=False)
    return found


def _run(pending, records, db_paths, predict, fmt, timeout, run, store, total, copies, concurrency=1):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from slmsql_cli.eval.run import evaluate

    def ex_text() -> str:
        done = len(records)
        return f"EX {100.0 * sum(bool(r['correct']) for r in records) / done:5.1f}%" if done else "EX   -  "

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
        task = progress.add_task("eval", total=total, completed=len(records), ex=ex_text())
        started = time.perf_counter()
        evaluate(
            pending,
            db_paths,
            predict,
            fmt,
            timeout,
            run,
            records=records,
            store=store,
            copies=copies,
            on_record=lambda _record: progress.update(task, advance=1, ex=ex_text()),
            concurrency=concurrency,
        )
    seconds = max(time.perf_counter() - started, 1e-9)
    err.print(
        f"throughput: {len(pending)} question(s) in {seconds:.1f}s, {60 * len(pending) / seconds:.2f} "
        f"per minute, {concurrency} in flight",
        highlight=False,
    )


def _print_summary(summary: dict[str, Any], fmt: str, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    label = "difficulty" if fmt == "bird" else "hardness"
    table = Table(title=f"execution accuracy ({fmt})")
    table.add_column(label)
    for col in ("questions", "correct", "EX %"):
        table.add_column(col, justify="right")
    for level, s in summary["by_level"].items():
        table.add_row(Text(str(level)), str(s["total"]), str(s["correct"]), f"{s['ex']:.2f}")
    table.add_row(
        "[bold]all", f"[bold]{summary['total']}", f"[bold]{summary['correct']}", f"[bold]{summary['ex']:.2f}"
    )
    console.print(table, soft_wrap=False)
    if summary["gold_errors"]:
        console.print(
            f"[yellow]{summary['gold_errors']} gold query(ies) failed to execute and count as wrong[/]"
        )


def _compare(files: tuple[Path, Path], plot_file: Path | None, as_json: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    from slmsql_cli.eval import chart
    from slmsql_cli.eval import results as ev

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
    for level in dict.fromkeys([*result["a"]["by_level"], *result["b"]["by_level"]]):
        ea, eb = result["a"]["by_level"].get(level, {}), result["b"]["by_level"].get(level, {})
        table.add_row(Text(f"  {level}"), f"{ea.get('ex', 0):.2f}", f"{eb.get('ex', 0):.2f}")
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
