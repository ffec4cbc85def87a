"""`slmsql models`: the known SLM-SQL models and what is already on this machine."""

from __future__ import annotations

import json
import sys

import typer

from slmsql_cli.cli.app import app
from slmsql_cli.cli.common import out, user_errors


@app.command("models")
@user_errors
def models_cmd(
    as_json: bool = typer.Option(
        False, "--json", metavar="", help="Print the list as JSON.", rich_help_panel="Output"
    ),
) -> None:
    """List the model aliases `--model` accepts, whether each is cached here, and where models are looked for.

    A model downloads from Hugging Face on first use, into the Hugging Face cache; the SLM-SQL
    checkpoints are safetensors, exported once to a cached Q8_0 GGUF (the type `slmsql export`
    writes by default). After that they work offline. On a machine without the network, fetch
    them elsewhere with `hf download REPO` and copy the Hugging Face cache folder, or pass any
    local .gguf file to --model.
    """
    from quantize.export import find_cached_export
    from slmsql_cli.models import DEFAULT_MERGE_MODEL, default_model, registry_status, search_places
    from slmsql_cli.render import models_tables

    rows = registry_status(find_cached_export)
    if as_json:
        doc = [
            {
                "alias": s.model.alias,
                "repo": s.model.repo,
                "role": s.model.role,
                "base": s.model.base,
                "note": s.model.note,
                "gguf": str(s.cached_gguf) if s.cached_gguf else None,
                "checkpoint_cached": s.cached_checkpoint,
            }
            for s in rows
        ]
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    for table in models_tables(out, rows, {default_model(), DEFAULT_MERGE_MODEL}):
        out.print(table, soft_wrap=False)
    out.print(
        "* default. Any Hugging Face repo id or local .gguf file also works with --model.",
        style="dim",
        markup=False,
        soft_wrap=False,
    )
    out.print("Models are looked for in:", markup=False)
    for what, folder in search_places():
        out.print(f"  {what}", markup=False, highlight=False)
        out.print(f"    {folder}", markup=False, highlight=False, soft_wrap=True)  # whole, to copy
    out.print(
        "Without the network here, download on another machine and copy its cache folder:", markup=False
    )
    out.print(f"  hf download {rows[0].model.repo}", markup=False, highlight=False, soft_wrap=True)
