"""The `slmsql` command line: one small module per command, registered here.

Command modules import only typer/rich at the top; the pipeline, llama.cpp, torch and
transformers are imported inside the command functions so that `slmsql --help` stays fast and
`ask` never pulls in torch.
"""

from __future__ import annotations

import sys

import typer

from slmsql_cli import __version__

app = typer.Typer(
    name="slmsql",
    help=(
        "Ask your SQLite database questions in plain language. A small Text-to-SQL model "
        "(SLM-SQL, 0.5B-1.5B parameters) runs on your CPU through llama.cpp: it samples several "
        "SQL candidates, executes them read-only, votes by result and lets a merge model revise "
        'the top two.\n\nStart with:  slmsql ask --db music.sqlite "How many albums are there?"'
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"slmsql {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    pass


def _register() -> None:
    # Each import registers the command's function on `app`; order here is the order in --help.
    from slmsql_cli.cli import (  # noqa: F401
        ask_cmd,
        bench_cmd,
        chat_cmd,
        eval_cmd,
        explain_cmd,
        export_cmd,
        models_cmd,
        prompt_cmd,
        saved_cmd,
        serve_cmd,
        train_cmd,
    )


_register()


def main() -> None:
    """The console entry point: usage errors (a bad option value, a missing argument) are one line
    and a hint like every other error, instead of click's framed box."""
    # typer vendors click; its exception classes are public only through this module
    from typer._click import exceptions as click

    from slmsql_cli.cli.common import err, fail

    try:
        code = app(prog_name="slmsql", standalone_mode=False)
    except click.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "slmsql"
        sys.exit(fail(exc.format_message(), f"see '{command} --help'", exc.exit_code).exit_code)
    except click.ClickException as exc:
        sys.exit(fail(exc.format_message(), None, exc.exit_code).exit_code)
    except typer.Abort:  # EOF at a prompt
        err.print("[yellow]aborted[/]")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
