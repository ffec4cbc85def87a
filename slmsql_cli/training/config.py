"""`TrainConfig`: every setting of `slmsql train`, from a YAML recipe plus command-line overrides.

Defaults follow the papers where they are known (SLM-SQL, arXiv 2507.22478; CSC-SQL, arXiv 2505.13271;
OmniSQL's `train_and_evaluate` scripts; FINER-SQL's `grpo_writer.py`) and say so; the rest are marked as guesses. A recipe is a flat YAML mapping of these fields, with
optional `sft:` / `grpo:` sections that apply only to that stage, and `trl:` for any other
`SFTConfig` / `GRPOConfig` argument (checked against TRL's own fields before anything loads).
Unknown keys are refused with the nearest valid name, so a typo never silently trains with a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from slmsql_cli.conversation import DEFAULT_RENDERING, RENDERINGS
from slmsql_cli.errors import UserError
from slmsql_cli.prompts import PROMPT_BUDGET

Stage = Literal["sft", "grpo"]
Task = Literal["generate", "merge"]
DataFormat = Literal["auto", "think", "spider", "candidates", "sparc", "cosql"]  # cosql: read as sparc
VllmMode = Literal["colocate", "server"]

CONFIG_DIR = Path(__file__).parent / "configs"
REWARD_NAMES = ("execution", "format", "atomic")


@dataclass
class TrainConfig:
    """One training run. `stage` and `base` are required; everything else has a default."""

    stage: Stage = "sft"
    task: Task = "generate"
    base: str = ""  # HF checkpoint dir, Hub repo id, or a .gguf file
    chat_template: str | None = (
        None  # a .jinja file or an architecture name (qwen2, gemma3, llama); default: the model's own, else slmsql's fallback
    )
    name: str | None = None  # run name; default "<task>-<stage>"
    out: str | None = None  # run folder; default runs/<name>

    # data
    data: str = ""  # a .json/.jsonl/.parquet/.csv file or a Hub dataset id
    data_format: DataFormat = "auto"
    data_split: str = "train"
    db_dir: str | None = (
        None  # Spider/BIRD database folder (<db_dir>/<db_id>/<db_id>.sqlite) or one .sqlite file
    )
    tables: str | None = None  # Spider/BIRD tables.json (natural-language column names in the prompt)
    use_values: bool = True  # question-matched values in the schema, as `ask` does by default
    prompt_budget: int = PROMPT_BUDGET  # tokens: a larger schema is cut as `ask --prompt-budget` cuts it
    max_samples: int | None = None  # use only the first N rows (quick runs)
    shuffle: bool = True
    # follow-up questions (SParC/CoSQL interactions, as `data` or `followup_data`): each turn is an
    # example whose prompt carries the interaction's earlier questions (and, for `evidence`, their
    # gold SQL) as `ask`/`chat` write them in this rendering
    rendering: str = DEFAULT_RENDERING  # one of conversation.RENDERINGS
    followup_data: str | None = None  # SParC/CoSQL turns mixed with `data`'s single questions
    followup_weight: float = 1.0  # how often each turn is drawn, a single question counting 1

    # model and precision
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = "all-linear"
    cpu: bool = False
    bf16: bool | None = None  # None: bf16 on a GPU that supports it, fp32 otherwise
    gradient_checkpointing: bool | None = None  # None: on for GPU, off on CPU
    attn_implementation: str | None = None  # e.g. flash_attention_2 when installed

    # optimisation (None: the stage default below)
    learning_rate: float | None = None  # SFT 2e-5 (OmniSQL); GRPO 3e-6 (CSC-SQL, unverified)
    num_train_epochs: float = 1.0  # GRPO 1 epoch (CSC-SQL); SFT: OmniSQL used 2 (guess: 1 on the 916k set)
    max_steps: int = -1
    per_device_train_batch_size: int | None = (
        None  # SFT 1 (long sequences); GRPO 12 = 2 prompts × 6 completions
    )
    gradient_accumulation_steps: int | None = None  # SFT 16; GRPO 1
    warmup_steps: float = 0.03  # a float below 1 is a fraction of the steps (transformers); guess
    lr_scheduler_type: str = "cosine"  # guess (OmniSQL used cosine)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # FINER-SQL
    seed: int = 42

    # sequence lengths
    max_length: int = 8192  # SFT: OmniSQL block size; SynSQL-Think dropped samples over ~7,000 tokens
    max_prompt_length: int = 4096  # GRPO: longer prompts are skipped (TRL no longer truncates them)
    max_completion_length: int = 1024  # GRPO: CSC-SQL samples up to 1024 new tokens

    # GRPO
    num_generations: int = 6  # CSC-SQL: 6 completions per prompt (unverified)
    temperature: float = 0.8  # CSC-SQL samples at 0.8 for inference; FINER-SQL trains at 1.0
    top_p: float = 1.0
    beta: float = 0.04  # KL weight (FINER-SQL); 0 loads no reference model
    loss_type: str = "dapo"  # TRL's default
    reward_weights: dict[str, float] = field(
        default_factory=lambda: {"execution": 1.0, "format": 0.1, "atomic": 0.0}
    )
    atomic_e: float = 0.05  # FINER-SQL "S3" shaping
    atomic_beta: float = 0.79
    atomic_gamma: float = 0.20
    exec_timeout: float = 10.0  # seconds per query (OmniSQL's voting/eval timeout)
    reward_workers: int | None = None  # processes executing SQL; None: min(8, CPUs)
    # GRPO generation with vLLM (TRL's GRPOConfig fields of the same names); untested here (no GPU)
    use_vllm: bool | Literal["auto"] = "auto"  # auto: when vllm is installed and a GPU is used
    vllm_mode: VllmMode = "colocate"  # colocate: in the training processes; server: `trl vllm-serve`
    vllm_gpu_memory_utilization: float = 0.3  # colocate: the GPU memory share vLLM takes (TRL's default)
    vllm_tensor_parallel_size: int = 1  # colocate: GPUs one vLLM instance spans
    vllm_max_model_length: int | None = None  # colocate: None = max_prompt_length + max_completion_length
    vllm_enable_sleep_mode: bool = False  # colocate: free vLLM's memory during the optimizer step
    vllm_server_base_url: str | None = None  # server: e.g. http://gpu-node:8000 (else host/port below)
    vllm_server_host: str = "0.0.0.0"  # server (TRL's defaults)
    vllm_server_port: int = 8000
    vllm_server_timeout: float = 240.0  # server: seconds to wait for it at start

    # bookkeeping
    logging_steps: int = 1
    save_steps: int = 200
    save_total_limit: int = 2
    resume: bool | str = "auto"  # auto: continue from the run folder's last checkpoint; or a checkpoint path
    trl: dict[str, Any] = field(default_factory=dict)  # extra SFTConfig/GRPOConfig arguments

    # ---- derived -----------------------------------------------------------------------
    @property
    def run_name(self) -> str:
        return self.name or f"{self.task}-{self.stage}"

    @property
    def run_dir(self) -> Path:
        return Path(self.out or Path("runs") / self.run_name).expanduser()

    def stage_default(self, key: str) -> Any:
        """The per-stage default for fields left at None."""
        value = getattr(self, key)
        if value is not None:
            return value
        return _STAGE_DEFAULTS[self.stage][key]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "sft": {"learning_rate": 2e-5, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 16},
    "grpo": {"learning_rate": 3e-6, "per_device_train_batch_size": 12, "gradient_accumulation_steps": 1},
}
_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def builtin_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_path(spec: str) -> Path:
    """A recipe file, or the name of one shipped in slmsql_cli/training/configs (e.g. `generate-0.5b`)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    builtin = CONFIG_DIR / f"{spec.removesuffix('.yaml')}.yaml"
    if builtin.is_file():
        return builtin
    raise UserError(
        f"config not found: {spec}", f"pass a YAML file, or one of: {', '.join(builtin_configs())}"
    )


