"""`slmsql chat`: many questions, one loaded model, the shared prompt prefix kept in the KV cache."""

from __future__ import annotations

import io
import sys

import typer
from rich.markup import escape

from slmsql_cli.cli import options as opt
from slmsql_cli.cli.app import app
from slmsql_cli.cli.common import (
    EXIT_NO_ANSWER,
    AskStatus,
    StatusLine,
    err,
    fail,
    load_pipeline,
    out,
    user_errors,
)
from slmsql_cli.config import AskConfig, ModelSource

_EXIT_WORDS = {"exit", "quit", ":q", "\\q"}


@app.command("chat")
@user_errors
@opt.ask_options()
def chat(
    *,
    db: opt.Db,
    import_timeout: opt.ImportTimeout = opt.IMPORT_TIMEOUT,
    source: ModelSource,
    config: AskConfig,
    verbose: opt.Verbose = False,
) -> None:
    """Ask question after question with the model kept loaded.

    The schema part of the prompt stays in llama.cpp's KV cache, so after the first question only
    the tokens that differ are evaluated. Each answer ends with its timings. Type 'exit' or press
    Ctrl-D to leave. Questions can also come from a pipe, one per line; each answer then follows
    its question, echoed as "> question".

    Examples:

      slmsql chat -d slmsql_cli/data/bookshop.sqlite
      slmsql chat -d exports/      (every data file in the folder)
      slmsql chat -d shop.sqlite < questions.txt > answers.txt
    """
    from slmsql_cli.cpu import explain_threads
    from slmsql_cli.database import check_question, open_database
    from slmsql_cli.errors import UserError
    from slmsql_cli.render import NO_ANSWER_HINT, print_answer, print_candidates, summary_line

    database = open_database(db)
    pipeline = load_pipeline(source.model, source.merge_model, config)
    # Bytes that are not UTF-8 become lone surrogates (as in argv) and are refused per question,
    # rather than ending the session with a UnicodeDecodeError.
    if isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(errors="surrogateescape")
    interactive = sys.stdin.isatty()
    failed = 0
    with pipeline:
        err.print(
            f"[bold]slmsql chat[/] on {escape(database.name)} with {escape(pipeline.engine.path.name)}. "
            "Type 'exit' or Ctrl-D to leave."
        )
        if verbose:
            err.print(f"threads: {explain_threads(pipeline.engine.threads, config.threads)}", highlight=False)
        while True:
            try:
                question = input("? " if interactive else "").strip()
            except EOFError:
                break
            if not question:
                continue
            if question.lower() in _EXIT_WORDS:
                break
            if not interactive:  # the transcript says which answer belongs to which question
                out.print(f"> {question}", markup=False, highlight=False)
            try:
                check_question(question)
                with StatusLine("thinking…") as status:
                    steps = AskStatus(status, config.n, config.merge_n, config.max_tokens)
                    answer = pipeline.ask(database, question, progress=steps.progress, on_token=steps.token)
            except UserError as exc:
                failed += 1
                fail(exc.message, exc.hint)
                continue
            if verbose:
                print_candidates(err, answer)
            if answer.failure is not None:
                failed += 1
                fail(answer.failure, NO_ANSWER_HINT)
            else:
                print_answer(out, answer)
                err.print(summary_line(answer))
            g = answer.generation.stats
            err.print(
                f"[dim]prompt {g.prompt_tokens} tokens, {g.prompt_tokens_evaluated} evaluated "
                f"({g.prompt_tokens - g.prompt_tokens_evaluated} reused from the cache) in {g.prompt_seconds:.2f}s · "
                f"{g.generated_tokens} tokens generated in {g.wall_seconds - g.prompt_seconds:.1f}s[/]"
            )
    if failed:  # like `sqlite3 < script`: keep going, but tell a script that something failed
        err.print(f"{failed} question(s) failed")
        raise typer.Exit(EXIT_NO_ANSWER)
