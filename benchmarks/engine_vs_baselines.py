"""Time slmsql's batched engine against the two ways people usually run these models on a CPU.

In one run, on the same model, prompt, N and generated length:
  (a) naive loop   N x llama-cpp-python `create_completion` on the same prompt (its automatic
                   prefix reuse means the prompt is evaluated once, then 1 token per call)
  (b) slmsql       `Engine.sample`: one prompt decode, N sequences decoded as one batch
  (c) transformers `model.generate(num_return_sequences=N)` on the CPU as the model cards show
                   (`torch_dtype="auto"`: the checkpoint's bf16; --hf-dtype float32 for the other
                   common choice; skipped with --skip-transformers or when torch is missing)
plus (b) at N=1, the share of (b)'s wall time spent outside llama.cpp's compute, (d) a whole
`ask` with the same N (prompt building, extraction, execution and voting included), and the peak
memory of (b) at N measured in a fresh process. Every length is fixed (end-of-turn suppressed)
so that only speed differs. Results print as a table and as one JSON line.

Example (see docs/PERFORMANCE.md for the model used there):
  python benchmarks/engine_vs_baselines.py --gguf models/qwen25-0.5b-shape-q4_k_m.gguf \
      --hf models/qwen25-0.5b-shape --n 8 --max-tokens 256
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slmsql_cli.cpu import physical_cores  # noqa: E402
from slmsql_cli.engine import Engine  # noqa: E402
from slmsql_cli.engine_protocol import SamplingParams  # noqa: E402
from slmsql_cli.prompt_builder import generation_message  # noqa: E402


def benchmark_question(engine: Engine, min_tokens: int):
    """The first Spider/BIRD question (from ../shared/data) whose chat prompt has >= min_tokens tokens.

    Returns (database, question dict, chat prompt text, prompt tokens)."""
    from slmsql_cli.database import open_database
    from slmsql_cli.pipeline import chat_text

    data = Path(os.environ.get("SLMSQL_SHARED_DIR", REPO.parent / "shared")) / "data"
    sources = [
        (
            data / "bird_dev/dev.json",
            data / "bird_dev/dev_tables.json",
            data / "bird_dev/dev_databases",
            "SQL",
        ),
        (
            data / "spider_dev/dev.json",
            data / "spider_dev/tables.json",
            data / "spider_dev/database",
            "query",
        ),
    ]
    for questions, tables, db_dir, _ in sources:
        seen: set[str] = set()
        for q in json.loads(questions.read_text()):
            if q["db_id"] in seen:
                continue
            seen.add(q["db_id"])
            db = open_database(
                db_dir / q["db_id"] / f"{q['db_id']}.sqlite", tables_json=tables, db_id=q["db_id"]
            )
            text = chat_text(engine, generation_message(db, q["question"], q.get("evidence", "")).text)
            count = len(engine.tokenize(text))
            if count >= min_tokens:
                return db, q, text, count
    raise SystemExit(f"no question in {data} gives a prompt of {min_tokens} tokens")


def run_pipeline(engine: Engine, db, q: dict, n: int, max_tokens: int) -> dict:
    """(d) a whole `ask` (prompt building, sampling, extraction, execution, voting; no merge):
    how much of its wall time is not llama.cpp's prompt evaluation and decoding."""
    from slmsql_cli.pipeline import AskConfig, Pipeline

    engine.close_context()
    pipeline = Pipeline(engine, None, AskConfig(n=n, max_tokens=max_tokens, merge=False))
    answer = pipeline.ask(db, q["question"], q.get("evidence", ""))
    g = answer.generation.stats
    total = answer.timings["total"]
    compute = g.prompt_seconds + g.decode_seconds
    return {
        "seconds": total,
        "llama_compute_seconds": compute,
        "overhead_fraction": (total - compute) / total,
        "generated_tokens": g.generated_tokens,
    }


def run_naive(gguf: Path, prompt_tokens: list[int], n: int, max_tokens: int, threads: int) -> dict:
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(gguf),
        n_ctx=len(prompt_tokens) + max_tokens + 16,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    eog = [
        t
        for t in range(llm.n_vocab())
        if llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), t)
    ]
    bias = {t: -1e9 for t in eog}
    t0 = time.perf_counter()
    generated = 0
    for i in range(n):
        out = llm.create_completion(
            prompt_tokens,
            max_tokens=max_tokens,
            temperature=0.8,
            top_p=1.0,
            top_k=0,
            min_p=0.0,
            seed=42 + i,
            logit_bias=bias,
        )
        assert isinstance(out, dict)  # not streaming
        generated += out["usage"]["completion_tokens"]
    seconds = time.perf_counter() - t0
    llm.close()
    return {"seconds": seconds, "generated_tokens": generated}


def run_engine(engine: Engine, prompt_text: str, n: int, max_tokens: int) -> dict:
    engine.close_context()  # the prompt is evaluated from scratch, as in the other two
    _, stats = engine.sample(
        prompt_text, SamplingParams(n=n, max_tokens=max_tokens, ignore_eos=True, stop=())
    )
    return {"seconds": stats.wall_seconds, "generated_tokens": stats.generated_tokens, **stats.as_dict()}


