"""Native llama.cpp handles that slmsql owns: the loaded model, its sampling context, and the
build's buffer types.

As llama-cpp-python's own `_internals.py` does, one class owns one native handle and frees it in
`close()`. slmsql loads models through the low-level API rather than `llama_cpp.Llama`, because
the high-level class cannot pass `use_extra_bufts` or `tensor_buft_overrides`, which the AMX guard
needs (`llama_build.py` explains the guard). `Model` is also the one vocabulary reader: the local
engine reads its tokenizer, metadata and special tokens from the loaded model, the remote engine
from the same class loaded `vocab_only` (the tokenizer and metadata, no weights). `Engine` creates
its sampling contexts (`Context`, held by a `ContextSlot`) on the model.
"""

from __future__ import annotations

import ctypes
import functools
import os
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmsql_cli import crash_report, llama_build
from slmsql_cli.errors import UserError

if TYPE_CHECKING:
    from slmsql_cli import kv_cache

_CPU_DEVICE = 0  # GGML_BACKEND_DEVICE_TYPE_CPU


class _BuftOverride(ctypes.Structure):
    # struct llama_model_tensor_buft_override (llama.h); llama-cpp-python declares no type for it
    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def _ggml() -> Any:
    from llama_cpp import _ggml  # the ggml library llama-cpp-python loaded (dlsym also finds ggml-base)

    lib = _ggml.libggml
    lib.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    lib.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    lib.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
    lib.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    lib.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.ggml_backend_buft_name.restype = ctypes.c_char_p
    lib.ggml_backend_buft_name.argtypes = [ctypes.c_void_p]
    return lib


@functools.cache
def extra_buffer_types() -> dict[str, int]:
    """The CPU device's extra buffer types by name ("AMX", "CPU_REPACK", ...) and their handles.

    The same walk llama.cpp's model loader makes (`make_cpu_buft_list`): the CPU backend's
    `ggml_backend_dev_get_extra_bufts` returns a NULL-terminated array.
    """
    lib = _ggml()
    dev = lib.ggml_backend_dev_by_type(_CPU_DEVICE)
    if not dev:
        return {}
    reg = lib.ggml_backend_dev_backend_reg(dev)
    address = lib.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_dev_get_extra_bufts")
    if not address:
        return {}
    get_extra = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)(address)
    array = get_extra(dev)
    found: dict[str, int] = {}
    i = 0
    while array and array[i]:
        name = (lib.ggml_backend_buft_name(array[i]) or b"").decode("utf-8", "replace")
        found[name] = int(array[i])
        i += 1
    return found


@functools.cache
def build_info() -> llama_build.BuildInfo:
    """This process's llama.cpp build: its system-info features and CPU extra buffer types."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    text = (llama_cpp.llama_print_system_info() or b"").decode("utf-8", "replace")
    info = llama_build.parse_system_info(text, extra_buffer_types())
    crash_report.note(f"llama.cpp: {info.describe()}")
    return info


def gguf_tensors(path: Path) -> list[llama_build.TensorInfo]:
    """Every tensor's name, ggml type and shape, read from the GGUF header (no weights are read)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return [
        llama_build.TensorInfo(t.name, t.tensor_type.name, tuple(int(d) for d in t.shape))
        for t in reader.tensors
    ]


def check_gguf_file(path: Path) -> None:
    """Fail with a clear message before llama.cpp prints pages of logs about a bad file."""
    if not path.exists():
        raise UserError(
            f"model file not found: {path}",
            "pass a .gguf file, a Hugging Face repo id or an alias from `slmsql models`",
        )
    if path.is_dir():
        raise UserError(
            f"model path is a folder, not a GGUF file: {path}",
            "to use a Hugging Face checkpoint folder, run `slmsql export` on it first",
        )
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise UserError(
            f"not a GGUF model file: {path}",
            "slmsql runs llama.cpp GGUF models; convert safetensors with `slmsql export`",
        )


def placement_for(path: Path, *, gpu_offload: bool) -> llama_build.Placement:
    """Where this model's weights go on this build (`llama_build.plan_placement`), with the mode
    from SLMSQL_WEIGHT_BUFFERS (default auto). The GGUF header is read only when it matters."""
    mode = os.environ.get("SLMSQL_WEIGHT_BUFFERS", "auto").strip().lower() or "auto"
    if mode not in llama_build.MODES:
        raise UserError(
            f"SLMSQL_WEIGHT_BUFFERS={mode!r} is not a placement mode",
            "use one of: " + ", ".join(llama_build.MODES) + " (or unset it)",
        )
    info = build_info()
    needs_tensors = mode == "guard" or (mode == "auto" and info.amx_active)
    tensors = gguf_tensors(path) if needs_tensors else []
    return llama_build.plan_placement(info, tensors, gpu_offload=gpu_offload, mode=mode)


