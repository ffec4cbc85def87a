"""Options that `prompt`, `ask`, `chat`, `eval` and `bench` share, defined once so their names, defaults and help agree.

The defaults come from `AskConfig` (and through it `SamplingParams`): a command writes
`n: opt.Samples = opt.DEFAULTS.n` and builds its config with `opt.ask_config(ctx.params)`.

`--help` is written for an 80-column terminal: options sit in panels (MODEL, SAMPLING, DATA,
OUTPUT, PERFORMANCE), a value is a short metavar (a flag has none, not `<bool>`), a range is
checked by a callback rather than click's `min`/`max` (which print `[1<=x<=64]` beside every
metavar and leave the help column 24 characters wide), and a default is part of the sentence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer

from slmsql_cli.models import DEFAULT_MERGE_MODEL, DEFAULT_MODEL
from slmsql_cli.pipeline import AskConfig

DEFAULTS = AskConfig()
# AskConfig fields that the commands' options carry under the same name
_SAME_NAME = (
    "n",
    "temperature",
    "max_tokens",
    "seed",
    "merge_n",
    "timeout",
    "threads",
    "context",
    "prompt_budget",
    "gpu_layers",
)


def ask_config(params: Mapping[str, Any]) -> AskConfig:
    """The AskConfig of a command's options (`typer.Context.params`): the options it has, by name,
    `--no-merge`, `--no-values` and `--no-prompt-cache` turned around, the --endpoint options made
    into `remote_engine.Endpoint`s; AskConfig's defaults for the rest."""
    values: dict[str, Any] = {k: params[k] for k in _SAME_NAME if k in params}
    if "no_merge" in params:
        values["merge"] = not params["no_merge"]
    if "no_values" in params:
        values["use_values"] = not params["no_values"]
    if "no_prompt_cache" in params:
        values["prompt_cache"] = not params["no_prompt_cache"]
    if params.get("endpoint") or params.get("merge_endpoint"):
        from slmsql_cli.remote_engine import endpoints

        values["endpoint"], values["merge_endpoint"] = endpoints(
            params.get("endpoint"),
            params.get("served_model"),
            params.get("merge_endpoint"),
            params.get("merge_served_model"),
            params.get("endpoint_timeout"),
        )
    return AskConfig(**values)


# --help panels, in the order commands list their options
MODEL = "Model"
SAMPLING = "Sampling"
DATA = "Data"
OUTPUT = "Output"
PERFORMANCE = "Performance"