def run_transformers(
    hf_dir: str,
    gguf_file: str | None,
    prompt_text: str,
    n: int,
    max_tokens: int,
    threads: int,
    dtype: str = "auto",
) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tok = AutoTokenizer.from_pretrained(hf_dir, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        hf_dir, dtype=dtype if dtype == "auto" else getattr(torch, dtype), **kwargs
    )
    model.eval()
    ids = tok(prompt_text, return_tensors="pt", add_special_tokens=False)
    torch.manual_seed(42)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            **ids,
            do_sample=True,
            temperature=0.8,
            top_p=1.0,
            top_k=0,
            max_new_tokens=max_tokens,
            min_new_tokens=max_tokens,
            num_return_sequences=n,
            pad_token_id=tok.eos_token_id,
        )
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "generated_tokens": int((out.shape[1] - ids["input_ids"].shape[1]) * n),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "prompt_tokens_hf": int(ids["input_ids"].shape[1]),
    }


def peak_memory(gguf: Path, n: int, max_tokens: int, threads: int, prompt_file: Path) -> float:
    """Peak RSS (MiB) of a fresh process that loads the model and samples N candidates once."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from slmsql_cli.bench import peak_rss_mb\n"
        "from slmsql_cli.engine import Engine\n"
        "from slmsql_cli.engine_protocol import SamplingParams\n"
        f"e = Engine({str(gguf)!r}, threads={threads})\n"
        f"e.sample(open({str(prompt_file)!r}).read(), "
        f"SamplingParams(n={n}, max_tokens={max_tokens}, ignore_eos=True, stop=()))\n"
        "print(peak_rss_mb())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", type=Path, required=True, help="the GGUF timed in (a) and (b)")
    ap.add_argument(
        "--hf", help="Hugging Face checkpoint dir for (c); with --hf-gguf-file, a dir holding a GGUF"
    )
    ap.add_argument(
        "--hf-gguf-file", help="load (c) from this GGUF file name inside --hf (transformers gguf_file=)"
    )
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--min-prompt-tokens", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=physical_cores())
    ap.add_argument(
        "--hf-dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="dtype for (c); auto (the model cards' torch_dtype) loads the checkpoint's own",
    )
    ap.add_argument("--skip-transformers", action="store_true")
    args = ap.parse_args()

    engine = Engine(args.gguf, threads=args.threads)
    db, q, prompt_text, prompt_len = benchmark_question(engine, args.min_prompt_tokens)
    question = f"{q['db_id']}: {q['question']}"
    prompt_tokens = engine.tokenize(prompt_text)
    print(
        f"model {args.gguf.name}, {args.threads} threads, prompt {prompt_len} tokens ({question}), "
        f"N={args.n}, {args.max_tokens} tokens each",
        flush=True,
    )

    results: dict[str, dict] = {}
    results["engine_n"] = run_engine(engine, prompt_text, args.n, args.max_tokens)
    print(f"(b) engine N={args.n}: {results['engine_n']['seconds']:.1f}s", flush=True)
    results["engine_1"] = run_engine(engine, prompt_text, 1, args.max_tokens)
    print(f"(b) engine N=1: {results['engine_1']['seconds']:.1f}s", flush=True)
    results["pipeline"] = run_pipeline(engine, db, q, args.n, args.max_tokens)
    print(
        f"(d) whole ask N={args.n}: {results['pipeline']['seconds']:.1f}s, "
        f"{results['pipeline']['overhead_fraction']:.1%} outside llama.cpp",
        flush=True,
    )
    engine.close()
    results["naive"] = run_naive(args.gguf, prompt_tokens, args.n, args.max_tokens, args.threads)
    print(f"(a) naive loop N={args.n}: {results['naive']['seconds']:.1f}s", flush=True)
    if args.hf and not args.skip_transformers:
        results["transformers"] = run_transformers(
            args.hf, args.hf_gguf_file, prompt_text, args.n, args.max_tokens, args.threads, args.hf_dtype
        )
        print(
            f"(c) transformers N={args.n} ({results['transformers']['dtype']}): "
            f"{results['transformers']['seconds']:.1f}s",
            flush=True,
        )
    prompt_file = Path(os.environ.get("TMPDIR", "/tmp")) / "slmsql-bench-prompt.txt"
    prompt_file.write_text(prompt_text)
    peak = peak_memory(args.gguf, args.n, args.max_tokens, args.threads, prompt_file)

    e = results["engine_n"]
    summary = {
        "model": args.gguf.name,
        "model_mb": round(args.gguf.stat().st_size / 2**20, 1),
        "threads": args.threads,
        "prompt_tokens": prompt_len,
        "n": args.n,
        "max_tokens": args.max_tokens,
        "seconds": {k: round(v["seconds"], 2) for k, v in results.items()},
        "speedup_vs_naive": round(results["naive"]["seconds"] / e["seconds"], 2),
        "n_vs_1": round(e["seconds"] / results["engine_1"]["seconds"], 2),
        "overhead_fraction": round(e["overhead_seconds"] / e["wall_seconds"], 3),
        "ask_overhead_fraction": round(results["pipeline"]["overhead_fraction"], 3),
        "peak_rss_mb": round(peak, 1),
        "peak_over_model_mb": round(peak - args.gguf.stat().st_size / 2**20, 1),
    }
    if "transformers" in results:
        summary["speedup_vs_transformers"] = round(results["transformers"]["seconds"] / e["seconds"], 2)
        summary["transformers_dtype"] = results["transformers"]["dtype"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
