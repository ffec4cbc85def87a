"""The settings of an answer (`AskConfig`) and the models that give it (`ModelSource`).

Each field that a command offers as an option carries that option in its metadata (`option()`:
its flags, help, --help panel, metavar and range), the way TRL's configs carry their help
(`field(default=..., metadata={"help": ...})`). The commands' options are built from these
declarations (`cli/options.ask_options`), so `ask`, `chat`, `eval`, `serve`, `prompt` and `bench`
cannot drift apart in a name, a default or a help line. Plain data only: no typer here.

The field order is the order of the options in --help, within each panel (`PANELS`).

This module is written without `from __future__ import annotations` on purpose: an option's type
is its field's type, read as an object.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slmsql_cli.engine_protocol import SamplingParams
from slmsql_cli.errors import UserError
from slmsql_cli.models import DEFAULT_MERGE_MODEL
from slmsql_cli.prompts import PROMPT_BUDGET  # one home (why 6,144: prompts.py); train's budget too

if TYPE_CHECKING:
    from slmsql_cli.remote_engine import Endpoint

# --help panels
MODEL = "Model"
SAMPLING = "Sampling"
DATA = "Data"
OUTPUT = "Output"
PERFORMANCE = "Performance"
SERVER_ENGINE = "Model server"  # an OpenAI-compatible server generates instead of llama.cpp here
# the order the shared options are listed in, panel by panel
PANELS = (MODEL, SAMPLING, DATA, PERFORMANCE, SERVER_ENGINE, OUTPUT)


def option(
    *flags: str,
    help: str,
    panel: str,
    metavar: str = "",
    low: float | None = None,
    high: float | None = None,
    env: str | None = None,
) -> dict[str, Any]:
    """A field's command-line option, as the field's metadata.

    `help` may name the field's default as `{default}` (a format field: `{default:g}`), so the
    sentence cannot disagree with it. A bool field is a flag that turns its default around
    (`merge: bool = True` is `--no-merge`). `low`/`high` bound the value (checked by the command
    line, not here); `env` is a variable that gives the value too (not shown in --help)."""
    return {
        "flags": flags,
        "help": help,
        "panel": panel,
        "metavar": metavar,
        "low": low,
        "high": high,
        "env": env,
    }


@dataclass
class ModelSource:
    """Which models write the SQL: a local GGUF (or an alias or Hugging Face repo that resolves to
    one), and optionally a model server that generates instead (remote_engine.py), whose options
    also read their SLMSQL_* variable (the README's scale-out section lists them)."""

    model: str | None = field(
        default=None,
        metadata=option(
            "--model",
            "-m",
            metavar="MODEL",
            help="A .gguf file, Hugging Face repo or alias (default: `slmsql models default`).",
            panel=MODEL,
        ),
    )
    merge_model: str | None = field(
        default=None,
        metadata=option(
            "--merge-model",
            metavar="MODEL",
            help=f"Revises a split vote ({DEFAULT_MERGE_MODEL} for the built-in model, else the model itself).",
            panel=MODEL,
        ),
    )
    endpoint: str | None = field(
        default=None,
        metadata=option(
            "--endpoint",
            env="SLMSQL_ENDPOINT",
            metavar="URL",
            help="OpenAI-compatible server (its /v1 URL) to generate on; key: SLMSQL_API_KEY.",
            panel=SERVER_ENGINE,
        ),
    )
    served_model: str | None = field(
        default=None,
        metadata=option(
            "--served-model",
            env="SLMSQL_SERVED_MODEL",
            metavar="NAME",
            help="Its model name (default: like --model).",
            panel=SERVER_ENGINE,
        ),
    )
    merge_endpoint: str | None = field(
        default=None,
        metadata=option(
            "--merge-endpoint",
            env="SLMSQL_MERGE_ENDPOINT",
            metavar="URL",
            help="The merge model's server.",
            panel=SERVER_ENGINE,
        ),
    )
    merge_served_model: str | None = field(
        default=None,
        metadata=option(
            "--merge-served-model",
            env="SLMSQL_MERGE_SERVED_MODEL",
            metavar="NAME",
            help="The merge model's name on its server.",
            panel=SERVER_ENGINE,
        ),
    )
    endpoint_timeout: float | None = field(
        default=None,
        metadata=option(
            "--endpoint-timeout",
            env="SLMSQL_ENDPOINT_TIMEOUT",
            low=1.0,
            metavar="SECONDS",
            help="Request time limit (default 600 s).",  # remote_engine's own default
            panel=SERVER_ENGINE,
        ),
    )

    def endpoints(self) -> "tuple[Endpoint | None, Endpoint | None]":
        """The generator's and the merge model's servers (`remote_engine.endpoints`), or (None, None)."""
        if not (self.endpoint or self.merge_endpoint):
            return None, None
        from slmsql_cli.remote_engine import endpoints

        return endpoints(
            self.endpoint,
            self.served_model,
            self.merge_endpoint,
            self.merge_served_model,
            self.endpoint_timeout,
        )


@dataclass
class AskConfig:
    """Sampling and execution settings. Papers used N=8-64 on GPUs; 4 keeps a laptop answer under a minute.

    Its fields as they are (`asdict`) are what an eval run records (eval/run.run_record)."""

    merge: bool = field(
        default=True,
        metadata=option("--no-merge", help="Skip the merge step (faster, less accurate).", panel=MODEL),
    )
    n: int = field(
        default=SamplingParams.n,
        metadata=option(
            "-n",
            "--samples",
            low=1,
            high=64,
            metavar="N",
            help="SQL candidates to vote on, 1-64 (default {default}).",
            panel=SAMPLING,
        ),
    )
    merge_n: int = field(
        default=4,
        metadata=option(
            "--merge-n",
            low=1,
            high=64,
            metavar="N",
            help="Revisions the merge model samples (default {default}).",
            panel=SAMPLING,
        ),
    )
    temperature: float = field(
        default=SamplingParams.temperature,
        metadata=option(
            "--temperature",
            "-t",
            low=0.0,
            metavar="T",
            help="Sampling temperature; 0 = greedy (default {default}).",
            panel=SAMPLING,
        ),
    )
    max_tokens: int = field(
        default=SamplingParams.max_tokens,
        metadata=option(
            "--max-tokens",
            low=16,
            metavar="N",
            help="Most tokens per candidate (default {default}).",
            panel=SAMPLING,
        ),
    )
    seed: int = field(
        default=SamplingParams.seed,
        metadata=option(
            "--seed",
            low=0,
            metavar="N",
            help="Same seed, same candidates (default {default}).",
            panel=SAMPLING,
        ),
    )
    # only names the database has (constraint.py). None: on with the local engine, off with a model
    # server (which samples itself); set from the held-out measurement in docs/ACCURACY.md
    constrain: bool | None = field(
        default=None,
        metadata=option(
            "--constrain/--no-constrain",
            help="SQL may name only what the database has (on).",
            panel=SAMPLING,
        ),
    )
    use_values: bool = field(
        default=True, metadata=option("--no-values", help="Skip the values the question names.", panel=DATA)
    )
    # 512 is ggml's GGML_MAX_N_THREADS; more aborts llama.cpp with std::bad_alloc.
    threads: int | None = field(
        default=None,
        metadata=option(
            "--threads",
            low=1,
            high=512,
            metavar="N",
            help="CPU threads (default: idle cores).",
            panel=PERFORMANCE,
        ),
    )
    # layers offloaded to a GPU; default all where llama.cpp has one
    gpu_layers: int | None = field(
        default=None,
        metadata=option(
            "--gpu-layers",
            low=0,
            metavar="N",
            help="Layers to offload to a GPU; 0 = CPU only (default: all, if llama.cpp has a GPU).",
            panel=PERFORMANCE,
        ),
    )
    # cap on the context window (tokens); default: the model's own
    context: int | None = field(
        default=None,
        metadata=option(
            "--context",
            low=512,
            metavar="TOKENS",
            help="Cap the context window (less memory); it must hold the prompt and --max-tokens.",
            panel=PERFORMANCE,
        ),
    )
    # larger schemas are pruned to the question's tables (prune.py)
    prompt_budget: int = field(
        default=PROMPT_BUDGET,
        metadata=option(
            "--prompt-budget",
            low=256,
            metavar="TOKENS",
            help="Longest prompt (default {default}); a larger schema is cut to the question's tables.",
            panel=PERFORMANCE,
        ),
    )
    timeout: float = field(
        default=10.0,
        metadata=option(
            "--timeout",
            low=0.1,
            metavar="SECONDS",
            help="Query time limit (default {default:g} s).",
            panel=PERFORMANCE,
        ),
    )
    # reuse prompts evaluated by earlier processes (kv_cache.py)
    prompt_cache: bool = field(
        default=True,
        metadata=option(
            "--no-prompt-cache",
            help="Don't load or save evaluated prompts on disk (SLMSQL_KV_CACHE_MB sizes the cache).",
            panel=PERFORMANCE,
        ),
    )
    # generate on an OpenAI-compatible server (remote_engine.py), from ModelSource's options
    endpoint: "Endpoint | None" = None
    merge_endpoint: "Endpoint | None" = None  # the merge model's server (remote_engine.endpoints)

    def __post_init__(self) -> None:
        remote = self.endpoint is not None or self.merge_endpoint is not None
        if self.constrain is None:  # the default: wherever slmsql draws the tokens itself
            self.constrain = not remote
        if self.constrain and remote:
            raise UserError(
                "--constrain needs the local engine: a model server (--endpoint, --merge-endpoint) "
                "samples with its own sampler, which slmsql cannot constrain",
                "leave out --constrain, or the endpoints to generate here with llama.cpp",
            )
