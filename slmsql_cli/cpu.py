"""How many CPU threads llama.cpp should use: the physical cores that other programs leave free.

llama.cpp splits every matrix product across its threads and waits at a barrier after each step
of the graph, its idle threads spinning. When another program holds a core, the thread that
shares that core runs half the time, and every step waits for it: on a 2-core machine with one
busy process, 2 threads took 13.0 s for what 1 thread did in 8.4 s (issue 9). So the default
thread count is the number of physical cores in this process's CPU affinity, times the share of
those CPUs that was idle over a short sample (0.1 s of /proc/stat, this process's own CPU time
left out), rounded, at least 1. Elsewhere than Linux (no /proc/stat) it is the physical cores.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

SAMPLE_SECONDS = 0.1


def physical_cores() -> int:
    """Physical cores available to this process (llama.cpp decodes best with one thread per core)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        available = os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    try:
        physical = core = ""
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical = value.strip()
                elif key == "core id":
                    core = value.strip()
                    cores.add((physical, core))
    except OSError:
        pass
    if not cores:
        try:
            import subprocess

            out = subprocess.run(
                ["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True, timeout=2
            )
            return max(1, min(int(out.stdout.strip()), available))
        except (OSError, ValueError, subprocess.SubprocessError):
            return max(1, available)
    return max(1, min(len(cores), available))


@dataclass(frozen=True)
class ThreadChoice:
    """How `default_threads` chose: the physical cores, the share of them other programs left
    idle (None where /proc/stat cannot be read) and the threads that makes."""

    cores: int
    idle: float | None
    threads: int

    def reason(self) -> str:
        """Why this many threads, in words (`bench` and `ask -v` print it)."""
        many = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        cores = f"{self.cores} physical core{'s' if self.cores != 1 else ''}"
        if self.idle is None:
            return f"{many}: one per physical core ({cores}; their load cannot be read here)"
        busy = f"other programs kept {1 - self.idle:.0%} of them busy" if self.idle < 0.995 else "all idle"
        if self.threads >= self.cores:
            return f"{many}: one per physical core ({cores}; {busy})"
        return f"{many} of {cores}: {busy}, and a thread on a busy core stalls every step"


# The last choice `default_threads` made in this process, for the commands that explain it.
last_choice: ThreadChoice | None = None


def choose_threads(sample_seconds: float = SAMPLE_SECONDS) -> ThreadChoice:
    """Threads for llama.cpp now, and why: the physical cores other programs leave idle (see the module)."""
    global last_choice
    cores = physical_cores()
    idle = idle_share(sample_seconds)
    threads = cores if idle is None else max(1, min(cores, round(cores * idle)))
    last_choice = ThreadChoice(cores, idle, threads)
    return last_choice


def default_threads(sample_seconds: float = SAMPLE_SECONDS) -> int:
    """Threads for llama.cpp now: the physical cores other programs leave idle (see the module)."""
    return choose_threads(sample_seconds).threads


def explain_threads(threads: int, requested: int | None) -> str:
    """Why a model runs on `threads` threads: --threads when it was given, else the last
    measurement that chose the count."""
    if requested is not None:
        return f"{threads} thread{'s' if threads != 1 else ''}: --threads {requested}"
    if last_choice is not None and last_choice.threads == threads:
        return last_choice.reason()
    return f"{threads} thread{'s' if threads != 1 else ''}"


def idle_share(sample_seconds: float = SAMPLE_SECONDS) -> float | None:
    """The share (0-1) of this process's allowed CPUs that other programs left idle over
    `sample_seconds`; None where /proc/stat cannot be read."""
    try:
        cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except AttributeError:  # macOS
        return None
    before, own_before = _cpu_ticks(cpus), _own_ticks()
    time.sleep(sample_seconds)
    after, own_after = _cpu_ticks(cpus), _own_ticks()
    if before is None or after is None:
        return None
    total = after[1] - before[1]
    if total <= 0:
        return None
    busy = (after[0] - before[0]) - max(own_after - own_before, 0)
    return min(1.0, max(0.0, 1.0 - busy / total))


def _cpu_ticks(cpus: set[str]) -> tuple[int, int] | None:
    """(busy, total) clock ticks of the given CPUs since boot, from /proc/stat."""
    busy = total = 0
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                name, *fields = line.split()
                if name not in cpus:
                    continue
                # user nice system idle iowait irq softirq steal (guest time is inside user)
                ticks = [int(x) for x in fields[:8]]
                total += sum(ticks)
                busy += sum(ticks) - ticks[3] - ticks[4]
    except (OSError, ValueError, IndexError):
        return None
    return (busy, total) if total else None


def _own_ticks() -> int:
    """This process's user + system clock ticks (/proc/self/stat), 0 where unreadable."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the line)
    except (OSError, ValueError, IndexError):
        return 0


def cpu_name() -> str:
    """The processor's model name (/proc/cpuinfo, or sysctl on macOS; else the platform's word)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware"):
                    return " ".join(value.split())
    except OSError:
        pass
    try:
        import subprocess

        out = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=2
        )
        if out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine() or "unknown"
