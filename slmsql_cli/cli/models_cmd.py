"""`slmsql models` and `slmsql models default`: the known models, what is on this machine, the
models a command runs without --model, and the one setting that changes them."""

from __future__ import annotations

import json
import os
import sys

import typer

from slmsql_cli.cli.app import app
from slmsql_cli.cli.common import err, out, user_errors

models_app = typer.Typer(no_args_is_help=False)
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
@user_errors
def models_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(
        False, "--json", metavar="", help="Print the list as JSON.", rich_help_panel="Output"
    ),
) -> None:
    """List the models --model accepts, their download size, which are here, and the default.

    A model downloads from Hugging Face on first use (the sizes below), into the Hugging Face
    cache; the SLM-SQL checkpoints are safetensors, exported once to a cached Q8_0 GGUF. After
    that they work offline. When the default models are not downloaded yet, the list ends with
    the `hf download` commands that fetch them (on this machine, or on another and copy the
    cache folder), or use any local .gguf file with --model.

    Examples:

      slmsql models
      slmsql models --json
      slmsql models default slm-sql-1.5b
    """
    if ctx.invoked_subcommand is not None:
        return
    from slmsql_cli import models
    from slmsql_cli.quantize.export import find_cached_export
    from slmsql_cli.render import models_tables

    rows = models.registry_status(find_cached_export)
    if as_json:
        doc = [
            {
                "alias": s.model.alias,
                "repo": s.model.repo,
                "role": s.model.role,
                "base": s.model.base,
                "note": s.model.note,
                "download": s.model.download,
                "download_gb": s.model.download_gb,
                "gguf": str(s.cached_gguf) if s.cached_gguf else None,
                "checkpoint_cached": s.cached_checkpoint,
            }
            for s in rows
        ]
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    choice = models.choose()
    for table in models_tables(out, rows, set(choice.specs())):
        out.print(table, soft_wrap=False)
    out.print(
        "* default. Any Hugging Face repo id or local .gguf file also works with --model.",
        style="dim",
        markup=False,
        soft_wrap=False,
    )
    out.print(f"Default model: {choice.describe()}", markup=False, highlight=False)
    out.print(
        "  change it with: slmsql models default NAME|PATH (--model overrides it once)",
        markup=False,
        highlight=False,
    )
    out.print("Models are looked for in:", markup=False)
    for what, folder in models.search_places():
        out.print(f"  {what}", markup=False, highlight=False)
        out.print(f"    {folder}", markup=False, highlight=False, soft_wrap=True)  # whole, to copy
    missing = models.not_downloaded(choice.specs())
    if not missing:
        out.print("What the default needs is on this machine: ask works offline.", markup=False)
        return
    fix = models.first_run_fix(missing)  # the words `ask` and `doctor` use
    out.print(f"Not downloaded yet: {', '.join(missing)}. The fix:", markup=False, highlight=False)
    out.print(fix.intro, markup=False, highlight=False, soft_wrap=False)
    for command in fix.commands:
        out.print(f"  {command}", markup=False, highlight=False, soft_wrap=True)  # whole, to copy
    out.print(fix.instead, markup=False, highlight=False, soft_wrap=False)


@models_app.command("default")
@user_errors
def default_cmd(
    model: str | None = typer.Argument(
        None,
        metavar="[NAME|PATH]",
        help="An alias, a Hugging Face repo id or a .gguf file.",
        show_default=False,
    ),
    clear: bool = typer.Option(
        False, "--clear", metavar="", help="Forget the setting: back to the built-in model."
    ),
) -> None:
    """Set once the model that ask, chat, serve and bench use without --model.

    Without NAME|PATH it prints the default model and what set it. --model overrides the setting
    for one command and SLMSQL_MODEL for one shell: --model, then SLMSQL_MODEL, then this
    setting, then slm-sql-0.5b. A model of your own revises its own drafts unless --merge-model
    names a merge model. A file is kept as its absolute path; nothing is downloaded now. The
    setting is one line in ~/.config/slmsql/default-model (XDG_CONFIG_HOME moves it).

    Examples:

      slmsql models default slm-sql-1.5b
      slmsql models default ~/models/sql-1.5b.Q8_0.gguf
      slmsql models default
      slmsql models default --clear
    """
    from slmsql_cli import models, settings
    from slmsql_cli.errors import UserError

    if clear and model is not None:
        raise UserError("give a model or --clear, not both", "slmsql models default --help shows how")
    if clear:
        removed = settings.clear_default_model()
        err.print(
            ("default model setting removed" if removed else "no default model was set")
            + f"; the default is now {models.choose().describe()}",
            markup=False,
            highlight=False,
        )
        return
    if model is not None:
        stored = models.storable_default(model)
        where = settings.store_default_model(stored)
        err.print(f"default model set to {stored} (in {where})", markup=False, highlight=False)
    choice = models.choose()
    if model is None:
        out.print(choice.model, markup=False, highlight=False, soft_wrap=True)
    err.print(f"default model: {choice.describe()}", markup=False, highlight=False)
    if model is not None and choice.source == models.FROM_ENV:
        err.print(
            f"note: SLMSQL_MODEL={os.environ.get('SLMSQL_MODEL', '')} is set in this shell and comes first",
            markup=False,
            highlight=False,
        )
