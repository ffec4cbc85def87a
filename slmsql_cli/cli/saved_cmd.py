"""`slmsql saved list|show|rm|export|import`: the saved answers (`ask --save`), shared as JSON Lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from slmsql_cli.cli.app import app, reflow
from slmsql_cli.cli.common import err, out, user_errors
from slmsql_cli.errors import UserError
from slmsql_cli.safe_text import visible

if TYPE_CHECKING:
    from slmsql_cli.database import Database

saved_app = typer.Typer(
    help=reflow(
        """Saved answers: questions kept with their SQL (`ask --save`), answered again without the model.

        An exact repeat of a saved question on the same database runs the saved SQL; a similar
        question is only suggested. Saved answers live in slmsql's cache folder.

        Examples:

          slmsql ask -d shop.sqlite --save "How many orders are there?"
          slmsql saved list
          slmsql saved export -d shop.sqlite -o answers.jsonl
        """
    ),
    no_args_is_help=True,
)
app.add_typer(saved_app, name="saved")

DbOption = typer.Option(
    None, "--db", "-d", metavar="PATH|URL", help="Only this database's saved answers.", show_default=False
)


def _database(db: list[str] | None) -> Database | None:
    from slmsql_cli.database import open_database

    return open_database(db) if db else None


@saved_app.command("list")
@user_errors
def list_saved(
    db: list[str] | None = DbOption,
    as_json: bool = typer.Option(False, "--json", metavar="", help="One JSON object per line."),
) -> None:
    """The saved answers: number, database, question.

    Examples:

      slmsql saved list
      slmsql saved list -d shop.sqlite --json
    """
    from slmsql_cli import saved

    found = saved.entries(_database(db))
    if as_json:
        for entry in found:
            sys.stdout.write(json.dumps(entry.as_dict(), ensure_ascii=False) + "\n")
        return
    if not found:
        err.print("no saved answers yet (ask --save keeps one)")
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("#", "database", "question"):
        table.add_column(column, overflow="fold", justify="right" if column == "#" else "left")
    for entry in found:
        table.add_row(str(entry.id), Text(visible(entry.database)), Text(visible(entry.question)))
    out.print(table, soft_wrap=False)


@saved_app.command("show")
@user_errors
def show_saved(
    entry_id: int = typer.Argument(..., metavar="ID", help="The number from `slmsql saved list`."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="One JSON object."),
) -> None:
    """One saved answer: its question, evidence, SQL and when it was kept.

    Examples:

      slmsql saved show 3
      slmsql saved show 3 --json
    """
    from slmsql_cli import saved
    from slmsql_cli.render import print_sql

    entry = saved.get(entry_id)
    if as_json:
        sys.stdout.write(json.dumps(entry.as_dict(), ensure_ascii=False) + "\n")
        return
    doc = entry.as_dict()
    for key in ("id", "database", "question", "evidence", "created"):
        if doc[key] != "":
            out.print(f"[bold]{key}:[/] {escape(visible(str(doc[key])))}", highlight=False)
    print_sql(out, entry.sql)


@saved_app.command("rm")
@user_errors
def remove_saved(
    entry_id: int = typer.Argument(..., metavar="ID", help="The number from `slmsql saved list`."),
) -> None:
    """Forget one saved answer.

    Example:

      slmsql saved rm 3
    """
    from slmsql_cli import saved

    entry = saved.remove(entry_id)
    err.print(f"removed saved answer #{entry.id}: {escape(visible(entry.question))}", highlight=False)


@saved_app.command("export")
@user_errors
def export_saved(
    db: list[str] | None = DbOption,
    output: Path | None = typer.Option(
        None, "--output", "-o", metavar="FILE", help="Write to this file (default: stdout)."
    ),
) -> None:
    """Write the saved answers as JSON Lines (question, evidence, sql, database, created), to share.

    Examples:

      slmsql saved export -o answers.jsonl
      slmsql saved export -d shop.sqlite > shop-answers.jsonl
    """
    from slmsql_cli import saved

    lines = [line + "\n" for line in saved.export_lines(_database(db))]
    if output is None:
        sys.stdout.write("".join(lines))
    else:
        try:
            output.write_text("".join(lines), encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
    err.print(f"exported {len(lines)} saved answer(s)")


@saved_app.command("import")
@user_errors
def import_saved(
    file: Path = typer.Argument(
        ..., metavar="FILE", help="JSON Lines from `slmsql saved export` ('-' reads stdin)."
    ),
    db: list[str] = typer.Option(
        ...,
        "--db",
        "-d",
        metavar="PATH|URL",
        help="The database the questions are about.",
        show_default=False,
    ),
) -> None:
    """Save the questions and SQL of a JSON Lines file for a database.

    Each SQL gets the same read-only check as the model's and must name the database's tables; a
    line that fails is reported and skipped (exit code 1).

    Examples:

      slmsql saved import answers.jsonl -d shop.sqlite
      slmsql saved export -d old.sqlite | slmsql saved import - -d new.sqlite
    """
    from slmsql_cli import saved
    from slmsql_cli.database import open_database

    database = open_database(db)
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"cannot read {file}: {exc}", "give a JSON Lines file from `slmsql saved export`"
        ) from None
    report = saved.import_lines(database, text.splitlines())
    for line in report.skipped:
        err.print(f"[yellow]skipped {escape(visible(line))}[/]", highlight=False)
    err.print(
        f"imported {len(report.imported)} saved answer(s) for {escape(visible(database.name))}",
        highlight=False,
    )
    if report.skipped:
        raise typer.Exit(1)
