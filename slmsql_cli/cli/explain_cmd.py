"""`slmsql explain`: any SQL in plain sentences, made from its parse (no model)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from slmsql_cli.cli import options as opt
from slmsql_cli.cli.app import app
from slmsql_cli.cli.common import err, out, user_errors


@app.command("explain")
@user_errors
def explain(
    db: opt.Db,
    sql: str = typer.Argument(
        ...,
        metavar="SQL",
        show_default=False,
        help="One read-only statement (SELECT, WITH, VALUES), in SQLite's SQL.",
    ),
    tables: Path | None = typer.Option(
        None,
        "--tables",
        metavar="FILE",
        show_default=False,
        help="Spider/BIRD tables.json describing the database.",
        rich_help_panel=opt.DATA,
    ),
    db_id: str | None = typer.Option(
        None,
        "--db-id",
        metavar="ID",
        show_default=False,
        help="Id in --tables (default: file name).",
        rich_help_panel=opt.DATA,
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        metavar="",
        help="One JSON object: the SQL, the explanation, its sentences, what it does not cover.",
        rich_help_panel=opt.OUTPUT,
    ),
) -> None:
    """Explain a SQL query in plain sentences: tables and joins, every filter with its values,
    grouping, aggregates, order, limit, subqueries and set operations.

    The SQL goes through the same read-only check as the model's, must parse as SQLite's SQL and
    must name tables of the database; a column the database lacks is a warning. Nothing is run.
    A part the explanation has no words for is quoted at the end.

    Examples:

      slmsql explain -d slmsql_cli/data/bookshop.sqlite \\
          "SELECT title FROM books WHERE price > 20 ORDER BY price DESC"
      slmsql explain -d shop.sqlite --json "SELECT count(*) FROM orders"
    """
    from rich.markup import escape
    from rich.text import Text

    from slmsql_cli.database import open_database
    from slmsql_cli.explain import explain_for, missing_names
    from slmsql_cli.render import print_sql

    database = open_database(db, tables_json=tables, db_id=db_id)
    explanation = explain_for(database, sql)
    missing = missing_names(database, sql)
    if missing:  # explained as written; running it would fail
        err.print(
            f"[yellow]warning: {escape(database.name)} has no {escape(', '.join(missing))}; "
            "the explanation reads the SQL as written[/]",
            highlight=False,
        )
    if as_json:
        doc = {
            "database": database.name,
            "sql": sql,
            "explanation": explanation.text,
            "sentences": explanation.sentences,
            "uncovered": explanation.uncovered,
            "missing": missing,
        }
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
        return
    print_sql(out, sql)
    out.print(Text(explanation.text), highlight=False)
