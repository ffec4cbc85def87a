"""`slmsql bench`: how fast this machine answers, for several sample counts N.

Each N runs the real generation prompt of a question on the user's database, with the prompt
evaluated from scratch and a fixed number of generated tokens per candidate (end-of-turn ignored)
so that runs are comparable and the user can pick the largest N their patience allows.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass

from slmsql_cli import process_memory
from slmsql_cli.engine import Engine
from slmsql_cli.engine_protocol import Constraint, SamplingParams


@dataclass
class BenchRow:
    n: int
    prompt_tokens: int
    prompt_tokens_per_s: float
    generated_tokens: int
    generated_tokens_per_s: float
    seconds_per_question: float
    overhead_fraction: float
    peak_rss_mb: float


def peak_rss_mb() -> float:
    """Peak resident memory of the processes doing this command's work so far, in MiB: the
    launcher, this process (which holds the model) and any query workers, each one's peak summed
    (`process_memory.tree_peak`), as a user's `slmsql bench` costs the machine."""
    return process_memory.tree_peak(process_memory.work_root()) / process_memory.MIB


def run_bench(
    engine: Engine,
    prompt_text: str,
    ns: list[int],
    max_tokens: int,
    seed: int = 42,
    constraint: Constraint | None = None,
) -> list[BenchRow]:
    """`constraint` (--constrain): the candidates' SQL is checked token by token as `ask` checks it
    (a candidate the constraint ends early generates fewer tokens; tokens/s counts those it made)."""
    rows = []
    for n in ns:
        engine.close_context()  # evaluate the prompt from scratch for every N
        params = SamplingParams(
            n=n, max_tokens=max_tokens, seed=seed, ignore_eos=True, stop=(), constraint=constraint
        )
        _, stats = engine.sample(prompt_text, params)
        gen_seconds = max(stats.wall_seconds - stats.prompt_seconds, 1e-9)
        rows.append(
            BenchRow(
                n=n,
                prompt_tokens=stats.prompt_tokens,
                # 0 where the prompt's time is not measured here (a server generates: remote_engine.py)
                prompt_tokens_per_s=stats.prompt_tokens_evaluated / stats.prompt_seconds
                if stats.prompt_seconds
                else 0.0,
                generated_tokens=stats.generated_tokens,
                generated_tokens_per_s=stats.generated_tokens / gen_seconds,
                seconds_per_question=stats.wall_seconds,
                overhead_fraction=stats.overhead_seconds / max(stats.wall_seconds, 1e-9),
                peak_rss_mb=peak_rss_mb(),
            )
        )
    return rows


def report(
    model_path: str,
    threads: int,
    max_tokens: int,
    rows: list[BenchRow],
    device: str = "",
    constrained: bool = False,
) -> dict:
    return {
        "model": model_path,
        "device": device,  # Engine.device: the GPU backend, or the CPU and its threads
        "threads": threads,
        "max_tokens": max_tokens,
        "constrained": constrained,  # --constrain: sampled under the names constraint
        "machine": f"{platform.system()} {platform.machine()} {platform.processor() or ''}".strip(),
        "results": [asdict(r) for r in rows],
    }
