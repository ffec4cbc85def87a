"""`slmsql models`: the known SLM-SQL models and what is already on this machine."""

from __future__ import annotations

import json
import sys

import typer

from slmsql_cli.cli import app
from slmsql_cli.cli.common import out, user_errors


@app.command("models")
@user_errors
def models_cmd(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """List the model aliases `--model` accepts and whether each is cached here.

    Models download from Hugging Face on first use (into the huggingface-hub cache) and the
    safetensors checkpoints are exported once to a cached 4-bit GGUF; after that they work offline.
    """
    from quantize.export import find_cached_export
    from slmsql_cli.models import DEFAULT_MERGE_MODEL, default_model, registry_status
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
    out.print("[dim]* default. Any Hugging Face repo id or local .gguf file also works with --model.[/]")
