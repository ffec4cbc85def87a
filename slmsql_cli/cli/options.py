"""Options that `prompt`, `ask`, `chat`, `eval` and `bench` share, defined once so their names, defaults and help agree.

The defaults come from `AskConfig` (and through it `SamplingParams`): a command writes
`n: opt.Samples = opt.DEFAULTS.n` and builds its config with `opt.ask_config(ctx.params)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

import typer

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


def finite(value: float | None) -> float | None:
    """Option callback: refuse inf and nan, which pass click's min/max checks (nan compares false)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number slmsql can use; give a finite value")
    return value


# Text, not Path: a Path would fold the `//` of a URL such as postgresql://host/db.
Db = Annotated[
    list[str],
    typer.Option(
        "--db",
        "-d",
        help="The database, opened read-only: a SQLite or DuckDB file, or postgresql://user@host:port/dbname "
        "(password from PGPASSWORD or ~/.pgpass). Or data files: CSV, TSV, JSON, JSON Lines, Parquet, "
        "Excel (.xlsx), or a folder of them; repeat --db for several. They become one table per file "
        "(per sheet) in a SQLite copy, made once and cached until the files change.",
        metavar="<path|url>",
        show_default=False,
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="A .gguf file, a Hugging Face repo id (owner/name[:file.gguf]) or an alias from `slmsql models`. Default: slm-sql-0.5b.",
    ),
]
MergeModel = Annotated[
    str | None,
    typer.Option(
        "--merge-model",
        help="Model that revises the top two drafts (CSC-SQL). Default: csc-merge-0.5b with the default model, else the --model itself.",
    ),
]
NoMerge = Annotated[
    bool, typer.Option("--no-merge", help="Skip the corrective merge step (faster, less accurate).")
]
Samples = Annotated[
    int,
    typer.Option(
        "-n", "--samples", min=1, max=64, help="SQL candidates to sample and vote on (papers: 8-64)."
    ),
]
MergeSamples = Annotated[
    int, typer.Option("--merge-n", min=1, max=64, help="Revisions the merge model samples (paper: 8).")
]
Temperature = Annotated[
    float,
    typer.Option("--temperature", "-t", min=0.0, callback=finite, help="Sampling temperature; 0 = greedy."),
]
MaxTokens = Annotated[
    int, typer.Option("--max-tokens", min=16, help="Longest reasoning + SQL per candidate, in tokens.")
]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Same seed, same candidates.")]
Threads = Annotated[
    int | None,
    # 512 is ggml's GGML_MAX_N_THREADS; more aborts llama.cpp with std::bad_alloc.
    typer.Option(
        "--threads",
        min=1,
        max=512,
        help="CPU threads. Default: the physical cores that other programs leave idle (measured at start), "
        "so a busy machine does not stall every step on a thread that shares a core.",
    ),
]
GpuLayers = Annotated[
    int | None,
    typer.Option(
        "--gpu-layers",
        min=0,
        metavar="N",
        help="Model layers to offload to the GPU; 0 = CPU only. Default: all, when the installed "
        "llama.cpp has GPU offload (CUDA, Metal, Vulkan); else the CPU.",
    ),
]
Context = Annotated[
    int | None,
    typer.Option(
        "--context",
        min=512,
        help="Cap the context window in tokens (less memory); it must hold the prompt and --max-tokens.",
    ),
]
PromptBudget = Annotated[
    int,
    typer.Option(
        "--prompt-budget",
        min=256,
        metavar="TOKENS",
        help="Longest prompt to build, in tokens. A schema that does not fit is cut to the tables the "
        "question names (and the tables they reference). The default is the longest prompt the "
        "OmniSQL/SLM-SQL models were trained and evaluated with.",
    ),
]
Timeout = Annotated[
    float,
    typer.Option("--timeout", min=0.1, callback=finite, help="Seconds one candidate query may run."),
]
NoValues = Annotated[
    bool, typer.Option("--no-values", help="Don't look up database values mentioned in the question.")
]
NoPromptCache = Annotated[
    bool,
    typer.Option(
        "--no-prompt-cache",
        help="Neither load nor save evaluated prompts in the on-disk prompt cache (the same answers, "
        "the whole prompt evaluated). SLMSQL_KV_CACHE_MB sets its size (default 1024; 0 turns it off).",
    ),
]
# An OpenAI-compatible server that generates instead of the in-process llama.cpp (remote_engine.py).
Endpoint = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        envvar="SLMSQL_ENDPOINT",
        metavar="URL",
        help="Generate on an OpenAI-compatible server (vLLM, llama-server, llama_cpp.server, Ollama) at this "
        "base URL, e.g. http://127.0.0.1:8000/v1. --model still names the model's GGUF here: its chat "
        "template and tokenizer (no weights are loaded) render the prompt. API key: SLMSQL_API_KEY.",
        show_default=False,
    ),
]
ServedModel = Annotated[
    str | None,
    typer.Option(
        "--served-model",
        envvar="SLMSQL_SERVED_MODEL",
        metavar="NAME",
        help="The model's name on the --endpoint server. Default: the one named like --model, else its only model.",
        show_default=False,
    ),
]
MergeEndpoint = Annotated[
    str | None,
    typer.Option(
        "--merge-endpoint",
        envvar="SLMSQL_MERGE_ENDPOINT",
        metavar="URL",
        help="A server of its own for the merge model (API key: SLMSQL_MERGE_API_KEY). Default: --endpoint.",
        show_default=False,
    ),
]
MergeServedModel = Annotated[
    str | None,
    typer.Option(
        "--merge-served-model",
        envvar="SLMSQL_MERGE_SERVED_MODEL",
        metavar="NAME",
        help="The merge model's name on its server. Default: the one named like --merge-model.",
        show_default=False,
    ),
]
EndpointTimeout = Annotated[
    float | None,
    typer.Option(
        "--endpoint-timeout",
        envvar="SLMSQL_ENDPOINT_TIMEOUT",
        min=1.0,
        callback=finite,
        metavar="SECONDS",
        help="Seconds one request to the --endpoint server may take (default 600).",
        show_default=False,
    ),
]
