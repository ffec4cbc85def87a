"""`slmsql chat` at a real terminal (a pseudo-terminal): Ctrl-C cancels the question being
answered and the session goes on with the model still loaded; Ctrl-C at the prompt, or a second
Ctrl-C before the first is done, ends the session with exit 130.

The terminal's Ctrl-C is the byte 0x03 written to the pty, which the kernel's line discipline
turns into SIGINT for the foreground process group, as it does for a person. The model is the
scripted engine (slmsql_cli/scripted.py) made slow for some questions: one that says "slowly"
writes a token every 50 ms for five minutes (calling `on_token`, as llama.cpp's sampling does), one
that says "silently" waits five minutes without any callback (a long prompt read by a model server
that reports nothing). Any other question gets a count of the books at once.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import sqlite3
import struct
import termios
import time
from pathlib import Path

import pytest
from conftest import REPO, Slmsql

DEMO = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"
SQL = "SELECT count(*) FROM books"
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
SLOW_ENGINE = f"""
import time
from slmsql_cli import engines
from slmsql_cli.scripted import ScriptedEngine

SAID = "<think>\\nCount them.\\n</think>\\n<answer>\\n{SQL}\\n</answer>"


class Slow(ScriptedEngine):
    def sample(self, prompt, params, on_token=None, on_prompt=None):
        text = prompt if isinstance(prompt, str) else bytes(prompt).decode("utf-8", "replace")
        if "slowly" in text:
            for _ in range(6000):
                time.sleep(0.05)
                if on_token:
                    on_token(0)
        if "silently" in text:
            time.sleep(300)
        return super().sample(prompt, params, on_token)


engines.register("scripted", lambda spec, config, export=None: Slow([SAID] * 64, name=spec))
"""


SCRIPTED = ("-m", "scripted", "-n", "1", "--no-merge")


class Terminal:
    """`slmsql chat --db DEMO ARGS` (by default with the slow scripted engine; `code=None`: the
    real command line, through the launcher) as a session leader on a new pty, as a shell starts
    it; `expect` reads what the terminal shows (colour codes taken out) up to a marker."""

    def __init__(
        self,
        slmsql: Slmsql,
        cache: Path,
        args: tuple[str | Path, ...] = SCRIPTED,
        code: str | None = SLOW_ENGINE,
    ) -> None:
        argv = slmsql.argv("chat", "--db", DEMO, *args, code=code)
        env = slmsql.environ({"TERM": "xterm", "COLUMNS": None, "LINES": None}, cache=cache)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            os.chdir(REPO)
            os.execve(argv[0], argv, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        self.raw = b""
        self.seen = 0  # where the next `expect` starts looking
        self.closed = False

    @property
    def shown(self) -> str:
        return ANSI.sub(b"", self.raw).decode("utf-8", "replace")

    def expect(self, marker: str, timeout: float = 60) -> float:
        """Wait until `marker` shows after the last one found; the seconds it took."""
        return self.expect_match(re.escape(marker), timeout)[1]

    def expect_match(self, pattern: str, timeout: float = 60) -> tuple[re.Match[str], float]:
        """Wait until `pattern` matches after the last one found; the match and the seconds it took."""
        start = time.monotonic()
        while True:
            found = re.compile(pattern).search(self.shown, self.seen)
            if found:
                self.seen = found.end()
                return found, time.monotonic() - start
            left = start + timeout - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError(f"{pattern!r} never showed; the terminal:\n{self.shown[self.seen :]}")
            if select.select([self.fd], [], [], min(left, 0.5))[0]:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # EIO: the command ended and the pty closed
                    chunk = b""
                self.raw += chunk
                self.closed = not chunk

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def exit_code(self, timeout: float = 30) -> int:
        """The command's exit code once it ends (read to the end of what it shows first)."""
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            try:
                self.expect_match("\x00never\x00", timeout=deadline - time.monotonic())
            except AssertionError:
                break
        while time.monotonic() < deadline:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.1)
        raise AssertionError("chat did not end:\n" + self.shown)

    def running(self) -> bool:
        return os.waitpid(self.pid, os.WNOHANG) == (0, 0)

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


