"""Which GGUF file a `--model` value means: a local file, a Hugging Face repo, or a registry alias.

Downloads go through huggingface-hub (its cache, its progress bars, `HF_HUB_OFFLINE=1`), so a
model fetched once works offline afterwards. Repos that publish safetensors only (the SLM-SQL
checkpoints do), and local checkpoint folders, are handed to the `Exporter` the caller passes
(the commands pass `quantize.cached_gguf`, a GGUF of type DEFAULT_QUANT exported once into the
cache): this package never imports `quantize`, which builds on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slmsql_cli import hub
from slmsql_cli.errors import UserError


@dataclass(frozen=True)
class KnownModel:
    alias: str
    repo: str
    role: str  # "generate" or "merge"
    base: str
    note: str = ""
    # What `hf download REPO` fetches, in GB (10^9 bytes): the repo's files as the Hub lists them
    # (model.safetensors, in bf16, is all but ~15 MB of it). Not exact: inferred from a sibling.
    download_gb: float = 0.0
    download_exact: bool = True

    @property
    def download(self) -> str:
        """The download size in words: "1.3 GB", or "about 3.6 GB" where it is inferred."""
        return size_text(self.download_gb, exact=self.download_exact)


# Published SLM-SQL / CSC-SQL checkpoints (safetensors; BIRD dev EX from the SLM-SQL paper, with CSC).
# Download sizes from the Hub's file listings: SLM-SQL-0.5B 1.28 GB in all (model.safetensors
# 1.26 GB), SLM-SQL-0.6B 1.52 GB, SLM-SQL-1.3B 2.7 GB, CscSQL-Merge 0.5B model.safetensors 1.26 GB
# and 1.5B 3.55 GB beside the same 15 MB of tokenizer files. SLM-SQL-1.5B's listing was not seen:
# it is the same Qwen2.5-Coder-1.5B fine-tune as the 1.5B merge model, saved by the same authors
# the same way (the two 0.5B repos are byte for byte the same size), hence "about 3.6 GB".
REGISTRY: tuple[KnownModel, ...] = (
    KnownModel(
        "slm-sql-0.5b",
        "cycloneboy/SLM-SQL-0.5B",
        "generate",
        "Qwen2.5-Coder-0.5B-Instruct",
        "default; BIRD dev 56.87",
        download_gb=1.28,
    ),
    KnownModel(
        "slm-sql-1.5b",
        "cycloneboy/SLM-SQL-1.5B",
        "generate",
        "Qwen2.5-Coder-1.5B-Instruct",
        "BIRD dev 67.08",
        download_gb=3.57,
        download_exact=False,
    ),
    KnownModel(
        "slm-sql-0.6b",
        "cycloneboy/SLM-SQL-0.6B",
        "generate",
        "Qwen3-0.6B",
        "BIRD dev 59.52",
        download_gb=1.52,
    ),
    KnownModel(
        "slm-sql-1.3b",
        "cycloneboy/SLM-SQL-1.3B",
        "generate",
        "deepseek-coder-1.3b-instruct",
        "BIRD dev 62.19",
        download_gb=2.70,
    ),
    KnownModel(
        "csc-merge-0.5b",
        "cycloneboy/CscSQL-Merge-Qwen2.5-Coder-0.5B-Instruct",
        "merge",
        "Qwen2.5-Coder-0.5B-Instruct",
        "default merge model",
        download_gb=1.28,
    ),
    KnownModel(
        "csc-merge-1.5b",
        "cycloneboy/CscSQL-Merge-Qwen2.5-Coder-1.5B-Instruct",
        "merge",
        "Qwen2.5-Coder-1.5B-Instruct",
        download_gb=3.57,
    ),
)
# (checkpoint folder or repo id, quant) -> the GGUF exported from it
Exporter = Callable[[str, str], Path]
# (checkpoint folder or repo id, quant) -> its GGUF if one was exported before, without exporting
ExportLookup = Callable[[str, str], "Path | None"]

# The GGUF type `ask` (and `slmsql export` without a type flag) exports checkpoints to, chosen by
# benchmarks/quant_quality.py (docs/PERFORMANCE.md, "Which GGUF type"): the 4-bit recipes that
# decode fast on these 896-wide models lose too much against Q4_K_M, and Q8_0 is as fast as Q4_K_M.
DEFAULT_QUANT = "q8_0"
DEFAULT_MODEL = "slm-sql-0.5b"
DEFAULT_MERGE_MODEL = "csc-merge-0.5b"


def lookup(alias: str) -> KnownModel | None:
    alias = alias.lower()
    return next((m for m in REGISTRY if m.alias == alias), None)


def size_text(gb: float, *, exact: bool = True) -> str:
    """A download size as people read it: one decimal in GB, MB below 1 GB."""
    text = f"{gb:.1f} GB" if gb >= 1 else f"{max(1, round(gb * 1000))} MB"
    return text if exact else f"about {text}"


# Where the generator came from, strongest first (`choose`).
FROM_OPTION = "--model"
FROM_ENV = "SLMSQL_MODEL"
FROM_SETTING = "slmsql models default"
BUILT_IN = "built in"


@dataclass(frozen=True)
class ModelChoice:
    """The models a command runs: the generator, where that came from, and the merge model
    (None: the generator revises its own drafts)."""

    model: str
    source: str  # FROM_OPTION, FROM_ENV, FROM_SETTING or BUILT_IN
    merge: str | None

    @property
    def built_in(self) -> bool:
        return self.source == BUILT_IN

    def specs(self, *, merge: bool = True) -> list[str]:
        """The models to load: the generator, and the merge model when there is a separate one."""
        separate = merge and self.merge is not None and self.merge != self.model
        return [self.model, self.merge] if separate and self.merge is not None else [self.model]

    def describe(self) -> str:
        """The choice in words, for `doctor`, `models` and `models default`."""
        source = "built in" if self.built_in else f"set by {self.source}"
        if self.merge is None:
            return f"{self.model} ({source}; it revises its own drafts)"
        return f"{self.model} ({source}), merge model {self.merge}"


def choose(model: str | None = None, merge_model: str | None = None) -> ModelChoice:
    """Which models to run: `--model`, else SLMSQL_MODEL, else `slmsql models default`'s setting,
    else the built-in pair. Only the built-in generator brings the built-in merge model; any
    other, however it was chosen, revises its own drafts unless `--merge-model` names one."""
    from slmsql_cli.settings import stored_default_model

    env = os.environ.get("SLMSQL_MODEL", "").strip()
    if model and model.strip():
        spec, source = model, FROM_OPTION
    elif env:
        spec, source = env, FROM_ENV
    elif stored := stored_default_model():
        spec, source = stored, FROM_SETTING
    else:
        spec, source = DEFAULT_MODEL, BUILT_IN
    merge = merge_model or (DEFAULT_MERGE_MODEL if source == BUILT_IN else None)
    return ModelChoice(spec, source, merge)


def default_model() -> str:
    """The generator a command runs without `--model` (see `choose`)."""
    return choose().model


def pick_gguf(files: list[str]) -> str | None:
    """Choose the file a laptop wants from a repo's GGUFs: Q4_K_M first, then other 4-bit, then any."""
    ggufs = sorted(f for f in files if f.lower().endswith(".gguf"))
    for pattern in ("q4_k_m", "q4_k", "q4", "q5_k_m", "q8_0"):
        for name in ggufs:
            if pattern in name.lower():
                return name
    return ggufs[0] if ggufs else None


