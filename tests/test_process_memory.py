"""The memory figures (`slmsql_cli/process_memory.py`, `bench.peak_rss_mb`, benchmarks/serve_load.py)
sum the process tree that does the work, not the one process that was started: real processes
here, a launcher-like parent, a command and a worker that holds the memory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from conftest import REPO

from slmsql_cli import process_memory
from slmsql_cli.crash_report import REPORT_ENV
from slmsql_cli.process_memory import MIB

HOLD = 160  # MiB the worker holds, touched page by page

# parent → command → worker, each printing its level and waiting on stdin; the worker holds HOLD
# MiB. The script hands its own source to its child (`-c` has no file to run again).
TREE_SOURCE = textwrap.dedent(
    f"""
    import subprocess, sys
    SOURCE = {{source!r}}
    level = int(sys.argv[1])
    if level < 2:
        child = subprocess.Popen([sys.executable, "-c", SOURCE.format(source=SOURCE), str(level + 1)],
                                 stdin=subprocess.PIPE)
    else:
        held = bytearray({HOLD} * 2**20)
        for i in range(0, len(held), 4096):
            held[i] = 1
    print(level, flush=True)
    sys.stdin.read()
    if level < 2:
        child.stdin.close()
        child.wait()
    """
)
TREE_SOURCE = TREE_SOURCE.format(source=TREE_SOURCE)


@pytest.fixture()
def three_levels() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", TREE_SOURCE, "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    ready = {proc.stdout.readline().strip() for _ in range(3)}
    assert ready == {"0", "1", "2"}
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(30)


def test_the_tree_sums_every_process_below_the_root(three_levels: subprocess.Popen[str]) -> None:
    root = three_levels.pid
    pids = process_memory.tree(root)
    assert len(pids) == 3 and pids[0] == root
    assert sorted(process_memory._proc_tree(root)) == sorted(pids)  # the /proc reading agrees
    alone = process_memory.rss_bytes(root) / MIB
    whole = process_memory.tree_rss(root) / MIB
    assert alone < 60, alone  # a Python that holds nothing: the launcher's case
    assert whole > HOLD + 2 * alone * 0.5, (whole, alone)
    assert process_memory.tree_peak(root) >= process_memory.tree_rss(root) * 0.99
    assert process_memory.tree(2**22 + 12345) == []  # no such process


def test_bench_peak_counts_the_launcher_and_the_workers() -> None:
    """`bench.peak_rss_mb` in a process started as the launcher starts its command (REPORT_ENV
    set): its parent's tree, the worker's HOLD MiB included; without REPORT_ENV, itself alone."""
    code = textwrap.dedent(
        f"""
        import subprocess, sys
        sys.path.insert(0, {str(REPO)!r})
        from slmsql_cli.bench import peak_rss_mb
        from slmsql_cli.process_memory import work_root
        worker = subprocess.Popen([sys.executable, "-c", {TREE_SOURCE!r}, "2"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        worker.stdout.readline()
        print(work_root(), round(peak_rss_mb()))
        worker.stdin.close()
        worker.wait()
        """
    )
    env = {k: v for k, v in os.environ.items() if k != REPORT_ENV}
    alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    launched = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, REPORT_ENV: "/dev/null"},
        check=True,
    )
    root_alone, mib_alone = map(int, alone.stdout.split())
    root_launched, mib_launched = map(int, launched.stdout.split())
    assert root_alone != os.getpid() and root_launched == os.getpid()  # this test is its "launcher"
    assert mib_alone > HOLD  # its own worker counts
    own = process_memory.peak_bytes(os.getpid()) / MIB
    assert mib_launched >= mib_alone + own * 0.9, (mib_launched, mib_alone, own)
