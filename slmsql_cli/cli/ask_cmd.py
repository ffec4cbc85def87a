"""`slmsql ask`: one question, one answer."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape

from slmsql_cli.cli import options as opt
from slmsql_cli.cli.app import app
from slmsql_cli.cli.common import EXIT_NO_ANSWER, AskStatus, StatusLine, err, fail, out, user_errors
from slmsql_cli.config import AskConfig, ModelSource
from slmsql_cli.quantize import cached_gguf


@app.command("ask")
@user_errors
@opt.ask_options()
def ask(
    *,
    db: opt.Db,
    import_timeout: opt.ImportTimeout = opt.IMPORT_TIMEOUT,
    question: str = typer.Argument(
        ..., metavar="QUESTION", show_default=False, help="Your question, in any language."
    ),
    source: ModelSource,
    config: AskConfig,
    evidence: str = typer.Option(
        "",
        "--evidence",
        "-e",
        metavar="TEXT",
        show_default=False,
        help="BIRD-style evidence for the question.",
        rich_help_panel=opt.DATA,
    ),
    tables: Path | None = typer.Option(
        None,
        "--tables",
        metavar="FILE",
        help="Spider/BIRD tables.json (comments).",
        rich_help_panel=opt.DATA,
    ),
    db_id: str | None = typer.Option(
        None,
        "--db-id",
        metavar="ID",
        help="Id in --tables (default: file name).",
        rich_help_panel=opt.DATA,
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        metavar="",
        help="One JSON object: SQL, rows, candidates, error, hint.",
        rich_help_panel=opt.OUTPUT,
    ),
    as_csv: bool = typer.Option(
        False, "--csv", metavar="", help="The result rows as CSV.", rich_help_panel=opt.OUTPUT
    ),
    sql_only: bool = typer.Option(
        False, "--sql-only", metavar="", help="Only the winning SQL.", rich_help_panel=opt.OUTPUT
    ),
    max_rows: opt.MaxRows = opt.MAX_ROWS,
    verbose: opt.Verbose = False,
    explain: bool = typer.Option(
        False,
        "--explain",
        metavar="",
        help="Explain the SQL in plain sentences (no model).",
        rich_help_panel=opt.OUTPUT,
    ),
    chart: bool = typer.Option(
        False,
        "--chart",
        metavar="",
        help="Bars for a label column and numeric columns.",
        rich_help_panel=opt.OUTPUT,
    ),
    save: opt.Save = False,
    fresh: opt.Fresh = False,
    after: str | None = typer.Option(
        None,
        "--after",
        metavar="ID|-",
        show_default=False,
        help="Follow saved answer ID, or last (-).",
        rich_help_panel=opt.DATA,
    ),
) -> None:
    """Answer a question about a database: sample SQL candidates, run them, vote, merge.

    The database is opened read-only. The answer goes to stdout; progress, the vote summary and -v
    to stderr. Exit 0: an answer. 1: none of the model's SQL ran. 2: bad input. 70: llama.cpp
    crashed. 130: interrupted.

    Examples:

      slmsql ask -d slmsql_cli/data/bookshop.sqlite "Who wrote the most books?"
      slmsql ask -d orders.csv -d customers.parquet -n 8 --json "Top customer?"
    """
    from slmsql_cli import history
    from slmsql_cli import saved as saved_answers
    from slmsql_cli.cpu import explain_threads
    from slmsql_cli.database import check_question, open_database
    from slmsql_cli.pipeline import Pipeline
    from slmsql_cli.render import (
        MORE_ROWS_HINT,
        confidence_line,
        no_answer_hint,
        print_answer,
        print_candidates,
        summary_line,
        to_csv,
        to_json,
    )

    if sum([as_json, as_csv, sql_only]) > 1:
        raise typer.BadParameter("choose one of --json, --csv, --sql-only")
    check_question(question, evidence)  # before the model loads
    if save:  # a store that cannot be written: the error now, not after the answer
        saved_answers.check_writable()
    database = open_database(db, tables_json=tables, db_id=db_id)
    turns = history.after(database, after) if after is not None else []
    found = (  # a saved answer stands alone: a follow-up is always the model's
        saved_answers.Lookup()
        if fresh or turns
        else saved_answers.lookup(database, question, evidence, timeout=config.timeout)
    )
    for note in found.notes:
        err.print(f"[yellow]{escape(note)}[/]", highlight=False)
    answer = found.answer
    if answer is None:
        with StatusLine("loading the model…") as status:
            steps = AskStatus(status, config.n, config.merge_n, config.max_tokens)
            with Pipeline.load(
                source.model, source.merge_model, config, progress=steps.progress, export=cached_gguf
            ) as pipeline:
                if verbose:
                    err.print(
                        f"threads: {explain_threads(pipeline.engine.threads, config.threads)}",
                        highlight=False,
                    )
                answer = pipeline.ask(
                    database,
                    question,
                    evidence,
                    progress=steps.progress,
                    on_token=steps.token,
                    on_prompt=steps.prompt,
                    turns=turns,
                )
        answer.notes = found.notes
    history.record(database, answer.turn, turns)  # for the next `ask --after -`
    if verbose:
        print_candidates(err, answer)
    if as_json:  # the document says everything, a failure included (its "error" and "hint")
        sys.stdout.write(to_json(answer) + "\n")
    if answer.failure is not None:  # the same two lines in every mode, and the same exit code
        raise fail(answer.failure, no_answer_hint(verbose=verbose, as_json=as_json), EXIT_NO_ANSWER)
    if save and answer.saved_id is None:
        err.print(escape(saved_answers.keep(database, question, evidence, answer)), highlight=False)
    if as_csv:
        sys.stdout.write(to_csv(answer))
    elif sql_only:
        sys.stdout.write((answer.sql or "") + "\n")
    elif not as_json:
        print_answer(out, answer, max_rows=max_rows, explain=explain, chart=chart, more_hint=MORE_ROWS_HINT)
        err.print(summary_line(answer))
        err.print(confidence_line(answer))
