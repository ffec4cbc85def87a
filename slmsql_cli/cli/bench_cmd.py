"""`slmsql bench`: tokens per second and seconds per question for several N."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import cast

import typer

from slmsql_cli.cli import options as opt
from slmsql_cli.cli.app import app
from slmsql_cli.cli.common import StatusLine, err, out, user_errors
from slmsql_cli.config import AskConfig, ModelSource
from slmsql_cli.quantize import cached_gguf


@app.command("bench")
@user_errors
@opt.ask_options(
    only=(
        "model",
        "endpoint",
        "served_model",
        "endpoint_timeout",
        "threads",
        "gpu_layers",
        "prompt_budget",
        "constrain",
    )
)
def bench(
    *,
    db: opt.Db,
    import_timeout: opt.ImportTimeout = opt.IMPORT_TIMEOUT,
    ns: str = typer.Option(
        "1,4,8",
        "-n",
        metavar="N,N,...",
        show_default=False,
        help="Sample counts to time, 1-64 (default 1,4,8).",
        rich_help_panel=opt.SAMPLING,
    ),
    max_tokens: int = typer.Option(
        256,
        "--max-tokens",
        callback=opt.bounded(1),
        metavar="N",
        show_default=False,
        help="Tokens generated per candidate, a fixed length (default 256).",
        rich_help_panel=opt.SAMPLING,
    ),
    source: ModelSource,
    config: AskConfig,
    question: str = typer.Option(
        "How many rows does the largest table have?",
        "--question",
        "-q",
        metavar="TEXT",
        show_default=False,
        help="The question whose prompt is timed.",
        rich_help_panel=opt.DATA,
    ),
) -> None:
    """Time this machine: prompt tokens/s, generated tokens/s, seconds per question and peak memory for each N.

    Every N evaluates the prompt from scratch and generates exactly --max-tokens per candidate, so
    rows compare (with --constrain, the names constraint checks every token, as ask's does). It
    says on stderr how many threads run and why. With --endpoint the server is
    timed from here (wall clock; prompt tok/s n/a, and a server that ignores ignore_eos stops
    early). The last line printed is one JSON object with the same figures, for scripts.

    Example:

      slmsql bench -d slmsql_cli/data/bookshop.sqlite -n 1,4,8,16
    """
    from rich.table import Table
    from rich.text import Text

    from slmsql_cli import models
    from slmsql_cli.bench import report, run_bench
    from slmsql_cli.cpu import explain_threads
    from slmsql_cli.database import open_database
    from slmsql_cli.engine import Engine
    from slmsql_cli.pipeline import Pipeline, chat_text

    try:
        counts = sorted({int(x) for x in ns.split(",") if x.strip()})
    except ValueError:
        raise typer.BadParameter(f"-n takes comma-separated integers, got {ns!r}") from None
    if not counts or min(counts) < 1 or max(counts) > 64:
        raise typer.BadParameter("-n takes counts from 1 to 64, as ask's -n does")
    database = open_database(db)
    with StatusLine("loading the model…"):
        path = models.resolve(source.model or models.default_model(), export=cached_gguf)
        if config.endpoint:  # the server generates; the GGUF here gives the template and tokenizer
            from slmsql_cli.remote_engine import RemoteEngine

            # stands where Engine stands: the same methods, the server generating
            engine = cast(
                Engine, RemoteEngine(path, config.endpoint, name=source.model or models.default_model())
            )
        else:
            engine = Engine(path, threads=config.threads, gpu_layers=config.gpu_layers)
    err.print(f"{engine.device}; threads: {explain_threads(engine.threads, config.threads)}", highlight=False)
    with engine, StatusLine(f"timing N = {', '.join(map(str, counts))} with {max_tokens} tokens each…"):
        config = replace(config, max_tokens=max_tokens)
        pipeline = Pipeline(engine, None, config)
        message = pipeline.generation_message(database, question)
        prompt_text = chat_text(engine, message.text)
        constraint = pipeline.names(database) if config.constrain else None
        rows = run_bench(engine, prompt_text, counts, max_tokens, constraint=constraint)
    constrained = " · --constrain" if config.constrain else ""
    table = Table(
        title=Text(f"{path.name} · {engine.device} · {rows[0].prompt_tokens}-token prompt{constrained}")
    )
    for col in ("N", "prompt tok/s", "generated tok/s", "s / question", "overhead", "peak RSS MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r.n),
            f"{r.prompt_tokens_per_s:.0f}" if r.prompt_tokens_per_s else "n/a",
            f"{r.generated_tokens_per_s:.1f}",
            f"{r.seconds_per_question:.1f}",
            f"{r.overhead_fraction:.1%}",
            f"{r.peak_rss_mb:.0f}",
        )
    out.print(table, soft_wrap=False)  # titles wrap inside the terminal
    sys.stdout.write(
        json.dumps(
            report(
                str(path),
                engine.threads,
                max_tokens,
                rows,
                device=engine.device,
                constrained=bool(config.constrain),
            )
        )
        + "\n"
    )
