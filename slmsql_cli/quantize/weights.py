"""Read safetensors checkpoints as numpy arrays, without torch.

The `safetensors` package's numpy backend cannot return bf16 (numpy has no such dtype), and most
published checkpoints are bf16. The format is simple enough to read directly: an 8-byte header
length, a JSON header with dtype/shape/offsets, then raw little-endian data. Reading it ourselves
lets us memory-map every shard, widen bf16 to float32 by shifting the bits, and notice a truncated
download (offsets past the end of the file) before writing anything.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmsql_cli.errors import UserError

_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor lives: enough to read it lazily, one at a time."""

    name: str
    file: Path
    dtype: str  # safetensors dtype name, e.g. "BF16"
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in `file`
    end: int

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


def _read_header(path: Path) -> list[TensorRef]:
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise UserError(f"{path.name} is truncated (no header)", "download the checkpoint again")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8 or n > 100 * 2**20:
            raise UserError(
                f"{path.name} is truncated or not a safetensors file", "download the checkpoint again"
            )
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise UserError(f"{path.name} has a corrupt header", "download the checkpoint again") from None
    base = 8 + n
    refs = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info["dtype"]
        if dtype not in _DTYPES:
            raise UserError(f"{path.name}: tensor {name} has unsupported dtype {dtype}")
        start, end = info["data_offsets"]
        shape = tuple(int(d) for d in info["shape"])
        ref = TensorRef(name, path, dtype, shape, base + start, base + end)
        if ref.end - ref.start != ref.n_elements * _DTYPES[dtype].itemsize:
            raise UserError(
                f"{path.name}: tensor {name} has inconsistent offsets", "download the checkpoint again"
            )
        if ref.end > size:
            raise UserError(
                f"{path.name} is truncated ({size:,} bytes, tensor {name} needs {ref.end:,})",
                "the download was interrupted; download the checkpoint again",
            )
        refs.append(ref)
    return refs


def safetensors_files(model_dir: Path) -> list[Path]:
    """The checkpoint's shards, from the index when there is one (so a missing shard is an error)."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        files = [model_dir / f for f in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise UserError(
                f"missing safetensors shard(s): {', '.join(missing)}", "download the checkpoint again"
            )
        return files
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        found = "pytorch_model.bin" if (model_dir / "pytorch_model.bin").exists() else "no weights"
        raise UserError(
            f"no .safetensors weights in {model_dir} ({found})",
            "re-save the model with `model.save_pretrained(dir)` (transformers writes safetensors)",
        )
    return files


class Checkpoint:
    """All tensors of a safetensors checkpoint, read lazily as float32 (or their integer type)."""

    def __init__(self, model_dir: Path) -> None:
        self.refs: dict[str, TensorRef] = {}
        for file in safetensors_files(model_dir):
            for ref in _read_header(file):
                self.refs[ref.name] = ref
        self._maps: dict[Path, np.memmap] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.refs

    def names(self) -> list[str]:
        return list(self.refs)

    def raw(self, name: str) -> np.ndarray:
        ref = self.refs[name]
        mm = self._maps.get(ref.file)
        if mm is None:
            mm = self._maps[ref.file] = np.memmap(ref.file, dtype=np.uint8, mode="r")
        return mm[ref.start : ref.end].view(_DTYPES[ref.dtype]).reshape(ref.shape)

    def get(self, name: str) -> np.ndarray:
        """The tensor as float32 (floating types) – bf16 is widened exactly by shifting its bits."""
        ref = self.refs[name]
        data = self.raw(name)
        if ref.dtype == "BF16":
            return (data.astype(np.uint32) << 16).view(np.float32)
        if data.dtype.kind == "f":
            return data.astype(np.float32)
        return np.array(data)

    def items(self) -> Iterator[tuple[str, TensorRef]]:
        return iter(self.refs.items())

    @property
    def n_parameters(self) -> int:
        return sum(r.n_elements for r in self.refs.values())
