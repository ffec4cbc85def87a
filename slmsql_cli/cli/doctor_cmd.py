"""`slmsql doctor`: one look at whether this install works, with the command that fixes each problem."""

from __future__ import annotations

import json
import sys

import typer
from rich.markup import escape

from slmsql_cli.cli import options as opt
from slmsql_cli.cli.app import app
from slmsql_cli.cli.common import out, user_errors

_MARK = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


@app.command("doctor")
@user_errors
def doctor_cmd(
    as_json: bool = typer.Option(
        False, "--json", metavar="", help="Print the checks as one JSON document.", rich_help_panel=opt.OUTPUT
    ),
    no_decode: bool = typer.Option(
        False,
        "--no-decode",
        metavar="",
        help="Skip the decode check (the one that runs llama.cpp in a child process).",
        rich_help_panel=opt.PERFORMANCE,
    ),
) -> None:
    """Check this install: llama.cpp and its CPU features, a real decode, models, extras.

    The decode check makes a tiny model (about 1 MB) and samples 16 tokens from it in a child
    process, so a llama.cpp build that crashes is named here instead of at your first ask.
    Exits 1 when a check fails; missing optional pieces are warnings.

    Examples:

      slmsql doctor
      slmsql doctor --json --no-decode
    """
    from slmsql_cli import doctor

    checks = doctor.run_checks(decode=not no_decode)
    if as_json:
        sys.stdout.write(json.dumps(doctor.as_json(checks)) + "\n")
    else:
        for check in checks:
            out.print(f"{_MARK[check.status]} [bold]{check.name}[/]: {escape(check.detail)}", highlight=False)
            if check.fix:  # a fix of several lines (commands to copy) stays lined up under "fix:"
                fix = "\n          ".join(check.fix.splitlines())
                out.print(f"     [dim]fix: {escape(fix)}[/]", highlight=False)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
