"""The `slmsql` command line: one small module per command, registered here.

Command modules import only typer/rich at the top; the pipeline, llama.cpp, torch and
transformers are imported inside the command functions so that `slmsql --help` stays fast and
`ask` never pulls in torch.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from slmsql_cli import __version__


def _plain_help_option(option: Any, panel: str | None) -> Any:
    """--help as a flag with no `<bool>` label, in `panel` (a command's Output panel)."""
    if option is not None:
        option.metavar = ""
        option.rich_help_panel = panel
    return option


class _Command(TyperCommand):
    def get_help_option(self, ctx: Any) -> Any:
        panels = {getattr(p, "rich_help_panel", None) for p in self.params}
        return _plain_help_option(super().get_help_option(ctx), "Output" if "Output" in panels else None)


class _Group(TyperGroup):
    def get_help_option(self, ctx: Any) -> Any:
        return _plain_help_option(super().get_help_option(ctx), None)


app = typer.Typer(
    cls=_Group,
    name="slmsql",
    help=(
        "Ask your database questions in plain language.\n\n"
        "A small Text-to-SQL model (SLM-SQL, 0.5B-1.5B parameters) runs on your CPU through "
        "llama.cpp: it samples several SQL candidates, runs them read-only, votes by result and "
        "lets a merge model revise the top two.\n\n"
        "Start with the database that comes with slmsql:\n\n"
        '  slmsql ask -d slmsql_cli/data/bookshop.sqlite "How many books are there?"'
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
        False, "--version", callback=_version, is_eager=True, metavar="", help="Print the version and exit."
    ),
) -> None:
    pass


def _register() -> None:
    # Each import registers the command's function on `app`; order here is the order in --help.
    from slmsql_cli.cli import (  # noqa: F401
        ask_cmd,
        bench_cmd,
        chat_cmd,
        doctor_cmd,
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


def reflow(doc: str) -> str:
    """A docstring as --help shows it: each prose paragraph on one line, so that rich wraps it to
    the terminal's width (typer's rich mode keeps the source's line breaks, which wrap raggedly
    in a terminal narrower than the source), and indented paragraphs (examples) line by line."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(
        p if all(line.startswith(" ") for line in p.splitlines()) else " ".join(p.split()) for p in paragraphs
    )


def _plain_commands(typer_app: typer.Typer) -> None:
    """Every command of `typer_app` (and of its sub-apps, such as `saved`) reflowed and with a plain --help."""
    for command in typer_app.registered_commands:
        if command.help is None and command.callback is not None and command.callback.__doc__:
            command.help = reflow(command.callback.__doc__)
        if command.cls in (None, TyperCommand):
            command.cls = _Command
    for group in typer_app.registered_groups:
        sub = group.typer_instance
        if sub is not None:
            sub.info.cls = _Group  # the sub-app's own setting is a placeholder until set
            _plain_commands(sub)


_plain_commands(app)


def main() -> None:
    """The console entry point: usage errors (a bad option value, a missing argument) are one line
    and a hint like every other error, instead of click's framed box."""
    # typer vendors click; its exception classes are public only through this module
    from typer._click import exceptions as click

    from slmsql_cli.cli.common import err, fail

    try:
        code = app(prog_name="slmsql", standalone_mode=False)
    except click.NoArgsIsHelpError as exc:  # rich has printed the help already, building the error
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