class Model:
    """A llama.cpp model loaded from a GGUF file, with the placement `llama_build` chose; or,
    `vocab_only`, its tokenizer and metadata alone (no weights are read: a few MB, well under a
    second), which is all an engine that generates elsewhere needs."""

    def __init__(
        self,
        path: Path,
        *,
        gpu_layers: int = 0,
        placement: llama_build.Placement | None = None,
        vocab_only: bool = False,
    ) -> None:
        import llama_cpp

        self._ll = llama_cpp
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = vocab_only
        params.n_gpu_layers = gpu_layers
        self.placement = placement or llama_build.Placement()
        params.use_extra_bufts = self.placement.use_extra_bufts
        self._overrides: Any = None  # kept alive while llama.cpp reads it
        if self.placement.repack:
            repack = extra_buffer_types().get("CPU_REPACK")
            if repack:
                self._patterns = [p.encode() for p in self.placement.repack]  # alive as long as the rows
                rows = [_BuftOverride(p, repack) for p in self._patterns]
                self._overrides = (_BuftOverride * (len(rows) + 1))(*rows)  # zeroed last row ends it
                params.tensor_buft_overrides = ctypes.cast(self._overrides, ctypes.c_void_p)
        if not vocab_only:
            crash_report.note(f"placement: {self.placement.reason or 'llama.cpp defaults'}")
        model = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), params)
        if not model:
            raise ValueError(f"failed to load model from file: {path}")
        self.model = model
        self.vocab = llama_cpp.llama_model_get_vocab(model)

    def close(self) -> None:
        if self.model is not None:
            self._ll.llama_model_free(self.model)
            self.model = None

    def metadata(self) -> dict[str, str]:
        ll, model = self._ll, self.model
        buf = ctypes.create_string_buffer(1024)
        out: dict[str, str] = {}
        for i in range(ll.llama_model_meta_count(model)):
            ll.llama_model_meta_key_by_index(model, i, buf, len(buf))
            key = buf.value.decode("utf-8", "replace")
            need = ll.llama_model_meta_val_str_by_index(model, i, buf, len(buf))
            if need >= len(buf):  # a long value (a chat template): read it again whole
                buf = ctypes.create_string_buffer(need + 1)
                ll.llama_model_meta_val_str_by_index(model, i, buf, len(buf))
            out[key] = buf.value.decode("utf-8", "replace")
        return out

    def tokenize(self, text: bytes, *, add_special: bool, parse_special: bool) -> list[int]:
        ll = self._ll
        size = max(len(text) + 8, 16)
        tokens = (ll.llama_token * size)()
        n = ll.llama_tokenize(self.vocab, text, len(text), tokens, size, add_special, parse_special)
        if n < 0:  # the buffer was short: -n is the count needed
            size = -n
            tokens = (ll.llama_token * size)()
            n = ll.llama_tokenize(self.vocab, text, len(text), tokens, size, add_special, parse_special)
            if n < 0:
                raise RuntimeError(f"llama.cpp could not tokenize {len(text)} bytes ({n})")
        return list(tokens[:n])

    def special_token_text(self, which: str) -> str:
        """The text of the "bos" or "eos" token ("" when the vocabulary has none)."""
        ll = self._ll
        token = {"bos": ll.llama_vocab_bos, "eos": ll.llama_vocab_eos}[which](self.vocab)
        if token < 0:
            return ""
        return (ll.llama_vocab_get_text(self.vocab, token) or b"").decode("utf-8", errors="replace")

    def adds_bos(self) -> bool:
        """Whether the tokenizer adds BOS itself to a text it is given (Gemma, Llama; not Qwen)."""
        return bool(self._ll.llama_vocab_get_add_bos(self.vocab))


class Context:
    """A llama.cpp sampling context and its batch, freed together (batch, then context) by `close`."""

    def __init__(self, ll: Any, model: Any, params: Any, seqs: int) -> None:
        with ExitStack() as stack:  # a failure half-way frees what was made
            ctx = ll.llama_init_from_model(model, params)
            if not ctx:
                raise UserError(
                    f"llama.cpp could not create a context of {params.n_ctx} tokens x {seqs} sequences",
                    "lower -n or --max-tokens",
                )
            stack.callback(ll.llama_free, ctx)
            self.batch = ll.llama_batch_init(512, 0, max(seqs, 1))
            stack.callback(ll.llama_batch_free, self.batch)
            self._stack = stack.pop_all()
        self.ctx = ctx
        self.cells = int(params.n_ctx)
        self.seqs = seqs
        self.store: kv_cache.PromptStore | None = None  # the on-disk prompt cache for these settings
        self.exact = 0  # leading cells of sequence 0 computed in the chunks a fresh evaluation uses

    def close(self) -> None:
        self._stack.close()


class ContextSlot:
    """The engine's current context; replacing or closing it frees the one before."""

    def __init__(self) -> None:
        self.current: Context | None = None

    def replace(self, context: Context | None) -> None:
        old, self.current = self.current, context
        if old is not None:
            old.close()
