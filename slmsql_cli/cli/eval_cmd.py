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

from quantize import cached_gguf
from slmsql_cli.benchmark_data import BenchmarkDatabases, sibling_tables_json
from slmsql_cli.cli import app
from slmsql_cli.cli import options as opt
from slmsql_cli.cli.common import err, out, user_errors
from slmsql_cli.errors import UserError
from slmsql_cli.evaluation import ENGINES

if TYPE_CHECKING:
    from rich.console import Console

    from slmsql_cli.pipeline import AskConfig, Pipeline


def _engine(value: str) -> str:
    if value not in ENGINES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(ENGINES)}")
    return value


@app.command("eval")
@user_errors
def eval_command(
    ctx: typer.Context,
    questions: Path | None = typer.Option(
        None, "--questions", "-q", help="Spider or BIRD dev.json (a JSON list of questions with gold SQL)."
    ),
    db_dir: Path | None = typer.Option(
        None,
        "--db-dir",
        help="Folder of databases (<db_id>/<db_id>.sqlite), or one .sqlite file or data file (CSV, Parquet, ...). "
        "To score on DuckDB or PostgreSQL, use --engine.",
    ),
    tables: Path | None = typer.Option(
        None,
        "--tables",
        help="tables.json for the prompts (default: tables.json, or the one *tables.json, next to --questions).",
    ),
    fmt: str | None = typer.Option(
        None, "--format", help="spider (test-suite execution match) or bird (set EX). Default: from the file."
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
        help="Score given SQL instead: one per line in question order (or BIRD's JSON).",
    ),
    results: Path | None = typer.Option(
        None, "--out", "-o", help="JSONL file, one record per question; rerunning skips what is there."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first K questions."),
    timeout: float = typer.Option(
        30.0,
        "--timeout",
        min=0.1,
        callback=opt.finite,
        help="Seconds one gold or predicted query may run (BIRD: 30).",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object (ex, correct, total, by_level) as the last line."
    ),
    compare_files: tuple[Path, Path] | None = typer.Option(
        None, "--compare", help="Show where two --out files differ (no evaluation runs)."
    ),
    plot_file: Path | None = typer.Option(
        None, "--plot", help="Write a PNG chart of EX overall and by difficulty (needs matplotlib)."
    ),
    engine: str = typer.Option(
        "sqlite",
        "--engine",
        callback=_engine,
        help="sqlite, duckdb or postgres. Run the predictions in DuckDB or PostgreSQL: each database is copied there and each "
        "predicted SQL transpiled from SQLite; the gold still runs on SQLite.",
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
        help="PostgreSQL server for --engine postgres (postgresql://user@host:port/postgres; password "
        "from PGPASSWORD or ~/.pgpass). Each database goes into a scratch database, dropped after.",
    ),
) -> None:
    """Score a model (or given SQL) by execution accuracy, the way BIRD and Spider do.

    --format bird: a prediction is right when its set of rows equals the gold's. --format spider (test-suite execution match): rows compare as multisets, in order only when the gold has ORDER BY, columns in any order, DISTINCT ignored. All SQL runs read-only with a time limit.

    Results go to --out as one JSON line per question; rerun the same command to resume after Ctrl-C.

    Examples:

      slmsql eval -q bird/dev.json --db-dir bird/dev_databases -n 8 --out bird.jsonl

      slmsql eval -q spider/dev.json --db-dir spider/database --predictions pred.sql

      slmsql eval --compare n1.jsonl n8.jsonl --plot n1_vs_n8.png

      slmsql eval -q spider/dev.json --db-dir spider/database --predictions gold.sql --engine duckdb
    """
    from slmsql_cli import evaluation as ev

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
    qs, fmt = ev.load_questions(questions, fmt)
    all_count = len(qs)
    qs = qs[:limit] if limit else qs
    tables = tables or (_sibling_tables(questions) if model is not None else None)
    databases = BenchmarkDatabases(db_dir, tables)
    db_paths = {db_id: databases.resolve(db_id) for db_id in dict.fromkeys(q.db_id for q in qs)}

    preds: list[str] | None = None
    if predictions is not None:
        preds = ev.read_predictions(predictions)
        if len(preds) != all_count and not (limit and len(preds) >= len(qs)):
            raise UserError(
                f"{predictions} has {len(preds)} predictions for {all_count} questions",
                "one SQL per line, in the order of the questions (write an empty line for no answer)",
            )
    run = {
        "format": fmt,
        "predictions": str(predictions.resolve()) if predictions else None,
        "model": model,
        "merge_model": merge_model,
        "n": n if model else None,
        "merge": (not no_merge) if model else None,
        "merge_n": merge_n if model and not no_merge else None,
        "max_tokens": max_tokens if model else None,
        "seed": seed if model else None,
        "use_values": (not no_values) if model else None,
        "context": context if model else None,
        "prompt_budget": prompt_budget if model else None,
        "timeout": timeout,
    }
    if engine != "sqlite":  # absent for SQLite, so that results files of earlier versions resume
        run["engine"] = engine
    if model and endpoint:  # absent in-process, likewise; never a key or user:password@
        from slmsql_cli.remote_engine import public_url

        run["endpoint"] = public_url(endpoint)
        run["served_model"] = served_model

    store = ev.ResultsFile(results, run, qs) if results else None
    records: list[dict[str, Any]] = [store.done[q.index] for q in qs if store and q.index in store.done]
    pending = [q for q in qs if not (store and q.index in store.done)]
    if store and records:
        err.print(f"resuming {results}: {len(records)} of {len(qs)} question(s) already scored", markup=False)
    stack = contextlib.ExitStack()  # scratch PostgreSQL databases, dropped at the end
    try:
        with err.status(f"copying the databases into {engine}…") as status:
            targets = ev.load_copies(
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
                targets,
                concurrency,
            )
        elif pending:  # the model is loaded only when there is work left
            from slmsql_cli.evaluation import model_predictor

            with _load_pipeline(model, merge_model, opt.ask_config(ctx.params)) as pipeline:
                predict = model_predictor(pipeline, databases)
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
                    targets,
                    concurrency,
                )
    except KeyboardInterrupt:
        err.print(
            f"[yellow]stopped after {len(records)} of {len(qs)} question(s)[/]"
            + (f"; rerun the same command to resume from {escape(str(results))}" if results else "")
        )
        _print_summary(ev.summarize(records, fmt), fmt, err)
        raise
    finally:
        stack.close()
        if store:
            store.close()

    summary = ev.summarize(records, fmt)
    _print_summary(summary, fmt, err if as_json else out)
    if plot_file:
        label = ev.run_label(records, str(predictions or model))
        err.print(f"chart written to {ev.plot([(label, records)], plot_file, fmt)}", markup=False)
    if as_json:
        sys.stdout.write(
            json.dumps({**summary, "format": fmt, "out": str(results) if results else None}) + "\n"
        )
    ev.check_gold_ran(records)


