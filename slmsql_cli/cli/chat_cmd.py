"""`slmsql chat`: many questions, one loaded model, the shared prompt prefix kept in the KV cache."""

from __future__ import annotations

import io
import sys

import typer
from rich.markup import escape

from quantize import cached_gguf
from slmsql_cli.cli import app
from slmsql_cli.cli import options as opt
from slmsql_cli.cli.common import err, out, user_errors

_EXIT_WORDS = {"exit", "quit", ":q", "\\q"}


@app.command("chat")
@user_errors
def chat(
    ctx: typer.Context,
    db: opt.Db,
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
    no_values: opt.NoValues = False,
    no_prompt_cache: opt.NoPromptCache = False,
    endpoint: opt.Endpoint = None,
    served_model: opt.ServedModel = None,
    merge_endpoint: opt.MergeEndpoint = None,
    merge_served_model: opt.MergeServedModel = None,
    endpoint_timeout: opt.EndpointTimeout = None,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every candidate."),
) -> None:
    """Ask question after question with the model kept loaded.

    The schema part of the prompt stays in llama.cpp's KV cache, so after the first question only
    the tokens that differ are evaluated. Each answer ends with its timings. Type 'exit' or press
    Ctrl-D to leave.

    Examples:

      slmsql chat --db slmsql_cli/data/bookshop.sqlite

      slmsql chat --db exports/        (every CSV, JSON, Parquet and Excel file in the folder)
    """
    from slmsql_cli.database import open_database
    from slmsql_cli.errors import UserError
    from slmsql_cli.pipeline import Pipeline
    from slmsql_cli.render import print_answer

    database = open_database(db)
    config = opt.ask_config(ctx.params)
    with err.status("loading the model…") as status:
        pipeline = Pipeline.load(
            model, merge_model, config, progress=lambda m: status.update(m + "…"), export=cached_gguf
        )
    # Bytes that are not UTF-8 become lone surrogates (as in argv) and are refused per question,
    # rather than ending the session with a UnicodeDecodeError.
    if isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(errors="surrogateescape")
    failed = 0
    with pipeline:
        err.print(
            f"[bold]slmsql chat[/] on {escape(database.name)} with {escape(pipeline.engine.path.name)}. Type 'exit' or Ctrl-D to leave."
        )
        while True:
            try:
                question = input("? ").strip()
            except EOFError:
                break
            if not question:
                continue
            if question.lower() in _EXIT_WORDS:
                break
            try:
                with err.status("thinking…") as status:
                    answer = pipeline.ask(database, question, progress=lambda m: status.update(m + "…"))
            except UserError as exc:
                failed += 1
                err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
                continue
            print_answer(out, answer, verbose=verbose)
            g = answer.generation.stats
            err.print(
                f"[dim]prompt {g.prompt_tokens} tokens, {g.prompt_tokens_evaluated} evaluated "
                f"({g.prompt_tokens - g.prompt_tokens_evaluated} reused from the cache) in {g.prompt_seconds:.2f}s · "
                f"{g.generated_tokens} tokens generated in {g.wall_seconds - g.prompt_seconds:.1f}s[/]"
            )
    if failed:  # like `sqlite3 < script`: keep going, but tell a script that something failed
        err.print(f"{failed} question(s) failed")
        raise typer.Exit(1)
