"""The `slmsql` Typer app: its name, root help, `--version`, and how every command's --help looks:
`-h` as well as `--help` (inherited by every command), usage lines and value labels without
Python types or typer's `{ARG}` (`_plain_params`), prose reflowed (`reflow`).

The command modules (`*_cmd.py`) import `app` from here and register themselves on it;
`cli/__init__.py` imports them all (that order is the order in --help), then calls
`finish_help`, and holds the entry point. Nothing here imports a command module, so a command
module and the app never import each other.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import DefaultPlaceholder

from slmsql_cli import __version__


class _Argument(TyperArgument):
    """An argument as --help shows it: its metavar alone (QUESTION, not `QUESTION <str>`), and in
    the usage line bare when required and in one pair of brackets when optional (typer writes
    `{QUESTION}` and, for a metavar that has brackets already, `[[CHECKPOINT]]`)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return name + "..." if self.nargs != 1 else name


def _plain_params(params: list[Any]) -> None:
    """No Python type anywhere in --help: an argument is its metavar (upper case, no brackets), a
    flag has no value label (not `<bool>`), and an option whose value has no metavar is named
    after the option (`--output OUTPUT`, not `<path>`). typer builds these parameters itself and
    offers no hook for their class, hence the class of each argument is set here."""
    for param in params:
        if isinstance(param, TyperArgument):
            param.__class__ = _Argument
            param.metavar = (param.metavar or param.name or "").strip("[]").upper()
        elif isinstance(param, TyperOption) and param.metavar is None:
            long = [o for o in param.opts if o.startswith("--")]
            param.metavar = "" if param.is_flag else (long[0][2:] if long else param.name or "").upper()


def _plain_help_option(option: Any, panel: str | None) -> Any:
    """-h/--help as a flag with no `<bool>` label, in `panel` (a command's Output panel)."""
    if option is not None:
        option.metavar = ""
        option.rich_help_panel = panel
    return option


def _help_panel(params: list[Any]) -> str | None:
    panels = {getattr(p, "rich_help_panel", None) for p in params}
    return "Output" if "Output" in panels else None


class _Command(TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_params(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        return _plain_help_option(super().get_help_option(ctx), _help_panel(self.params))


class _Group(TyperGroup):  # a group with options of its own (`eval`) shows --help as a command does
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_params(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        return _plain_help_option(super().get_help_option(ctx), _help_panel(self.params))


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
    context_settings={"help_option_names": ["-h", "--help"]},  # every command inherits them
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


def reflow(doc: str) -> str:
    """A docstring as --help shows it: each prose paragraph on one line, so that rich wraps it to
    the terminal's width (typer's rich mode keeps the source's line breaks, which wrap raggedly
    in a terminal narrower than the source), and indented paragraphs (examples) line by line."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(
        p if all(line.startswith(" ") for line in p.splitlines()) else " ".join(p.split()) for p in paragraphs
    )


def finish_help(typer_app: typer.Typer) -> None:
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
            callback = sub.registered_callback  # a group that does something itself (`models`)
            if callback is not None and isinstance(callback.help, (DefaultPlaceholder, type(None))):
                if callback.callback is not None and callback.callback.__doc__:
                    callback.help = reflow(callback.callback.__doc__)
            finish_help(sub)
