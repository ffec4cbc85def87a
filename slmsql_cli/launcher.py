"""The `slmsql` entry point: a command that loads llama.cpp runs in a child process, so that a
native crash is reported.

A segfault or SIGILL inside llama.cpp kills the Python process outright: no exception, no
`finally`, only the shell's "Segmentation fault". So for the commands that load llama.cpp (or
run its quantizer, or torch for `train`: `needs_supervisor`, decided from the arguments alone,
before anything heavy is imported) `main` starts the real command (`slmsql_cli.cli.main`) as a
child with the same arguments, standard streams and terminal, and waits. The others (`--help`
and `-h` anywhere, `--version`, `explain`, `saved`, `models`, `eval compare`, `prompt` without
--model) run in this process: a second Python start would cost them a third of their time. When the child dies from a signal, this process prints one `error:` line that names what
crashed and the CPU features in use, a `hint:` with the way around it, and exits with
`NATIVE_CRASH_EXIT` (70, EX_SOFTWARE in sysexits.h); the details (Python's stack at the crash,
from `faulthandler`) are kept in a report file that the hint names. Any other exit status is passed
through unchanged.

The child notes what it is about to run natively (`crash_report.note`: the llama.cpp features and
weight placement) in that report file, so the parent can name it without importing llama.cpp itself.

Signals: Ctrl-C at a terminal reaches the child directly (same process group), so the parent
passes on only a SIGINT that a program sent to it alone (`kill -INT`, a test, a supervisor): it
waits with SIGINT blocked (`sigtimedwait`) and reads who sent it (si_code: the terminal's is
SI_KERNEL, a process's SI_USER). SIGTERM, SIGHUP and SIGQUIT sent to the parent are passed on.
`SLMSQL_NO_SUPERVISOR=1` runs every command in this process.
"""

from __future__ import annotations

import os
import signal
import sys

from slmsql_cli.crash_report import NATIVE_CRASH_EXIT, REPORT_ENV, SIGNALS, describe_crash

# The commands that load llama.cpp (ask, chat, serve, eval, bench, doctor), run its quantizer
# (export) or load torch and llama.cpp's tokenizer (train). `prompt` does with --model.
NATIVE_COMMANDS = frozenset({"ask", "chat", "serve", "eval", "bench", "doctor", "export", "train"})
HELP_FLAGS = frozenset({"-h", "--help"})


def needs_supervisor(argv: list[str]) -> bool:
    """Whether `slmsql argv` may run llama.cpp, so that it needs the child process that reports a
    native crash. A guess from the words alone, on the safe side: a command that turns out not to
    load anything (`eval --predictions`) only starts a little slower."""
    words = argv[: argv.index("--")] if "--" in argv else argv  # after `--`: arguments, not options
    if not words or HELP_FLAGS & set(words):
        return False
    command, rest = words[0], words[1:]
    if command == "eval":
        return rest[:1] != ["compare"]
    if command == "prompt":  # -m MODEL, -mMODEL, --model MODEL, --model=MODEL
        return any(w.startswith(("-m", "--model")) for w in rest)
    return command in NATIVE_COMMANDS


def _child_main() -> None:
    import faulthandler

    path = os.environ.get(REPORT_ENV)
    if path:
        # Python's stack of every thread at the moment of a fatal signal, then the default action.
        faulthandler.enable(file=open(path, "a", encoding="utf-8"), all_threads=True)
    from slmsql_cli.cli import main as cli_main

    cli_main()


def supervise(argv: list[str]) -> int:
    """Run `slmsql argv` in a child process; its exit status, or NATIVE_CRASH_EXIT after a crash report."""
    import subprocess  # here, not at the top: only a command that runs in a child needs them
    import tempfile

    fd, report_path = tempfile.mkstemp(prefix="slmsql-crash-", suffix=".txt")
    os.close(fd)
    env = dict(os.environ, **{REPORT_ENV: report_path})
    waited = {signal.SIGINT, signal.SIGCHLD}
    can_wait = hasattr(signal, "sigtimedwait")  # Linux; elsewhere Ctrl-C from a terminal only
    if can_wait:
        signal.pthread_sigmask(signal.SIG_BLOCK, waited)  # this process has no other thread
    else:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def unblock() -> None:  # in the child, before the command starts: its own Ctrl-C as usual
        if can_wait:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, waited)

    child = subprocess.Popen(
        [sys.executable, "-c", "from slmsql_cli.launcher import _child_main; _child_main()", *argv],
        env=env,
        close_fds=False,  # every open descriptor too: `--db <(cmd)` names /dev/fd/63
        preexec_fn=unblock,  # safe: the parent has no other thread
    )

    def forward(signum: int, _frame: object) -> None:
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, forward)
    while can_wait and child.poll() is None:
        info = signal.sigtimedwait(waited, 1.0)  # SIGCHLD ends the wait when the child exits
        if info is not None and info.si_signo == signal.SIGINT and info.si_code <= 0:
            forward(signal.SIGINT, None)  # sent by a process to `slmsql` alone, not by the terminal
    code = child.wait()
    if code >= 0 or -code not in SIGNALS:
        os.unlink(report_path)
        return code if code >= 0 else 128 - code
    with open(report_path, encoding="utf-8", errors="replace") as fh:
        report = fh.read()
    message, hint = describe_crash(-code, report, report_path)
    # Plain text: this process has not imported rich, and the line must get out even if little works.
    sys.stderr.write(f"error: {message}\nhint: {hint}\n")
    sys.stderr.flush()
    return NATIVE_CRASH_EXIT


def main() -> None:
    in_process = os.environ.get("SLMSQL_NO_SUPERVISOR") == "1" or os.environ.get(REPORT_ENV)
    if in_process or not needs_supervisor(sys.argv[1:]):
        _child_main()
        return
    sys.exit(supervise(sys.argv[1:]))
