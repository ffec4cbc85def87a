"""`slmsql prompt`: print the exact user message the model would read, without running a model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from slmsql_cli.cli import options as opt
from slmsql_cli.cli.app import app
from slmsql_cli.cli.common import StatusLine, err, user_errors
from slmsql_cli.config import AskConfig


@app.command("prompt")
@user_errors
@opt.ask_options(only=("use_values", "prompt_budget"))
def prompt(
    *,
    db: opt.Db,
    import_timeout: opt.ImportTimeout = opt.IMPORT_TIMEOUT,
    question: str = typer.Argument(
        ..., metavar="QUESTION", show_default=False, help="The question, in any language."
    ),
    tables: Path | None = typer.Option(
        None,
        "--tables",
        metavar="FILE",
        help="Spider/BIRD tables.json for the database (adds column comments).",
        rich_help_panel=opt.DATA,
    ),
    db_id: str | None = typer.Option(
        None,
        "--db-id",
        metavar="ID",
        help="The database's id in --tables (default: the file name without extension).",
        rich_help_panel=opt.DATA,
    ),
    evidence: str = typer.Option(
        "",
        "--evidence",
        "-e",
        metavar="TEXT",
        show_default=False,
        help="Extra knowledge (BIRD's evidence), put before the question.",
        rich_help_panel=opt.DATA,
    ),
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="MODEL",
            help="Count tokens with this model's tokenizer and cut a schema over --prompt-budget as "
            "`ask` does (the model is loaded, nothing is generated). Without it: the whole schema, "
            "with a note on stderr when it may be over --prompt-budget (only the model can count).",
            rich_help_panel=opt.MODEL,
        ),
    ] = None,
    config: AskConfig,
) -> None:
    """Print the generation prompt (the user message) for a question, byte for byte, and nothing else.

    This is the text `ask` sends to the model after the system prompt: the OmniSQL schema block
    (with example values, and the values your question mentions listed first), the question, and
    CSC-SQL's output instructions. Use it to see what the model sees, to debug a wrong answer, or
    to build training and evaluation data. No model is loaded unless --model is given; with it,
    a schema cut to fit --prompt-budget is said on stderr. Without it nothing can count tokens:
    the whole schema is printed, and stderr says when it may be over the budget (`ask` would
    then cut it; `train` cuts it the same way with its tokenizer).

    Examples:

      slmsql prompt -d slmsql_cli/data/bookshop.sqlite "Who wrote Dubliners?"
      slmsql prompt -d car_1.sqlite --tables tables.json "How many makers?" \\
          > prompt.txt
      slmsql prompt -d sales.csv "What were the total sales in March?"
    """
    from slmsql_cli import prompt_builder
    from slmsql_cli.database import check_question, open_database

    check_question(question, evidence)
    database = open_database(db, tables_json=tables, db_id=db_id)
    if model is None:  # no tokenizer to count with: the whole schema, and a word when it may not fit
        matched = prompt_builder.matched_values(database, question, evidence, use_values=config.use_values)
        text = prompt_builder.generation_message(database, question, evidence, matched=matched).text
        if prompt_builder.may_exceed(text, prompt_builder.Budget(config.prompt_budget)):
            err.print(
                f"note: this prompt shows the whole schema ({len(text.encode('utf-8')):,} bytes) and may be "
                f"over the {config.prompt_budget}-token prompt budget, where `ask` cuts the schema to the "
                "question's tables; counting tokens takes the model's tokenizer: pass --model to see "
                "the prompt `ask` sends",
                markup=False,
                highlight=False,
            )
    else:
        from slmsql_cli.engines import load_engine
        from slmsql_cli.pipeline import Pipeline
        from slmsql_cli.quantize import cached_gguf

        with (
            StatusLine("loading the model…"),
            Pipeline(load_engine(model, config, cached_gguf), None, config) as p,
        ):
            built = p.generation_message(database, question, evidence)
            room = p.budget.room
        text, pruned = built.text, built.pruned
        if pruned is not None:
            kept, total = len(pruned.tables), len(database.schema.tables)
            err.print(
                f"the schema was cut to {kept} of {total} tables to fit the {room}-token "
                f"prompt budget: {', '.join(t.name for t in pruned.tables)} (raise --prompt-budget to see more)",
                markup=False,
                highlight=False,
            )
    sys.stdout.write(text)
    sys.stdout.flush()
