"""`slmsql export`: a Hugging Face checkpoint (or LoRA adapter) to a verified GGUF."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.markup import escape

from slmsql_cli.cli.app import app
from slmsql_cli.cli.common import err, out, user_errors
from slmsql_cli.cli.options import OUTPUT, PERFORMANCE, bounded
from slmsql_cli.errors import UserError
from slmsql_cli.models import DEFAULT_QUANT
from slmsql_cli.quantize.quantizer import ALIASES, FTYPES, RECIPES

QUANT_HELP = (
    f"A llama.cpp type ({', '.join(FTYPES)}) or a mixed recipe: "
    + "; ".join(f"{name} = {r.note}" for name, r in RECIPES.items())
    + f". Default {DEFAULT_QUANT}, the type `ask` exports to."
)
QUANT = "Quantization"


def _pick_quant(q4: bool, q5: bool, q8: bool, f16: bool, quant: str | None) -> str:
    flags = ((q4, ALIASES["q4"]), (q5, ALIASES["q5"]), (q8, ALIASES["q8"]), (f16, "f16"))
    chosen = [name for flag, name in flags if flag]
    if quant:
        chosen.append(quant)
    if len(chosen) > 1:
        raise UserError(f"choose one quantization, got {len(chosen)}: {', '.join(chosen)}")
    return chosen[0] if chosen else DEFAULT_QUANT


@app.command("export")
@user_errors
def export_cmd(
    checkpoint: str | None = typer.Argument(
        None,
        metavar="[CHECKPOINT]",
        help="A Hugging Face model folder or repo id, a LoRA adapter folder, or a `slmsql train` "
        "run folder (default: the latest run, runs/latest).",
        show_default=False,
    ),
    out_path: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        metavar="FILE",
        help="The GGUF file to write (default: ./<model>-<QUANT>.gguf).",
        rich_help_panel=OUTPUT,
    ),
    q4: bool = typer.Option(
        False,
        "--q4",
        metavar="",
        help="Q4_K_M: the smallest type that stays close to the original (Q5_0 where the width "
        "is not a multiple of 256).",
        rich_help_panel=QUANT,
    ),
    q5: bool = typer.Option(
        False,
        "--q5",
        metavar="",
        help="Q5_K_M: a little larger, a little closer to the original.",
        rich_help_panel=QUANT,
    ),
    q8: bool = typer.Option(
        False,
        "--q8",
        metavar="",
        help="Q8_0 (the default): nearly lossless; on the 0.5B models as fast as Q4_K_M.",
        rich_help_panel=QUANT,
    ),
    f16: bool = typer.Option(
        False, "--f16", metavar="", help="F16: no quantization (largest).", rich_help_panel=QUANT
    ),
    quant: str | None = typer.Option(None, "--quant", metavar="TYPE", help=QUANT_HELP, rich_help_panel=QUANT),
    force: bool = typer.Option(
        False, "--force", "-f", metavar="", help="Overwrite the output file.", rich_help_panel=OUTPUT
    ),
    verify: bool | None = typer.Option(
        None,
        "--verify/--no-verify",
        metavar="",
        help="Compare the GGUF's logits with the source model's (default: when torch is installed).",
        show_default=False,
        rich_help_panel=QUANT,
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        callback=bounded(1),
        metavar="N",
        help="CPU threads for quantizing and verifying.",
        rich_help_panel=PERFORMANCE,
    ),
    as_json: bool = typer.Option(
        False, "--json", metavar="", help="Print the result as one JSON object.", rich_help_panel=OUTPUT
    ),
) -> None:
    """Convert a Hugging Face checkpoint to a GGUF that llama.cpp runs on a laptop, and check it.

    Weights are read from safetensors with numpy (no torch needed), written as F16 and quantized
    by llama.cpp itself (default Q8_0, the type `ask` exports to: docs/PERFORMANCE.md measures
    every type's quality and speed).

    With torch installed, the same tokens go through the original model and the GGUF; the export
    fails, leaving no file, if their logits disagree beyond the tolerance of the chosen type.

    A LoRA adapter folder (adapter_config.json) is merged into its base model first.
    Architectures: Qwen2/Qwen2.5, Qwen3, Llama (deepseek-coder, Llama 3.x), Gemma 3.

    Examples:

      slmsql export runs/my-run/final --out sql-model.gguf
      slmsql export cycloneboy/SLM-SQL-0.5B --q8
      slmsql ask -d shop.sqlite -m sql-model.gguf "How many orders are there?"
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from slmsql_cli.quantize.export import ExportConfig, export
    from slmsql_cli.runs import run_checkpoint

    picked = run_checkpoint(Path(checkpoint).expanduser()) if checkpoint else None
    if picked is not None:
        err.print(f"{checkpoint} is a training run: exporting its checkpoint {picked}", markup=False)
    config = ExportConfig(
        checkpoint=checkpoint,
        out=out_path,
        quant=_pick_quant(q4, q5, q8, f16, quant),
        force=force,
        verify=verify,
        threads=threads,
    )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[dim]{task.fields[tensor]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    task = progress.add_task("tensors", total=None, tensor="")

    def on_tensor(done: int, total: int, name: str) -> None:
        progress.update(task, completed=done, total=total, tensor=name)

    def on_stage(message: str) -> None:
        progress.update(task, description=message)
        err.print(f"[dim]{escape(message)}…[/]")

    with progress:
        result = export(config, on_tensor=on_tensor, on_stage=on_stage)

    report = result.verification
    if as_json:
        doc = {
            "path": str(result.path),
            "quant": result.quant,
            "arch": result.converted.arch,
            "source": str(result.source.path),
            "parameters": result.converted.n_parameters,
            "tensors": result.converted.n_tensors,
            "bytes": result.size,
            "seconds": round(result.seconds, 2),
            "tokenizer": {"model": result.converted.vocab.model, "pre": result.converted.vocab.pre},
            "verification": None
            if report is None
            else {
                "passed": report.passed,
                "tokens_match": report.tokens_match,
                "max_abs_delta": report.max_abs_delta,
                "rel_delta": report.rel_delta,
                "top1_agreement": report.top1_agreement,
                "tokens": report.n_tokens,
            },
            "notes": result.notes,
        }
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    out.print(str(result.path))
    err.print(
        f"[green]exported[/] {escape(result.source.label)} ({result.converted.arch}, {result.converted.n_parameters / 1e6:.1f}M parameters, "
        f"tokenizer {result.converted.vocab.model}/{result.converted.vocab.pre}) → {result.quant.upper()}, {result.size / 2**20:.1f} MiB in {result.seconds:.1f}s"
    )
    if report is not None:
        err.print(f"[green]verified[/]: {escape(report.summary())}")
    for note in result.notes:
        err.print(f"[dim]{escape(note)}[/]")
