"""A query worker whose parent has stopped reading ends quietly (issue 27: the fast lane printed a
`BrokenPipeError` traceback from targets/worker.py though every test passed).

The worker is started exactly as `WorkerPool` starts it, and this test plays the parent: it
closes its end of the reply pipe before the worker writes, as a parent that exited would.
"""

from __future__ import annotations

import pickle
import subprocess
import time

from slmsql_cli.targets import worker


def start() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        worker.command(worker.DEFAULT_MEMORY_CAP),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )


def read_frame(proc: subprocess.Popen[bytes]) -> object:
    assert proc.stdout is not None
    header = proc.stdout.read(worker._HEADER.size)
    return pickle.loads(proc.stdout.read(worker._HEADER.unpack(header)[0]))


def test_a_reply_nobody_reads_ends_the_worker_quietly() -> None:
    proc = start()
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    assert read_frame(proc) == ("ready", None)
    request = pickle.dumps((time.sleep, (0.3,)), protocol=pickle.HIGHEST_PROTOCOL)
    proc.stdin.write(worker._HEADER.pack(len(request)) + request)
    proc.stdout.close()  # the parent is gone before the answer comes
    assert proc.wait(timeout=30) == 0
    assert proc.stderr.read() == b""
    proc.stdin.close()
    proc.stderr.close()


def test_a_parent_gone_before_ready_ends_the_worker_quietly() -> None:
    proc = start()
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the worker has even said "ready"
    assert proc.wait(timeout=30) == 0
    assert proc.stderr.read() == b""
    proc.stdin.close()
    proc.stderr.close()
