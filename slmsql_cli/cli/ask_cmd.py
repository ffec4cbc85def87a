"""`slmsql ask`: one question, one answer."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from quantize import cached_gguf
from slmsql_cli.cli import app
from slmsql_cli.cli import options as opt
from slmsql_cli.cli.common import err, out, user_errors
from slmsql_cli.errors import UserError


@app.command("ask")
@user_errors
def ask(
    ctx: typer.Context,
    db: opt.Db,
    question: str = typer.Argument(
        ..., help='Your question, in any language, e.g. "How many albums are there?"'
    ),
    model: opt.Model = None,
    merge_model: opt.MergeModel = None,
    no_merge: opt.NoMerge = False,
    n: opt.Samples = opt.DEFAULTS.n,
    merge_n: opt.MergeSamples = opt.DEFAULTS.merge_n,
    temperature: opt.Temperature = opt.DEFAULTS.temperature,
    max_tokens: opt.MaxTokens = opt.DEFAULTS.max_tokens,
    seed: opt.Seed = opt.DEFAULTS.seed,
    threads: opt.Threads = None,
    gpu_layers: opt.GpuLayers = None,
    context: opt.Context = None,
    prompt_budget: opt.PromptBudget = opt.DEFAULTS.prompt_budget,
    timeout: opt.Timeout = opt.DEFAULTS.timeout,
    evidence: str = typer.Option(
        "", "--evidence", "-e", help="Extra knowledge (BIRD 'evidence'), put before the question."
    ),
    tables: Path | None = typer.Option(
        None, "--tables", help="Spider/BIRD tables.json describing the database (adds column comments)."
    ),
    db_id: str | None = typer.Option(
        None, "--db-id", help="The database's id in --tables (default: the file name)."
    ),
    no_values: opt.NoValues = False,
    no_prompt_cache: opt.NoPromptCache = False,
    endpoint: opt.Endpoint = None,
    served_model: opt.ServedModel = None,
    merge_endpoint: opt.MergeEndpoint = None,
    merge_served_model: opt.MergeServedModel = None,
    endpoint_timeout: opt.EndpointTimeout = None,
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object: SQL, columns, rows, candidates, votes, timings."
    ),
    as_csv: bool = typer.Option(False, "--csv", help="Print the result rows as CSV."),
    sql_only: bool = typer.Option(False, "--sql-only", help="Print only the winning SQL."),
    max_rows: int = typer.Option(
        50, "--max-rows", min=1, help="Rows to show in the table (all rows go to --json/--csv)."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show every candidate with its vote group or error."
    ),
) -> None:
    """Answer a question about a database: sample SQL candidates, execute, vote, merge.

    The database is opened read-only; a candidate that tries to write is rejected and gets no vote.
    On DuckDB and PostgreSQL the model's SQLite SQL is translated (sqlglot) and run there; a
    candidate that cannot be translated gets no vote (-v says why).
    CSV, TSV, JSON, Parquet and Excel files (or a folder of them) are imported once into a cached
    SQLite copy, one table per file.

    Examples:

      slmsql ask --db slmsql_cli/data/bookshop.sqlite "Which author wrote the most books?"

      slmsql ask --db shop.sqlite -n 8 --json "Total sales per month in 2024"

      slmsql ask --db postgresql://reader@localhost:5432/shop "Which product sells best?"

      slmsql ask --db orders.csv --db customers.parquet "Which customer placed the most orders?"
    """
    from slmsql_cli.database import check_question, open_database
    from slmsql_cli.pipeline import Pipeline
    from slmsql_cli.render import print_answer, to_csv, to_json

    if sum([as_json, as_csv, sql_only]) > 1:
        raise typer.BadParameter("choose one of --json, --csv, --sql-only")
    check_question(question, evidence)  # before the model loads
    database = open_database(db, tables_json=tables, db_id=db_id)
    config = opt.ask_config(ctx.params)
    with (
        err.status("loading the model…") as status,
        Pipeline.load(
            model, merge_model, config, progress=lambda m: status.update(m + "…"), export=cached_gguf
        ) as pipeline,
    ):
        generated = [0]

        def tick(_seq: int) -> None:
            generated[0] += 1
            if generated[0] % 16 == 0:
                status.update(f"sampling: {generated[0]} tokens…")

        answer = pipeline.ask(
            database, question, evidence, progress=lambda m: status.update(m + "…"), on_token=tick
        )
    if (as_csv or sql_only) and answer.failure:  # nothing usable to print: say why, not a blank line
        raise UserError(
            answer.failure,
            "-v shows what each candidate wrote; a larger -n or --max-tokens, or another model, may help",
            exit_code=1,
        )
    if as_json:
        sys.stdout.write(to_json(answer) + "\n")
    elif as_csv:
        sys.stdout.write(to_csv(answer))
    elif sql_only:
        sys.stdout.write((answer.sql or "") + "\n")
    else:
        print_answer(out, answer, verbose=verbose, max_rows=max_rows)
    if answer.result is None or not answer.result.ok:
        raise typer.Exit(1)