def resolve(spec: str, *, quant: str = DEFAULT_QUANT, export: Exporter | None = None) -> Path:
    """Turn a `--model` value into the path of a GGUF file, downloading or exporting once if needed.

    A checkpoint (a local folder, or a Hub repo with safetensors only) goes to `export`; without
    one it is a UserError pointing to `slmsql export`.
    """
    spec = spec.strip()
    if not spec:
        raise UserError("empty --model value")
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        return _export(str(path), quant, export)
    hub_file = ":" in spec and hub.REPO_ID.match(spec.split(":", 1)[0])
    if path.suffix.lower() == ".gguf" and not hub_file:
        raise UserError(
            f"model file not found: {path}", "check the path, or run `slmsql models` to see what is cached"
        )
    known = lookup(spec)
    repo = known.repo if known else spec
    if not hub.REPO_ID.match(repo.split(":", 1)[0]):
        raise UserError(
            f"unknown model: {spec}",
            "pass a .gguf file, a Hugging Face repo id (owner/name) or an alias from `slmsql models`",
        )
    return _from_hub(repo, quant, export)


def _from_hub(repo: str, quant: str, export: Exporter | None) -> Path:
    """A GGUF from a Hub repo (optionally `owner/name:file.gguf`), or a cached export of its safetensors.

    What the local cache holds wins: `hf download` refreshes a cached repo.
    """
    repo_id, _, filename = repo.partition(":")
    fix = download_fix(repo_id)
    files = hub.cached_files(repo_id)
    if not filename:
        filename = pick_gguf(files) or ""
    if not filename and not any(f.endswith(".safetensors") for f in files):
        files = hub.list_files(repo_id)
        filename = pick_gguf(files) or ""
    if filename:
        return hub.download_file(repo_id, filename, fix=fix)
    if export is None and files:  # the repo is there and holds no GGUF: do not download it in vain
        raise UserError(f"{repo_id} has no GGUF file", f"export it first: slmsql export {repo_id}")
    return _export(str(hub.download_snapshot(repo_id, fix=fix)), quant, export)


