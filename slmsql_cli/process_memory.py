"""The memory of the processes that do a command's work, summed: what `bench` and the load
benchmark report.

One process is the wrong thing to measure: `slmsql` is a launcher that runs the command in a
child (launcher.py), and SQLite queries run in worker processes of their own (targets/worker.py).
The launcher's own RSS (about 13 MiB) was once reported for a server that held a 241 MiB model.
So a figure here is the sum over a process tree: `work_root()` (the launcher when this process
runs under it, else this process) and all its descendants.

Two sums: `tree_rss`, resident memory now (for a sampler), and `tree_peak`, the sum of each
process's own peak (Linux's VmHWM), an upper bound of the tree's peak that needs no sampling.
psutil is used where it is installed; without it, /proc (Linux). Pages shared between the
processes (the Python interpreter's libraries) are counted once per process: a few MiB each.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

from slmsql_cli.crash_report import REPORT_ENV

MIB = 2**20


def work_root() -> int:
    """The process whose tree does this command's work: the launcher that started this process
    (it sets REPORT_ENV for its child, launcher.py), else this process."""
    parent = os.getppid()
    return parent if os.environ.get(REPORT_ENV) and parent > 1 else os.getpid()


def tree(root: int) -> list[int]:
    """`root` and every process below it (children, their children, …), `root` first; [] when
    `root` is gone."""
    try:
        import psutil
    except ImportError:
        return _proc_tree(root)
    try:
        top = psutil.Process(root)
        return [root, *(child.pid for child in top.children(recursive=True))]
    except psutil.Error:
        return []


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` now; 0 when it is gone or cannot be read."""
    try:
        import psutil
    except ImportError:
        return _proc_status(pid, "VmRSS:")
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def peak_bytes(pid: int) -> int:
    """The peak resident memory of `pid` so far (VmHWM); this process's ru_maxrss where /proc has
    none (macOS); 0 when unknown."""
    peak = _proc_status(pid, "VmHWM:")
    if peak or pid != os.getpid():
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def tree_rss(root: int) -> int:
    """Resident memory of `root`'s tree now, in bytes."""
    return sum(rss_bytes(pid) for pid in tree(root))


def tree_peak(root: int) -> int:
    """The sum of each process's peak in `root`'s tree, in bytes (an upper bound of the tree's
    peak: the processes need not have peaked at the same moment)."""
    return sum(peak_bytes(pid) for pid in tree(root))


def _proc_status(pid: int, field: str) -> int:
    """A `kB` line of /proc/PID/status in bytes; 0 when missing."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _proc_tree(root: int) -> list[int]:
    """`tree` from /proc: every process's parent, read once."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(errors="replace")
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])  # after "(comm)": state, ppid
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    if not Path(f"/proc/{root}").exists():
        return [] if Path("/proc").is_dir() else [root]
    found, queue = [root], [root]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found