def books() -> int:
    with sqlite3.connect(DEMO) as conn:
        return int(conn.execute(SQL).fetchone()[0])


def test_ctrl_c_cancels_the_question_and_the_session_goes_on(slmsql: Slmsql, tmp_path: Path) -> None:
    chat = Terminal(slmsql, tmp_path / "cache")
    try:
        chat.expect("Ctrl-D to leave")
        chat.expect("? ")
        chat.type("How many books are there, slowly?\n")
        chat.expect("tokens")  # sampling, the status line counting its tokens
        chat.type("\x03")  # Ctrl-C
        assert chat.expect("cancelled", timeout=30) < 10  # at the next token, not in five minutes
        chat.expect("? ")  # the prompt again: the same session, the model still loaded
        chat.type("How many books are there?\n")
        chat.expect(SQL)
        chat.expect(f" {books()} ")
        chat.expect("1/1 candidates agreed")
        chat.expect("? ")
        time.sleep(
            0.5
        )  # waiting at the prompt (Python sees a signal that lands before it reads only at Enter)
        chat.type("\x03")  # Ctrl-C at the empty prompt ends the session
        code = chat.exit_code()
    finally:
        chat.close()
    assert code == 130, chat.shown
    assert "interrupted" in chat.shown[chat.seen :]
    assert "Traceback" not in chat.shown, chat.shown


def test_a_second_ctrl_c_before_the_first_is_done_ends_the_session(slmsql: Slmsql, tmp_path: Path) -> None:
    chat = Terminal(slmsql, tmp_path / "cache")
    try:
        chat.expect("? ")
        chat.type("How many books are there, silently?\n")
        chat.expect("sampling")  # a query worker starts now: the terminal's Ctrl-C is not for it
        chat.type("\x03")  # marks the question: the engine reaches no safe point to stop at
        time.sleep(1.0)
        assert chat.running() and "cancelled" not in chat.shown  # waiting for a safe point
        chat.type("\x03")  # the second one ends the session
        code = chat.exit_code()
    finally:
        chat.close()
    assert code == 130, chat.shown
    assert "interrupted" in chat.shown and "cancelled" not in chat.shown, chat.shown
    assert "Traceback" not in chat.shown, chat.shown


@pytest.mark.slow
def test_gemma_chat_cancels_a_question_and_the_next_one_reuses_the_prompt(
    slmsql: Slmsql, gemma_gguf: Path, tmp_path: Path
) -> None:
    """The real engine, through the launcher: Ctrl-C while Gemma reads the prompt or samples stops
    it at the next chunk or token; the next question is answered by the same loaded model, which
    finds the part of the prompt read before the Ctrl-C still in its KV cache."""
    args = ("-m", gemma_gguf, "-n", "2", "--max-tokens", "24", "--no-merge", "--no-values")
    chat = Terminal(slmsql, tmp_path / "cache", args, code=None)
    try:
        chat.expect("Ctrl-D to leave", timeout=180)
        chat.expect("? ")
        chat.type("How many books are there?\n")
        chat.expect_match(r"reading the prompt: [1-9]|of at most", timeout=300)  # some of it read
        chat.type("\x03")
        assert chat.expect("cancelled", timeout=120) < 60, chat.shown
        chat.expect("? ")
        chat.type("How many books are there?\n")
        stats, _ = chat.expect_match(r"prompt (\d+) tokens, (\d+) evaluated \((\d+) reused", timeout=600)
        total, evaluated, reused = map(int, stats.groups())
        assert reused > 0 and evaluated + reused == total, stats.group(0)
        chat.expect("? ")
        time.sleep(0.5)
        chat.type("\x03")
        code = chat.exit_code()
    finally:
        chat.close()
    assert code == 130, chat.shown
    assert "Traceback" not in chat.shown and "crashed" not in chat.shown, chat.shown