def _sibling_tables(questions: Path) -> Path | None:
    found = sibling_tables_json(questions)
    if found is not None:
        err.print(f"using {found} for the schema (pass --tables to choose another)", markup=False)
    return found


def _load_pipeline(model: str | None, merge_model: str | None, config: AskConfig) -> Pipeline:
    from slmsql_cli.pipeline import Pipeline

    with err.status("loading the model…") as status:
        return Pipeline.load(
            model, merge_model, config, progress=lambda m: status.update(m + "…"), export=cached_gguf
        )


def _run(pending, records, db_paths, predict, fmt, timeout, run, store, total, targets, concurrency=1):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from slmsql_cli.evaluation import evaluate_question
    from slmsql_cli.inflight import in_flight

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

        def evaluate(q):
            return evaluate_question(q, db_paths[q.db_id], predict, fmt, timeout, run, targets.get(q.db_id))

        for record in in_flight(pending, evaluate, concurrency):
            if store:
                store.append(record)
            records.append(record)
            progress.update(task, advance=1, ex=ex_text())
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

    from slmsql_cli import evaluation as ev

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
    console.print(
        f"right in both: {result['both_correct']} · in neither: {result['neither']}"
        + (
            f" · only in a: {result['only_in_a']} · only in b: {result['only_in_b']}"
            if result["only_in_a"] or result["only_in_b"]
            else ""
        )
    )
    for d in result["differ"][:20]:
        winner = "a" if d["a_correct"] else "b"
        console.print(f"[dim]#{d['index']}[/] only {winner} right: {escape(d['question'])}", highlight=False)
    if len(result["differ"]) > 20:
        console.print(f"[dim]… {len(result['differ']) - 20} more (--json lists all)[/]")
    if plot_file:
        err.print(f"chart written to {ev.plot([(names[0], a), (names[1], b)], plot_file, fmt)}", markup=False)
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
