"""A native crash says what happened: real `slmsql` processes made to crash inside llama.cpp.

The fault is injected with a `sitecustomize.py` on PYTHONPATH that replaces llama.cpp's model
loader with a call that really segfaults (a read of address 0) or raises SIGILL, so the whole
chain runs for real: the child dies from the signal, faulthandler writes its report, and the
launcher prints one `error:` line and exits NATIVE_CRASH_EXIT.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, Slmsql

from slmsql_cli import crash_report, selfcheck

BOOKSHOP = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"

INJECT = """
import os
_mode = os.environ.get("SLMSQL_TEST_INJECT")
if _mode:
    import ctypes, signal
    import llama_cpp

    def _crash(*args, **kwargs):
        if _mode == "segv":
            ctypes.string_at(0)  # a real SIGSEGV
        os.kill(os.getpid(), getattr(signal, "SIG" + _mode.upper()))

    llama_cpp.llama_model_load_from_file = _crash
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return selfcheck.make_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture()
def inject(tmp_path: Path) -> dict[str, str | None]:
    """The child's environment: INJECT on its path, no SLMSQL_ variable of ours, its own folders."""
    site = tmp_path / "inject"
    site.mkdir()
    (site / "sitecustomize.py").write_text(INJECT, encoding="utf-8")
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("SLMSQL_")}
    env.update(PYTHONPATH=str(site), TMPDIR=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))
    return env


def test_segfault_in_llama_cpp_is_one_error_line(
    slmsql: Slmsql, tiny_model: Path, inject: dict[str, str | None], tmp_path: Path
) -> None:
    inject["SLMSQL_TEST_INJECT"] = "segv"
    proc = slmsql(
        "ask", "--db", str(BOOKSHOP), "--model", str(tiny_model), "How many books?", env=inject, timeout=120
    )
    assert proc.returncode == crash_report.NATIVE_CRASH_EXIT == 70
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: llama.cpp crashed with SIGSEGV (segmentation fault)")
    assert "CPU features in use:" in errors[0]
    assert lines[-1].startswith("hint: try SLMSQL_WEIGHT_BUFFERS=plain")
    assert "Segmentation fault" not in proc.stderr.replace("segmentation fault", "")
    assert "Fatal Python error" not in proc.stderr and "Traceback" not in proc.stderr
    # the details are kept where the hint says, with Python's stack at the crash
    report = Path(lines[-1].split("details in ")[1])
    text = report.read_text()
    assert "Fatal Python error: Segmentation fault" in text and "_internals.py" in text
    assert oct(report.stat().st_mode & 0o777) == "0o600"


def test_sigill_points_at_rebuilding_the_wheel(
    slmsql: Slmsql, tiny_model: Path, inject: dict[str, str | None]
) -> None:
    inject["SLMSQL_TEST_INJECT"] = "ill"
    proc = slmsql(
        "ask", "--db", str(BOOKSHOP), "--model", str(tiny_model), "How many books?", env=inject, timeout=120
    )
    assert proc.returncode == 70
    assert "error: llama.cpp crashed with SIGILL" in proc.stderr
    assert "bash scripts/setup.sh" in proc.stderr


def test_serve_exits_non_zero_with_the_line(
    slmsql: Slmsql, tiny_model: Path, inject: dict[str, str | None]
) -> None:
    """serve's design: it exits 70 (a supervisor restarts it; README has a systemd unit), never vanishes."""
    inject["SLMSQL_TEST_INJECT"] = "segv"
    proc = slmsql(
        "serve",
        "--http",
        "--port",
        "0",
        "--db",
        f"shop={BOOKSHOP}",
        "--model",
        str(tiny_model),
        env=inject,
        timeout=120,
    )
    assert proc.returncode == 70, proc.stderr
    assert "error: llama.cpp crashed with SIGSEGV" in proc.stderr