def load_config(
    spec: str | None, overrides: dict[str, Any] | None = None, stage: str | None = None
) -> TrainConfig:
    """Recipe (if any) → its section for the stage → command-line overrides, validated."""
    values: dict[str, Any] = {}
    source = "command line"
    if spec:
        path = config_path(spec)
        source = str(path)
        values = read_yaml(path)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    stage = stage or overrides.get("stage") or values.get("stage")
    sections = {s: values.pop(s) for s in ("sft", "grpo") if s in values}
    for name, section in sections.items():
        if not isinstance(section, dict):
            raise UserError(f"{source}: `{name}:` must be a mapping of settings")
        if name == stage:
            trl_extra = {**values.get("trl", {}), **section.pop("trl", {})}
            values.update(section)
            if trl_extra:
                values["trl"] = trl_extra
    for key, value in overrides.items():  # --set reward_weights.atomic=1 keeps the recipe's other weights
        values[key] = (
            {**values[key], **value}
            if isinstance(value, dict) and isinstance(values.get(key), dict)
            else value
        )
    if not stage:
        raise UserError("which stage? pass --stage sft or --stage grpo", "or set `stage:` in the config")
    values["stage"] = stage
    return build_config(values, source)


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path} must be a mapping of settings (key: value), not {type(data).__name__}")
    return data


def build_config(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """A TrainConfig from plain values: unknown keys and wrong types are UserErrors naming the key."""
    unknown = [k for k in values if k not in _FIELDS]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, _FIELDS, n=1)
        hint = (
            f"did you mean `{close[0]}`?"
            if close
            else "see `slmsql train --help` or slmsql_cli/training/config.py for the settings"
        )
        raise UserError(f"{source}: unknown setting `{key}`", hint)
    hints = get_type_hints(TrainConfig)
    checked = {k: _coerce(k, v, hints[k], source) for k, v in values.items()}
    if "reward_weights" in checked:  # a partial mapping changes only the rewards it names
        checked["reward_weights"] = {**TrainConfig().reward_weights, **checked["reward_weights"]}
    cfg = TrainConfig(**checked)
    validate(cfg, source)
    return cfg