def finite(value: float | None) -> float | None:
    """Option callback: refuse inf and nan, which pass click's min/max checks (nan compares false)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number slmsql can use; give a finite value")
    return value


def bounded(low: float | None = None, high: float | None = None) -> Callable[[Any], Any]:
    """An option callback that checks what click's `min`/`max` would (in click's words), and that
    a float is finite, without printing the range beside the metavar in --help."""

    def check(value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, float):
            finite(value)
        if (low is not None and value < low) or (high is not None and value > high):
            if low is not None and high is not None:
                span = f"{low}<=x<={high}"
            else:
                span = f"x>={low}" if low is not None else f"x<={high}"
            raise typer.BadParameter(f"{value} is not in the range {span}.")
        return value

    return check


# Text, not Path: a Path would fold the `//` of a URL such as postgresql://host/db.
Db = Annotated[
    list[str],
    typer.Option(
        "--db",
        "-d",
        help="The database, read-only: a SQLite or DuckDB file, a postgresql:// URL, or data files "
        "(CSV, JSON, Parquet, Excel, a folder; repeat --db).",
        metavar="PATH|URL",
        show_default=False,
        rich_help_panel=DATA,
    ),
]
# serve's --db: the same text as ask's (files, folders, URLs), one database each, with a name.
ServeDb = Annotated[
    list[str],
    typer.Option(
        "--db",
        "-d",
        help="A database to serve, as NAME=DB or DB: anything ask's --db takes (a SQLite or DuckDB "
        "file, a postgresql:// URL, data files or a folder of them), named after the file or the "
        "URL's database when NAME= is left out. Repeat for several; clients name them, never paths.",
        metavar="NAME=DB",
        show_default=False,
        rich_help_panel=DATA,
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help=f"A .gguf file, Hugging Face repo or `slmsql models` alias (default {DEFAULT_MODEL}).",
        metavar="MODEL",
        rich_help_panel=MODEL,
    ),
]
MergeModel = Annotated[
    str | None,
    typer.Option(
        "--merge-model",
        help=f"Revises a split vote (default {DEFAULT_MERGE_MODEL}, or --model when given).",
        metavar="MODEL",
        rich_help_panel=MODEL,
    ),
]
NoMerge = Annotated[
    bool,
    typer.Option(
        "--no-merge", help="Skip the merge step (faster, less accurate).", metavar="", rich_help_panel=MODEL
    ),
]
Samples = Annotated[
    int,
    typer.Option(
        "-n",
        "--samples",
        callback=bounded(1, 64),
        metavar="N",
        show_default=False,
        help=f"SQL candidates to vote on, 1-64 (default {DEFAULTS.n}).",
        rich_help_panel=SAMPLING,
    ),
]
MergeSamples = Annotated[
    int,
    typer.Option(
        "--merge-n",
        callback=bounded(1, 64),
        metavar="N",
        show_default=False,
        help=f"Revisions the merge model samples (default {DEFAULTS.merge_n}).",
        rich_help_panel=SAMPLING,
    ),
]
Temperature = Annotated[
    float,
    typer.Option(
        "--temperature",
        "-t",
        callback=bounded(0.0),
        metavar="T",
        show_default=False,
        help=f"Sampling temperature; 0 = greedy (default {DEFAULTS.temperature}).",
        rich_help_panel=SAMPLING,
    ),
]
MaxTokens = Annotated[
    int,
    typer.Option(
        "--max-tokens",
        callback=bounded(16),
        metavar="N",
        show_default=False,
        help=f"Most tokens per candidate (default {DEFAULTS.max_tokens}).",
        rich_help_panel=SAMPLING,
    ),
]
Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        callback=bounded(0),
        metavar="N",
        show_default=False,
        help=f"Same seed, same candidates (default {DEFAULTS.seed}).",
        rich_help_panel=SAMPLING,
    ),
]
Threads = Annotated[
    int | None,
    # 512 is ggml's GGML_MAX_N_THREADS; more aborts llama.cpp with std::bad_alloc.
    typer.Option(
        "--threads",
        callback=bounded(1, 512),
        metavar="N",
        help="CPU threads (default: idle cores).",
        rich_help_panel=PERFORMANCE,
    ),
]
GpuLayers = Annotated[
    int | None,
    typer.Option(
        "--gpu-layers",
        callback=bounded(0),
        metavar="N",
        help="Layers to offload to a GPU; 0 = CPU only (default: all, if llama.cpp has a GPU).",
        rich_help_panel=PERFORMANCE,
    ),
]
Context = Annotated[
    int | None,
    typer.Option(
        "--context",
        callback=bounded(512),
        metavar="TOKENS",
        help="Cap the context window (less memory); it must hold the prompt and --max-tokens.",
        rich_help_panel=PERFORMANCE,
    ),
]
PromptBudget = Annotated[
    int,
    typer.Option(
        "--prompt-budget",
        callback=bounded(256),
        metavar="TOKENS",
        show_default=False,
        help=f"Longest prompt (default {DEFAULTS.prompt_budget}); a larger schema is cut to the "
        "question's tables.",
        rich_help_panel=PERFORMANCE,
    ),
]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        callback=bounded(0.1),
        metavar="SECONDS",
        show_default=False,
        help=f"Query time limit (default {DEFAULTS.timeout:g} s).",
        rich_help_panel=PERFORMANCE,
    ),
]


def _import_budget(value: float | None) -> float | None:
    """Option callback: the time budget of a data-file import (`files.BUDGET`), set for this run."""
    bounded(1.0)(value)
    if value is not None:
        from slmsql_cli import files

        files.BUDGET.timeout = value
    return value


IMPORT_TIMEOUT = 600.0
ImportTimeout = Annotated[
    float,
    typer.Option(
        "--import-timeout",
        envvar="SLMSQL_IMPORT_TIMEOUT",
        show_envvar=False,
        callback=_import_budget,
        metavar="SECONDS",
        show_default=False,
        help="Import time limit (default 600 s).",
        rich_help_panel=DATA,
    ),
]
NoValues = Annotated[
    bool,
    typer.Option(
        "--no-values",
        help="Skip the values the question names.",
        metavar="",
        rich_help_panel=DATA,
    ),
]
NoPromptCache = Annotated[
    bool,
    typer.Option(
        "--no-prompt-cache",
        help="Don't load or save evaluated prompts on disk (SLMSQL_KV_CACHE_MB sizes the cache).",
        metavar="",
        rich_help_panel=PERFORMANCE,
    ),
]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Threads and each candidate's SQL, vote and text (cut; --json has it whole).",
        metavar="",
        rich_help_panel=OUTPUT,
    ),
]
# An OpenAI-compatible server that generates instead of the in-process llama.cpp (remote_engine.py).
# A model server instead of llama.cpp here (remote_engine.py). Each option also reads its SLMSQL_*
# variable (not shown in --help, to keep it short: the README's scale-out section lists them).
SERVER_ENGINE = "Model server"
Endpoint = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        envvar="SLMSQL_ENDPOINT",
        show_envvar=False,
        metavar="URL",
        help="OpenAI-compatible server (its /v1 URL) to generate on; key: SLMSQL_API_KEY.",
        show_default=False,
        rich_help_panel=SERVER_ENGINE,
    ),
]
ServedModel = Annotated[
    str | None,
    typer.Option(
        "--served-model",
        envvar="SLMSQL_SERVED_MODEL",
        show_envvar=False,
        metavar="NAME",
        help="Its model name (default: like --model).",
        show_default=False,
        rich_help_panel=SERVER_ENGINE,
    ),
]
MergeEndpoint = Annotated[
    str | None,
    typer.Option(
        "--merge-endpoint",
        envvar="SLMSQL_MERGE_ENDPOINT",
        show_envvar=False,
        metavar="URL",
        help="The merge model's server.",
        show_default=False,
        rich_help_panel=SERVER_ENGINE,
    ),
]
MergeServedModel = Annotated[
    str | None,
    typer.Option(
        "--merge-served-model",
        envvar="SLMSQL_MERGE_SERVED_MODEL",
        show_envvar=False,
        metavar="NAME",
        help="The merge model's name on its server.",
        show_default=False,
        rich_help_panel=SERVER_ENGINE,
    ),
]
EndpointTimeout = Annotated[
    float | None,
    typer.Option(
        "--endpoint-timeout",
        envvar="SLMSQL_ENDPOINT_TIMEOUT",
        show_envvar=False,
        callback=bounded(1.0),
        metavar="SECONDS",
        help="Request time limit (default 600 s).",
        show_default=False,
        rich_help_panel=SERVER_ENGINE,
    ),
]