def test_ordinary_exit_codes_pass_through(slmsql: Slmsql, inject: dict[str, str | None]) -> None:
    proc = slmsql("ask", "--db", "no/such/file.sqlite", "anything", env=inject, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error:")
    assert slmsql("--version", env=inject, timeout=120).returncode == 0


def test_sigterm_reaches_the_command(slmsql: Slmsql, inject: dict[str, str | None]) -> None:
    """A supervisor's SIGTERM to `slmsql` is passed on to the child, which ends; no crash report."""
    proc = slmsql.start(
        "chat", "--db", BOOKSHOP, "--model", "/nonexistent.gguf", env=inject, stdin=subprocess.PIPE, text=True
    )
    try:
        proc.wait(timeout=1.5)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "crashed" not in (proc.stderr.read() if proc.stderr else "")


def test_describe_crash_without_llama_notes() -> None:
    message, hint = crash_report.describe_crash(
        signal.SIGBUS, "Fatal Python error: Bus error\n  File x.py", "/r.txt"
    )
    assert message == "slmsql (in native code) crashed with SIGBUS (bus error)"
    assert hint.endswith("details in /r.txt")


def test_doctor_reports_a_healthy_install(slmsql: Slmsql, inject: dict[str, str | None]) -> None:
    proc = slmsql("doctor", "--json", env=inject, timeout=120)
    doc = json.loads(proc.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["healthy"] is True and proc.returncode == 0, proc.stdout
    assert checks["decode"]["status"] == "ok" and "16 tokens" in checks["decode"]["detail"]
    assert checks["llama.cpp"]["detail"].startswith("llama-cpp-python ")
    assert {"threads", "models", "extras", "test tools"} <= set(checks)
    for check in doc["checks"]:
        assert check["status"] == "ok" or check["fix"], check  # every problem names its fix


def test_doctor_names_the_fault_on_a_broken_install(slmsql: Slmsql, inject: dict[str, str | None]) -> None:
    inject["SLMSQL_TEST_INJECT"] = "segv"
    proc = slmsql("doctor", "--json", env=inject, timeout=120)
    doc = json.loads(proc.stdout)
    decode = next(c for c in doc["checks"] if c["name"] == "decode")
    assert proc.returncode == 1 and doc["healthy"] is False
    assert decode["status"] == "fail"
    assert decode["detail"].startswith("llama.cpp crashed with SIGSEGV")
    assert "SLMSQL_WEIGHT_BUFFERS=plain" in decode["fix"]
    text = slmsql("doctor", env=inject, timeout=120)
    assert "FAIL decode: llama.cpp crashed with SIGSEGV" in " ".join(text.stdout.split())


def test_ctrl_c_at_a_terminal_ends_the_command(
    slmsql: Slmsql, inject: dict[str, str | None], gemma_gguf: Path
) -> None:
    """A real terminal (a pty): `chat` waits at its prompt under the launcher; the terminal's
    Ctrl-C reaches the command (its SIGINT is not blocked or ignored there) and chat ends as it
    does without the launcher: exit 130, no traceback."""
    import pty
    import select

    argv, env = slmsql.argv("chat", "--db", BOOKSHOP, "-m", gemma_gguf), slmsql.environ(inject)
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader on the pty, as a shell starts slmsql
        os.chdir(REPO)
        os.execve(sys.executable, argv, env)
    output = b""
    deadline = time.monotonic() + 120

    def read_until(marker: bytes) -> bool:
        nonlocal output
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # the pty closed: the process ended
                    return False
                output += chunk
                if marker in output:
                    return True
        return False

    try:
        assert read_until(b"Ctrl-D to leave"), output.decode("utf-8", "replace")
        time.sleep(0.5)  # at the prompt
        os.write(fd, b"\x03")  # the terminal's Ctrl-C: SIGINT to the foreground process group
        deadline = time.monotonic() + 30
        read_until(b"__the end__")  # until the pty closes (the command ended) or 30 s
        done, status = os.waitpid(pid, os.WNOHANG)
        while not done and time.monotonic() < deadline:
            time.sleep(0.1)
            done, status = os.waitpid(pid, os.WNOHANG)
        if not done:  # still waiting at its prompt: the Ctrl-C never arrived
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("Ctrl-C did not end chat: " + output.decode("utf-8", "replace"))
    finally:
        os.close(fd)
    text = output.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 130, text
    assert "Traceback" not in text and "crashed" not in text, text
