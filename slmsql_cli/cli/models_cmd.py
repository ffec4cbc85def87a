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
    from rich.table import Table

    from quantize.export import find_cached_export
    from slmsql_cli.models import DEFAULT_MERGE_MODEL, default_model, registry_status

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
    table = Table(title="Known models (use the alias with --model / --merge-model)")
    for col in ("alias", "role", "Hugging Face repo", "base model", "cached", "note"):
        table.add_column(col, no_wrap=col in ("alias", "Hugging Face repo"))
    defaults = {default_model(), DEFAULT_MERGE_MODEL}
    for s in rows:
        cached = "GGUF" if s.cached_gguf else ("checkpoint" if s.cached_checkpoint else "-")
        alias = s.model.alias + (" *" if s.model.alias in defaults else "")
        table.add_row(alias, s.model.role, s.model.repo, s.model.base, cached, s.model.note)
    out.print(table)
    out.print("[dim]* default. Any Hugging Face repo id or local .gguf file also works with --model.[/]")