def hub_repo(spec: str) -> str | None:
    """The Hub repo a --model value downloads from (an alias's repo, `owner/name`, the repo of
    `owner/name:file.gguf`), or None: a local file or folder, or no model name at all. As
    `resolve` reads the value."""
    spec = spec.strip()
    path = Path(spec).expanduser()
    if not spec or path.exists():
        return None
    known = lookup(spec)
    if known is not None:
        return known.repo
    repo_id, colon, _ = spec.partition(":")
    if not hub.REPO_ID.match(repo_id) or (path.suffix.lower() == ".gguf" and not colon):
        return None
    return repo_id


def not_downloaded(specs: list[str]) -> list[str]:
    """Those of `specs` that name a Hub repo the local cache lacks (no GGUF, no safetensors in it)."""
    cached = hub.cached_repos()
    missing = []
    for spec in specs:
        repo_id = hub_repo(spec)
        _, colon, filename = spec.partition(":")
        files = cached.get(repo_id, []) if repo_id else []
        if repo_id and not (
            filename in files
            if colon and filename
            else any(f.endswith((".gguf", ".safetensors")) for f in files)
        ):
            missing.append(spec)
    return missing


def _known(spec: str) -> KnownModel | None:
    repo_id = hub_repo(spec) or spec
    return lookup(spec) or next((m for m in REGISTRY if m.repo == repo_id), None)


@dataclass(frozen=True)
class FirstRunFix:
    """What to do about models not downloaded yet: `intro`, then the `commands` to copy (each
    `hf download` with its size), then `instead`, the way around downloading. `text()` is the
    whole of it as `ask`'s hint, `doctor`'s fix and `models` say it."""

    intro: str
    commands: tuple[str, ...]
    instead: str

    def text(self) -> str:
        return "\n".join([self.intro, *(f"  {c}" for c in self.commands), self.instead])


def first_run_fix(missing: list[str]) -> FirstRunFix:
    """The one fix for `missing` models (`not_downloaded`), in the same words wherever it is said:
    every `hf download` the run needs with its size, and a GGUF file of your own instead (with
    no merge model named, it revises its own drafts, so one flag is enough)."""
    specs = list(dict.fromkeys(missing))
    known = [_known(spec) for spec in specs]
    commands = [f"hf download {k.repo if k else hub_repo(s) or s}" for s, k in zip(specs, known)]
    width = max(len(c) for c in commands)
    lines = tuple(
        f"{c.ljust(width)}  # {k.download}" if k and k.download_gb else c for c, k in zip(commands, known)
    )
    total = ""
    sized = [k for k in known if k is not None and k.download_gb]
    if len(sized) == len(known):
        total = (
            f" ({size_text(sum(k.download_gb for k in sized), exact=all(k.download_exact for k in sized))})"
        )
    what = "the model" if len(specs) == 1 else f"the {len(specs)} models"
    return FirstRunFix(
        intro=f"download {what} once{total}, here or on a connected machine whose Hugging Face cache "
        f"folder you then copy to {hub.cache_folder()}:",
        commands=lines,
        instead="or use a GGUF file you have: --model path/to/model.gguf "
        "(to keep it: slmsql models default path/to/model.gguf)",
    )


def download_fix(repo_id: str) -> str:
    """The fix when `repo_id` cannot be downloaded: when it is one of the built-in pair, the pair's
    missing models together (the merge model must not be a second surprise), else that repo."""
    pair = [DEFAULT_MODEL, DEFAULT_MERGE_MODEL]
    known = _known(repo_id)
    if known is not None and known.alias in pair:
        return first_run_fix(not_downloaded(pair) or [repo_id]).text()
    return first_run_fix([repo_id]).text()


