"""`slmsql export` end to end: resolve, (merge,) convert, quantize, verify, then publish atomically.

Everything is written inside a hidden temporary folder next to the output file (same file system,
so the final rename is atomic and the f16 intermediate does not fill a small /tmp); the output
appears only once the GGUF is complete and verified, and a failure at any step leaves nothing.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from slmsql_cli.errors import UserError
from slmsql_cli.models import DEFAULT_QUANT
from slmsql_cli.quantize import checkpoint, quantizer
from slmsql_cli.quantize import verify as verifier
from slmsql_cli.quantize.arch import detect
from slmsql_cli.quantize.convert import ConvertResult, OnTensor, convert, read_config
from slmsql_cli.quantize.tokenizer import load_tokenizer_json
from slmsql_cli.quantize.weights import Checkpoint

OnStage = Callable[[str], None]


@dataclass
class ExportConfig:
    checkpoint: str | None = None  # folder or repo id; None: the latest `slmsql train` output
    out: Path | None = None  # default: ./<name>-<QUANT>.gguf
    quant: str = DEFAULT_QUANT
    force: bool = False  # overwrite an existing output
    verify: bool | None = None  # None: when torch and transformers are installed
    threads: int | None = None


@dataclass
class ExportResult:
    path: Path
    source: checkpoint.Source
    quant: str
    converted: ConvertResult
    size: int
    seconds: float
    verification: verifier.VerifyReport | None = None
    notes: list[str] = field(default_factory=list)


def default_output(source: checkpoint.Source, quant: str) -> Path:
    return Path.cwd() / f"{checkpoint.short_name(source)}-{quant.upper()}.gguf"


def _preflight(model_dir: Path) -> int:
    """Fail on bad input before writing anything; returns the parameter count."""
    detect(read_config(model_dir))
    load_tokenizer_json(model_dir)
    return Checkpoint(model_dir).n_parameters


def _check_space(folder: Path, n_parameters: int, quant: str) -> None:
    needed = quantizer.estimated_size(n_parameters, quant)
    if quant not in quantizer.DIRECT:
        needed += quantizer.estimated_size(n_parameters, "f16")  # the intermediate
    free = checkpoint.free_bytes(folder)
    if free < needed:
        raise UserError(
            f"not enough disk space in {folder}: the export needs about {needed / 2**30:.2f} GiB, {free / 2**30:.2f} GiB free",
            "free some space or choose another --out folder",
        )


def _want_verify(flag: bool | None) -> bool:
    if flag is None:
        return verifier.available()
    if flag and not verifier.available():
        raise UserError(
            "verification needs torch and transformers", "pip install 'slmsql[train]', or pass --no-verify"
        )
    return flag


def _build(
    work: Path,
    source: checkpoint.Source,
    out_dir: Path,
    quant: str,
    config: ExportConfig,
    do_verify: bool,
    on_tensor: OnTensor | None,
    stage: OnStage,
) -> tuple[Path, ConvertResult, verifier.VerifyReport | None, list[str]]:
    """Everything that writes, inside the temporary folder `work`; returns the finished GGUF there."""
    notes: list[str] = []
    model_dir = source.path
    if source.is_adapter:
        stage("merging the LoRA adapter into its base model")
        from slmsql_cli.quantize import lora

        model_dir = lora.merge(source.path, work / "merged")
        notes.append("merged LoRA adapter")
    n_parameters = _preflight(model_dir)
    _check_space(out_dir, n_parameters, quant)

    direct = quant in quantizer.DIRECT
    converted_path = work / (f"model-{quant}.gguf" if direct else "model-f16.gguf")
    stage(f"converting to {'F32' if quant == 'f32' else 'F16'} GGUF")
    converted = convert(
        model_dir, converted_path, outtype=quant if direct else "f16", name=source.label, on_tensor=on_tensor
    )
    final = converted_path
    if not direct:
        stage(f"quantizing to {quant.upper()} with llama.cpp")
        final = work / f"model-{quant}.gguf"
        quantizer.quantize(converted_path, final, quant, config.threads)
        converted_path.unlink()

    report = None
    if do_verify:
        stage("verifying against the source model")
        report = verifier.verify(model_dir, final, quant, threads=config.threads)
        if not report.passed:
            raise UserError(
                f"verification failed, nothing written: {report.summary()}",
                "try a higher-precision type (--q8 or --f16), or --no-verify to keep it anyway",
            )
    elif config.verify is None:
        notes.append("not verified (install slmsql[train] for torch and transformers)")
    return final, converted, report, notes


def export(
    config: ExportConfig, on_tensor: OnTensor | None = None, on_stage: OnStage | None = None
) -> ExportResult:
    """Export one checkpoint to a GGUF file; see the module docstring for the guarantees."""
    started = time.perf_counter()
    stage = on_stage or (lambda _msg: None)
    quant = quantizer.normalize(config.quant)
    do_verify = _want_verify(config.verify)
    source = checkpoint.resolve(config.checkpoint)
    out = Path(config.out).expanduser() if config.out else default_output(source, quant)
    if out.is_dir():
        out = out / default_output(source, quant).name
    if out.exists() and not config.force:
        raise UserError(f"{out} already exists", "pass --force to overwrite it, or choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent) as tmp:
            final, converted, report, notes = _build(
                Path(tmp), source, out.parent, quant, config, do_verify, on_tensor, stage
            )
            size = final.stat().st_size
            os.replace(final, out)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
            raise UserError(
                f"cannot write {out}: {exc.strerror}", "free some space or choose another --out"
            ) from None
        raise
    return ExportResult(out, source, quant, converted, size, time.perf_counter() - started, report, notes)


def _exports_root() -> Path:
    """Where exports are kept (nothing created: `find_cached_export` only looks)."""
    from slmsql_cli.cache import cache_path

    return cache_path() / "exports"


def cached_export(
    checkpoint_spec: str,
    quant: str = DEFAULT_QUANT,
    *,
    verify: bool | None = None,
    on_tensor: OnTensor | None = None,
    on_stage: OnStage | None = None,
) -> Path:
    """The GGUF of a checkpoint (folder or repo id), exported once into slmsql's cache.

    Keyed by the checkpoint's identity (repo + revision, or folder + file sizes and times), so an
    updated checkpoint is exported again and the stale export of the same checkpoint is removed;
    and by the recipe (`quantizer.file_tag`), so a changed default or a redefined mix is exported
    anew rather than served from a file of another recipe.
    """
    quant = quantizer.normalize(quant)
    source = checkpoint.resolve(checkpoint_spec)
    family = _exports_root() / checkpoint.slug(source)
    path = family / checkpoint.identity(source) / _file_name(quant)
    if path.is_file():
        return path
    from slmsql_cli.cache import cache_dir, private_mkdir, private_temp_dir, unwritable_message, warn

    try:
        cache_dir()
        private_mkdir(path.parent)  # the cache is private: 0700 folders, 0600 files (cache.py)
    except OSError as exc:  # no cache: exported for this run only, into a private temporary folder
        warn(unwritable_message(exc))
        family = private_temp_dir("slmsql-export")
        path = family / checkpoint.identity(source) / _file_name(quant)
        private_mkdir(path.parent)
    export(
        ExportConfig(checkpoint=str(source.path), out=path, quant=quant, force=True, verify=verify),
        on_tensor=on_tensor,
        on_stage=on_stage,
    )
    path.chmod(0o600)
    for old in family.iterdir():
        if old.is_dir() and old != path.parent:
            shutil.rmtree(old, ignore_errors=True)
    return path


def _file_name(quant: str) -> str:
    return f"model-{quantizer.file_tag(quant)}.gguf"


def find_cached_export(checkpoint_spec: str, quant: str = DEFAULT_QUANT) -> Path | None:
    """The cached export of a repo id or folder if there is one; never downloads or exports."""
    quant = quantizer.normalize(quant)
    path = Path(checkpoint_spec).expanduser()
    if path.is_dir():
        source = checkpoint.resolve(checkpoint_spec)
        found = _exports_root() / checkpoint.slug(source) / checkpoint.identity(source) / _file_name(quant)
        return found if found.is_file() else None
    source = checkpoint.Source(Path(), checkpoint_spec, repo_id=checkpoint_spec)
    candidates = sorted(
        (_exports_root() / checkpoint.slug(source)).glob(f"*/{_file_name(quant)}"),
        key=lambda p: p.stat().st_mtime,
    )
    return candidates[-1] if candidates else None