def validate(cfg: TrainConfig, source: str = "config") -> None:
    """Checks that need no model or data: cheap, and run before anything heavy."""
    if not cfg.base:
        raise UserError(
            "no base model given",
            "pass --base (a Hugging Face checkpoint dir or repo id, or a .gguf file) or set `base:` in the config",
        )
    if not cfg.data:
        raise UserError(
            "no training data given",
            "pass --data (a .json/.jsonl/.parquet file or a Hub dataset id) or set `data:` in the config",
        )
    bad = [k for k in cfg.reward_weights if k not in REWARD_NAMES]
    if bad:
        raise UserError(
            f"{source}: unknown reward `{bad[0]}` in reward_weights",
            f"rewards are: {', '.join(REWARD_NAMES)}",
        )
    if cfg.stage == "grpo" and not any(w > 0 for w in cfg.reward_weights.values()):
        raise UserError(
            f"{source}: every reward weight is 0", "give execution (or another reward) a positive weight"
        )
    if cfg.rendering not in RENDERINGS:
        raise UserError(
            f"{source}: `rendering` must be one of {', '.join(RENDERINGS)}, got {cfg.rendering!r}",
            "how a follow-up's earlier turns are written into its prompt (conversation.py)",
        )
    if cfg.followup_weight < 0:
        raise UserError(
            f"{source}: `followup_weight` must be 0 or more", "1 uses each turn once, 0.5 half of them"
        )
    for key in (
        "prompt_budget",
        "max_length",
        "max_prompt_length",
        "max_completion_length",
        "num_generations",
        "logging_steps",
        "save_steps",
    ):
        if getattr(cfg, key) < 1:
            raise UserError(f"{source}: `{key}` must be at least 1")
    if cfg.stage == "grpo":
        if cfg.num_generations < 2:
            raise UserError(
                f"{source}: num_generations must be at least 2",
                "GRPO compares completions of the same prompt",
            )
        batch = cfg.stage_default("per_device_train_batch_size") * cfg.stage_default(
            "gradient_accumulation_steps"
        )
        if batch % cfg.num_generations:
            raise UserError(
                f"{source}: per_device_train_batch_size × gradient_accumulation_steps ({batch}) is not a multiple of num_generations ({cfg.num_generations})",
                "each prompt's completions must fit in one batch, e.g. batch 12 with 6 generations",
            )
    if cfg.cpu and cfg.bf16:
        raise UserError(f"{source}: bf16 on CPU is not supported here", "drop --cpu or set bf16: false")
    if cfg.use_vllm is True and cfg.cpu:
        raise UserError(f"{source}: vLLM needs a GPU", "drop use_vllm or --cpu")
    if not 0 < cfg.vllm_gpu_memory_utilization <= 1:
        raise UserError(f"{source}: `vllm_gpu_memory_utilization` is a share of the GPU memory, in (0, 1]")
    if cfg.vllm_tensor_parallel_size < 1:
        raise UserError(f"{source}: `vllm_tensor_parallel_size` must be at least 1")
    if cfg.name is not None and not re.fullmatch(r"[\w.-]+", cfg.name):
        raise UserError(f"{source}: run name `{cfg.name}` must be letters, digits, '.', '_' or '-'")


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """Accept YAML/CLI values of the right kind (ints for floats, 'true' strings from the CLI)."""
    options = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    for option in options:
        ok, converted = _try(value, option)
        if ok:
            return converted
    expected = " or ".join(_type_name(o) for o in options)
    raise UserError(f"{source}: `{key}` must be {expected}, got {value!r}")


def _try(value: Any, option: Any) -> tuple[bool, Any]:
    origin = get_origin(option)
    if option is type(None):
        return value is None, None
    if origin is Literal:
        return (value in get_args(option)), value
    if option is bool:
        if isinstance(value, bool):
            return True, value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return True, value.lower() in ("true", "yes")
        return False, None
    if option is int:
        return (isinstance(value, int) and not isinstance(value, bool)), value
    if option is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):  # PyYAML reads 2e-5 (no dot) as a string
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if option is str:
        return isinstance(value, str), os.path.expandvars(value) if isinstance(value, str) else None
    if origin is list:
        return (isinstance(value, list) and all(isinstance(v, str) for v in value)), value
    if origin is dict:
        if not isinstance(value, dict):
            return False, None
        args = get_args(option)
        if args and args[1] is float:
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
                return False, None
            return True, {str(k): float(v) for k, v in value.items()}
        return True, dict(value)
    return isinstance(value, option), value


def _type_name(option: Any) -> str:
    if option is type(None):
        return "null"
    if get_origin(option) is Literal:
        return " / ".join(repr(a) for a in get_args(option))
    return getattr(option, "__name__", str(option))
