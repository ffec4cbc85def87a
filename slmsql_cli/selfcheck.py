"""A one-second proof that this llama.cpp build decodes: a tiny model made on the spot, sampled.

`python -m slmsql_cli.selfcheck` writes a random-weight llama-architecture GGUF of about 1 MB
(two layers, Q4_0 and Q8_0 weights, the types llama.cpp's repacked and AMX kernels take), loads it
through `Engine` exactly as `ask` does, and samples two sequences of eight tokens. It needs no
download and no model cache. It is meant to run in a child process: a build that crashes (a
segfault in a CPU kernel, SIGILL from a wheel built for another CPU) kills the child, and the
caller (`scripts/setup.sh`, `slmsql doctor`) reports how it died. On success it prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

# Shapes: every width a multiple of 32 (one Q4_0/Q8_0 block) and of 8 rows (repacking).
_VOCAB_BYTES = 256
_EMBD, _FF, _HEADS, _LAYERS, _CTX = 128, 256, 4, 2, 256


def make_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """A random-weight llama GGUF with a byte-level SentencePiece vocabulary (<unk>, <s>, </s>, 256 bytes)."""
    import gguf
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import quantize

    rng = np.random.default_rng(seed)
    n_vocab = 3 + _VOCAB_BYTES
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("slmsql-selfcheck")
    w.add_context_length(_CTX)
    w.add_embedding_length(_EMBD)
    w.add_feed_forward_length(_FF)
    w.add_block_count(_LAYERS)
    w.add_head_count(_HEADS)
    w.add_head_count_kv(_HEADS)
    w.add_rope_dimension_count(_EMBD // _HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(_VOCAB_BYTES)])
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types([2, 3, 3] + [6] * _VOCAB_BYTES)  # UNKNOWN, CONTROL, CONTROL, BYTE
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def dense(name: str, rows: int, cols: int, qtype: Q) -> None:
        data = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
        w.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)  # byte shape -> logical shape

    def norm(name: str) -> None:
        w.add_tensor(name, np.ones(_EMBD, dtype=np.float32))

    dense("token_embd.weight", n_vocab, _EMBD, Q.Q8_0)
    for i in range(_LAYERS):
        for part, rows, cols, qtype in [
            ("attn_q", _EMBD, _EMBD, Q.Q4_0),
            ("attn_k", _EMBD, _EMBD, Q.Q4_0),
            ("attn_v", _EMBD, _EMBD, Q.Q8_0),
            ("attn_output", _EMBD, _EMBD, Q.Q4_0),
            ("ffn_gate", _FF, _EMBD, Q.Q4_0),
            ("ffn_up", _FF, _EMBD, Q.Q8_0),
            ("ffn_down", _EMBD, _FF, Q.Q4_0),
        ]:
            dense(f"blk.{i}.{part}.weight", rows, cols, qtype)
        norm(f"blk.{i}.attn_norm.weight")
        norm(f"blk.{i}.ffn_norm.weight")
    norm("output_norm.weight")
    dense("output.weight", n_vocab, _EMBD, Q.Q4_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def run(threads: int = 1) -> dict[str, object]:
    """Make the tiny model, load it as `ask` loads a model, sample 2 x 8 tokens; what happened, as a dict."""
    from slmsql_cli import _internals
    from slmsql_cli.engine import Engine
    from slmsql_cli.engine_protocol import SamplingParams

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slmsql-selfcheck-") as tmp:
        path = make_tiny_gguf(Path(tmp) / "tiny.gguf")
        with Engine(path, threads=threads, gpu_layers=0) as engine:
            params = SamplingParams(n=2, max_tokens=8, temperature=0.8, stop=(), ignore_eos=True)
            completions, stats = engine.sample([1, 72, 101, 108, 108, 111], params)
            placement = engine.placement.reason or "llama.cpp's defaults"
    return {
        "ok": all(c.tokens == 8 for c in completions),
        "generated_tokens": stats.generated_tokens,
        "seconds": round(time.perf_counter() - t0, 3),
        "llama_cpp": _internals.build_info().describe(),
        "placement": placement,
    }


def main() -> None:
    result = run()
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