def check_downloaded(choice: ModelChoice, *, merge: bool = True) -> None:
    """Before anything loads: a model file SLMSQL_MODEL or the stored default names that is gone,
    or Hub models the cache lacks while the Hub cannot be reached, as one UserError naming all of
    them with `first_run_fix` (not one error per model, found one after the other)."""
    if choice.source in (FROM_ENV, FROM_SETTING) and hub_repo(choice.model) is None:
        path = Path(choice.model).expanduser()
        if (path.suffix.lower() == ".gguf" or os.sep in choice.model) and not path.exists():
            raise UserError(
                f"model file not found: {choice.model} (the default model, set by {choice.source})",
                "point SLMSQL_MODEL at a file that exists, or unset it"
                if choice.source == FROM_ENV
                else "set another with `slmsql models default NAME|PATH` (`slmsql models` lists the names)",
            )
    missing = not_downloaded(choice.specs(merge=merge))
    reason = hub.offline_reason() if missing else None
    if missing and reason:
        names = [k.alias if (k := _known(s)) else s for s in missing]
        subject = f"{names[0]} is" if len(names) == 1 else f"{' and '.join(names)} are"
        raise UserError(
            f"{subject} not downloaded yet, and Hugging Face cannot be reached ({reason})",
            first_run_fix(missing).text(),
        )


def storable_default(spec: str) -> str:
    """What `slmsql models default SPEC` keeps: an alias of a model that writes SQL, a Hub repo id
    as given, or a local GGUF file or checkpoint folder as an absolute path (so the setting means
    the same file from any folder). Nothing is downloaded; a wrong value is a UserError now
    rather than at the next `ask`."""
    spec = spec.strip()
    if not spec:
        raise UserError("empty model name", "give an alias from `slmsql models`, a repo id or a .gguf file")
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.is_file():
        try:
            with path.open("rb") as f:
                magic = f.read(4)
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
        if magic != b"GGUF":
            raise UserError(f"not a GGUF file: {path}", "pass a .gguf file, or a checkpoint folder")
        return str(path.resolve())
    known = lookup(spec)
    if known is not None and known.role != "generate":
        writers = ", ".join(m.alias for m in REGISTRY if m.role == "generate")
        raise UserError(
            f"{known.alias} is a merge model: it revises drafts and writes none",
            f"the default model writes the SQL: one of {writers}",
        )
    if known is not None:
        return known.alias
    if hub_repo(spec) is not None:
        return spec
    if path.suffix.lower() == ".gguf" or os.sep in spec:
        raise UserError(f"model file not found: {path}", "check the path")
    raise UserError(
        f"unknown model: {spec}",
        "pass a .gguf file, a Hugging Face repo id (owner/name) or an alias from `slmsql models`",
    )


def search_places() -> list[tuple[str, str]]:
    """Where `--model` looks, as (what, folder): `slmsql models` prints them."""
    from huggingface_hub import constants

    from slmsql_cli.cache import cache_path

    return [
        ("the Hugging Face cache (HF_HUB_CACHE or HF_HOME moves it)", str(constants.HF_HUB_CACHE)),
        ("GGUF exports of checkpoints (SLMSQL_CACHE_DIR moves it)", str(cache_path() / "exports")),
    ]


def _export(checkpoint: str, quant: str, export: Exporter | None) -> Path:
    if export is None:
        raise UserError(
            f"{checkpoint} is a model folder, not a GGUF file",
            f"export it first: slmsql export {checkpoint}",
        )
    return export(checkpoint, quant)


@dataclass
class ModelStatus:
    model: KnownModel
    cached_gguf: Path | None
    cached_checkpoint: bool


def registry_status(find_export: ExportLookup | None = None) -> list[ModelStatus]:
    """What `slmsql models` prints: every known model and whether it is already on this machine
    (its GGUF export, looked up with `find_export`, and its checkpoint in the Hub cache)."""
    cached = hub.cached_repos()
    out = []
    for m in REGISTRY:
        files = cached.get(m.repo, [])
        gguf = find_export(m.repo, DEFAULT_QUANT) if find_export else None
        out.append(ModelStatus(m, gguf, any(f.endswith(".safetensors") for f in files)))
    return out
