"""The `slmsql` command line: one small module per command, registered here.

The app itself (name, root help, --version) is `app.py`; each `*_cmd.py` registers its command
on it, and importing them here is what registers them. Command modules import only typer/rich
at the top; the pipeline, llama.cpp, torch and transformers are imported inside the command
functions so that `slmsql --help` stays fast and `ask` never pulls in torch.
"""

from __future__ import annotations

import sys

import typer

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
from slmsql_cli.cli.app import app, finish_help

__all__ = ["app", "main"]

finish_help(app)


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
