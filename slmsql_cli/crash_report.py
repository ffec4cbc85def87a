"""What a native crash leaves behind, and how it is told: the report file and its one-line summary.

The `slmsql` launcher (`launcher.py`) runs the command in a child process and names the report
file in `REPORT_ENV`; the child notes what native code it is about to run (`note`: the llama.cpp
features and weight placement, from `_internals.py`), and after a death by signal the parent
(or `doctor`'s self-check) turns the report into one error line and a hint (`describe_crash`).
On the ground floor, importing nothing of slmsql: the low-level model code calls `note` and the
entry point reads the report, so neither has to import the other.
"""

from __future__ import annotations

import os
import signal

NATIVE_CRASH_EXIT = 70
REPORT_ENV = "SLMSQL_CRASH_REPORT"
SIGNALS = {
    signal.SIGSEGV: "SIGSEGV (segmentation fault)",
    signal.SIGILL: "SIGILL (an instruction this CPU does not have)",
    signal.SIGABRT: "SIGABRT (abort)",
    signal.SIGBUS: "SIGBUS (bus error)",
    signal.SIGFPE: "SIGFPE (arithmetic fault)",
}


def note(line: str) -> None:
    """Record, in the child, what native code is about to run (read back only after a crash)."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line.rstrip("\n") + "\n")
    except OSError:
        pass


def describe_crash(signum: int, report: str, report_path: str | None = None) -> tuple[str, str]:
    """The error line and the hint for a child killed by `signum`, from its report text; the hint
    names the report file when there is one to keep."""
    what = SIGNALS.get(signal.Signals(signum), signal.Signals(signum).name) if signum > 0 else "a signal"
    features = ""
    placement = ""
    for line in report.splitlines():
        if line.startswith("llama.cpp: "):
            features = line.removeprefix("llama.cpp: ")
        elif line.startswith("placement: "):
            placement = line.removeprefix("placement: ")
    in_llama = (
        "llama_cpp" in report or "slmsql_cli/engine.py" in report or "slmsql_cli/_internals.py" in report
    )
    who = "llama.cpp" if (in_llama or features) else "slmsql (in native code)"
    message = f"{who} crashed with {what}"
    if features:
        message += f"; CPU features in use: {features}"
    if placement:
        message += f"; weights: {placement}"
    if signum == signal.SIGILL:
        way = "the llama-cpp-python wheel was built for another CPU: run 'bash scripts/setup.sh' again to rebuild it here"
    else:
        way = "try SLMSQL_WEIGHT_BUFFERS=plain (no optional llama.cpp kernels) and run 'slmsql doctor'"
    return message, (f"{way}; details in {report_path}" if report_path else way)
