"""`slmsql prompt`: print the exact user message the model would read, without running a model."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from slmsql_cli.cli import app
from slmsql_cli.cli import options as opt
from slmsql_cli.cli.common import user_errors


@app.command("prompt")
@user_errors
def prompt(
    db: opt.Db,
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
    no_values: bool = typer.Option(
        False, "--no-values", help="Don't look up database values mentioned in the question."
    ),
) -> None:
    """Print the generation prompt (the user message) for a question, byte for byte, and nothing else.

    This is the text `ask` sends to the model after the system prompt: the OmniSQL schema block
    (with example values, and the values your question mentions listed first), the question, and
    CSC-SQL's output instructions. Use it to see what the model sees, to debug a wrong answer, or
    to build training and evaluation data. No model is loaded.

    Examples:

      slmsql prompt --db slmsql_cli/data/bookshop.sqlite "Which books did Flann O'Brien write?"

      slmsql prompt --db car_1.sqlite --tables tables.json "How many car makers are there?" > p.txt

      slmsql prompt --db sales.csv "What were the total sales in March?"
    """
    from slmsql_cli.database import open_database

    database = open_database(db, tables_json=tables, db_id=db_id)
    text = database.generation_prompt(question, evidence, use_values=not no_values)
    sys.stdout.write(text)
    sys.stdout.flush()
