"""`slmsql prompt`: print the exact user message the model would read, without running a model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from slmsql_cli.cli import app
from slmsql_cli.cli import options as opt
from slmsql_cli.cli.common import err, user_errors


@app.command("prompt")
@user_errors
def prompt(
    db: opt.Db,
    import_timeout: opt.ImportTimeout = opt.IMPORT_TIMEOUT,
    question: str = typer.Argument(..., help='The question, e.g. "How many albums does AC/DC have?"'),
    tables: Path | None = typer.Option(
        None, "--tables", help="Spider/BIRD tables.json describing the database (adds column comments)."
    ),
    db_id: str | None = typer.Option(
        None, "--db-id", help="The database's id in --tables (default: the file name without extension)."
    ),
    evidence: str = typer.Option(
        "", "--evidence", "-e", help="Extra knowledge (BIRD 'evidence'), put before the question."
    ),
    no_values: opt.NoValues = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Count tokens with this model's tokenizer and cut a schema larger than --prompt-budget "
            "as `ask` does (the model is loaded, nothing is generated). Without it the full schema is printed.",
        ),
    ] = None,
    prompt_budget: opt.PromptBudget = opt.DEFAULTS.prompt_budget,
) -> None:
    """Print the generation prompt (the user message) for a question, byte for byte, and nothing else.

    This is the text `ask` sends to the model after the system prompt: the OmniSQL schema block
    (with example values, and the values your question mentions listed first), the question, and
    CSC-SQL's output instructions. Use it to see what the model sees, to debug a wrong answer, or
    to build training and evaluation data. No model is loaded unless --model is given.

    Examples:

      slmsql prompt --db slmsql_cli/data/bookshop.sqlite "Which books did Flann O'Brien write?"

      slmsql prompt --db car_1.sqlite --tables tables.json "How many car makers are there?" > p.txt

      slmsql prompt --db sales.csv "What were the total sales in March?"
    """
    from slmsql_cli.database import open_database

    database = open_database(db, tables_json=tables, db_id=db_id)
    if model is None:
        text = database.generation_prompt(question, evidence, use_values=not no_values)
    else:
        from quantize import cached_gguf
        from slmsql_cli.pipeline import AskConfig, Pipeline, load_engine

        config = AskConfig(use_values=not no_values, prompt_budget=prompt_budget)
        with (
            err.status("loading the model…"),
            Pipeline(load_engine(model, config, cached_gguf), None, config) as p,
        ):
            text, _pruned = p.generation_message(database, question, evidence)
    sys.stdout.write(text)
    sys.stdout.flush()
