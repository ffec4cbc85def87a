"""`slmsql chat`: many questions, one loaded model, the shared prompt prefix kept in the KV cache."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from slmsql_cli.cli import app
from slmsql_cli.cli.ask_cmd import MERGE_HELP, MODEL_HELP
from slmsql_cli.cli.common import err, out, user_errors

_EXIT_WORDS = {"exit", "quit", ":q", "\\q"}


@app.command("chat")
@user_errors
def chat(
    db: Path = typer.Option(..., "--db", "-d", help="The SQLite database file to ask about (opened read-only)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    merge_model: Optional[str] = typer.Option(None, "--merge-model", help=MERGE_HELP),
    no_merge: bool = typer.Option(False, "--no-merge", help="Skip the corrective merge step."),
    n: int = typer.Option(4, "-n", "--samples", min=1, max=64, help="SQL candidates per question."),
    merge_n: int = typer.Option(4, "--merge-n", min=1, max=64, help="Revisions the merge model samples."),
    temperature: float = typer.Option(0.8, "--temperature", "-t", min=0.0, help="Sampling temperature; 0 = greedy."),
    max_tokens: int = typer.Option(1024, "--max-tokens", min=16, help="Longest reasoning + SQL per candidate."),
    seed: int = typer.Option(42, "--seed", help="Same seed, same candidates."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (default: physical cores)."),
    context: Optional[int] = typer.Option(None, "--context", min=512, help="Cap the context window in tokens (less memory); larger schemas are pruned to the question's tables."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds one candidate query may run."),
    no_values: bool = typer.Option(False, "--no-values", help="Don't look up database values mentioned in the question."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every candidate."),
) -> None:
    """Ask question after question with the model kept loaded.

    The schema part of the prompt stays in llama.cpp's KV cache, so after the first question only
    the tokens that differ are evaluated. Each answer ends with its timings. Type 'exit' or press
    Ctrl-D to leave.

    Example:  slmsql chat --db slmsql_cli/data/bookshop.sqlite
    """
    from slmsql_cli.database import open_database
    from slmsql_cli.errors import UserError
    from slmsql_cli.pipeline import AskConfig, Pipeline
    from slmsql_cli.render import print_answer

    database = open_database(db)
    config = AskConfig(
        n=n, temperature=temperature, max_tokens=max_tokens, seed=seed, merge=not no_merge,
        merge_n=merge_n, timeout=timeout, use_values=not no_values, threads=threads, context=context,
    )
    with err.status("loading the model…") as status:
        pipeline = Pipeline.load(model, merge_model, config, progress=lambda m: status.update(m + "…"))
    err.print(f"[bold]slmsql chat[/] on {db.name} with {pipeline.engine.path.name}. Type 'exit' or Ctrl-D to leave.")
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
            err.print(f"[red]error:[/] {exc}")
            continue
        print_answer(out, answer, verbose=verbose)
        g = answer.generation
        if g is not None:
            err.print(
                f"[dim]prompt {g.prompt_tokens} tokens, {g.prompt_tokens_evaluated} evaluated "
                f"({g.prompt_tokens - g.prompt_tokens_evaluated} reused from the cache) in {g.prompt_seconds:.2f}s · "
                f"{g.generated_tokens} tokens generated in {g.wall_seconds - g.prompt_seconds:.1f}s[/]"
            )
    pipeline.close()
