"""The thread count follows what other programs leave free; --threads and --gpu-layers override."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, Slmsql

from slmsql_cli import cpu
from slmsql_cli.cpu import ThreadChoice, cpu_name, default_threads, idle_share, physical_cores
from slmsql_cli.engine import Engine

DEMO = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"


def test_the_default_is_between_one_thread_and_the_physical_cores() -> None:
    share = idle_share()
    assert share is None or 0.0 <= share <= 1.0
    assert 1 <= default_threads() <= physical_cores()
    assert cpu_name()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux: /proc/stat and CPU affinity")
def test_every_allowed_cpu_busy_means_one_thread() -> None:
    # One spinning process per CPU this process may use: nothing is left idle, so one thread,
    # not one per core fighting the spinners for their cores.
    allowed = sorted(os.sched_getaffinity(0))
    spin = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", spin, str(cpu)]) for cpu in allowed]
    try:
        time.sleep(0.3)  # started and spinning
        assert idle_share(0.3) == pytest.approx(0.0, abs=0.35)
        assert default_threads(0.3) == 1
        if physical_cores() > 1:  # and the reason says so, for `bench` and `ask -v`
            reason = cpu.explain_threads(1, None)
            assert reason.startswith(f"1 thread of {physical_cores()} physical cores: other programs kept")
            assert "busy" in reason
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def test_the_reason_for_the_thread_count() -> None:
    assert ThreadChoice(4, 1.0, 4).reason() == "4 threads: one per physical core (4 physical cores; all idle)"
    assert ThreadChoice(2, 0.52, 1).reason() == (
        "1 thread of 2 physical cores: other programs kept 48% of them busy, and a thread on a busy "
        "core stalls every step"
    )
    assert ThreadChoice(8, None, 8).reason().endswith("(8 physical cores; their load cannot be read here)")
    assert cpu.explain_threads(3, 3) == "3 threads: --threads 3"


def test_threads_and_gpu_layers_given_are_used(gemma_gguf: Path) -> None:
    with Engine(gemma_gguf, threads=3, gpu_layers=0) as engine:
        assert engine.threads == 3 and engine.gpu_layers == 0
        assert engine.device == f"CPU {cpu_name()}, 3 threads"
    with Engine(gemma_gguf) as engine:  # this build: llama.cpp reports no GPU offload
        import llama_cpp

        if not llama_cpp.llama_supports_gpu_offload():
            assert engine.gpu_layers == 0 and engine.device.startswith("CPU ")
        else:
            assert engine.gpu_layers == -1 and engine.device.startswith("GPU (")


def test_bench_says_which_device_ran(slmsql: Slmsql, gemma_gguf: Path, tmp_path: Path) -> None:
    proc = slmsql(
        "bench", "--db", DEMO, "-m", gemma_gguf, "-n", "1", "--max-tokens", "4", "--threads", "1",
        "--gpu-layers", "0", cache=tmp_path / "cache", env={"COLUMNS": "200"}, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["device"] == f"CPU {cpu_name()}, 1 thread" and doc["threads"] == 1
    assert f"CPU {cpu_name()}, 1 thread" in proc.stdout  # the table's title
    assert "threads: 1 thread: --threads 1" in proc.stderr  # how many threads, and why
