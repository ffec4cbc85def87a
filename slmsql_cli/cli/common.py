"""What every command shares: the error edge, the consoles and the status line.

Results go to stdout (`out`) and everything else - progress, summaries, errors and hints - to
stderr (`err`), in every output mode, so `slmsql ask ... > answer.txt` holds the answer alone.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from slmsql_cli.errors import UserError
from slmsql_cli.safe_text import visible

if TYPE_CHECKING:
    from slmsql_cli.pipeline import AskConfig, Pipeline

F = TypeVar("F", bound=Callable[..., Any])

# Exit codes, the same for every command (`ask --help` documents them).
EXIT_OK = 0
EXIT_NO_ANSWER = 1  # the command ran but has no answer: no SQL, or none of it ran; a failed eval
EXIT_USER_ERROR = 2  # bad input or a usage error: one error line and a hint
EXIT_INTERRUPTED = 130  # Ctrl-C


class _Diagnostics(Console):
    """stderr: on a terminal a long line wraps at word boundaries (never mid-word, as the
    terminal's own wrapping does); in a pipe or a log file each message stays one line."""

    @property
    def soft_wrap(self) -> bool:
        return not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:  # Console.__init__ sets it; the property decides
        pass


out = Console(soft_wrap=True)  # results: stdout, so they pipe
err = _Diagnostics(stderr=True)  # progress, errors, summaries: stderr


def fail(message: str, hint: str | None = None, exit_code: int = EXIT_USER_ERROR) -> typer.Exit:
    """Print one error line (and a hint) to stderr and return the Exit to raise."""
    # Messages quote user input and pip extras (`slmsql[train]`): brackets in them are text, not
    # markup; and file names, questions and a model server's words, whose control and bidi
    # characters are shown escaped (safe_text): the error is one line that does what it says. A
    # hint is slmsql's own advice and may run over lines (the first-run fix); only its line
    # breaks are kept.
    err.print(f"[bold red]error:[/] {escape(visible(message))}", highlight=False)
    if hint:
        err.print(f"[dim]hint: {escape(visible(hint, lines=True))}[/]", highlight=False)
    return typer.Exit(exit_code)


def user_errors(func: F) -> F:
    """Turn UserError (and Ctrl-C) into one line and a non-zero exit; let real bugs keep their traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            raise fail(exc.message, exc.hint, exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            sys.exit(EXIT_INTERRUPTED)

    return wrapper  # type: ignore[return-value]


def progress_seconds() -> float:
    """How often a status line is repeated when stderr is not a terminal: SLMSQL_PROGRESS_SECONDS, default 5."""
    try:
        return max(0.05, float(os.environ.get("SLMSQL_PROGRESS_SECONDS", "5")))
    except ValueError:
        return 5.0


class StatusLine:
    """What a command is doing now, on stderr.

    On a terminal it is rich's spinner line, updated in place. Elsewhere (CI, a pipe, `nohup`)
    a spinner shows nothing, so each new step is printed as a line of its own, and a step that
    lasts (loading, sampling) is printed again every `progress_seconds()` with its time so far.
    A step is the text before its first ':' ("sampling: 48 of 4096 tokens"), so a count that
    changes on every token does not print a line per token."""

    def __init__(self, message: str, console: Console | None = None, every: float | None = None) -> None:
        self.console = console or err
        self.every = progress_seconds() if every is None else every
        self.message = message
        self._live = self.console.is_terminal
        self._status: Any = None
        self._printed_step: str | None = None
        self._printed_at = self._step_started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StatusLine:
        if self._live:
            self._status = self.console.status(escape(self.message))
            self._status.__enter__()
        else:
            self._line(self.message)
            self._thread = threading.Thread(target=self._repeat, name="slmsql-status", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._status is not None:
            self._status.__exit__(kind, exc, tb)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def update(self, message: str) -> None:
        """Show `message`: at once on a terminal; elsewhere when its step is new, else at the next repeat."""
        self.message = message
        if self._status is not None:
            self._status.update(escape(message))
            return
        with self._lock:
            if _step(message) != self._printed_step:
                self._step_started = time.monotonic()
                self._line(message)

    def _line(self, message: str, seconds: float | None = None) -> None:
        """One plain line (the lock held or not yet shared)."""
        self._printed_step, self._printed_at = _step(message), time.monotonic()
        text = message if seconds is None else f"{message} ({seconds:.0f}s)"
        self.console.print(escape(text), highlight=False, soft_wrap=True)

    def _repeat(self) -> None:
        while not self._stop.wait(self.every / 4):
            with self._lock:
                now = time.monotonic()
                if now - self._printed_at >= self.every:
                    self._line(self.message, now - self._step_started)


def _step(message: str) -> str:
    return message.split(":", 1)[0].rstrip("…. ")


class AskStatus:
    """The status of one question for `ask` and `chat`: the pipeline's steps; while the model reads
    a round's prompt (before the first token; on a CPU most of the wait) the tokens read so far,
    a step of its own; while it samples, the tokens so far of the most the round may write
    (N candidates × --max-tokens)."""

    def __init__(self, status: StatusLine, n: int, merge_n: int, max_tokens: int) -> None:
        self.status = status
        self.n, self.merge_n, self.max_tokens = n, merge_n, max_tokens
        self.step = ""
        self.tokens = 0
        self.limit = n * max_tokens

    def progress(self, message: str) -> None:
        """`Pipeline.ask`'s progress callback: a new step."""
        self.step, self.tokens = message, 0
        self.limit = (self.merge_n if message.startswith("merging") else self.n) * self.max_tokens
        self.status.update(message + "…")

    def prompt(self, read: int, total: int, cached: int) -> None:
        """`Pipeline.ask`'s on_prompt callback: the prompt being read, then the round's step again."""
        self.status.update((reading_text(read, total, cached) if read < total else self._sampling()) + "…")

    def token(self, _seq: int) -> None:
        """`Pipeline.ask`'s on_token callback."""
        self.tokens += 1
        if self.tokens % 16 == 0:
            self.status.update(self._sampling() + "…")

    def _sampling(self) -> str:
        return f"{self.step}: {self.tokens} of at most {self.limit} tokens" if self.tokens else self.step


def reading_text(read: int, total: int, cached: int) -> str:
    """The line while a prompt is read: `reading the prompt: 1,024/2,100 tokens`, and how many of
    them came from the cache (`, 1,536 from cache`) when some did."""
    text = f"reading the prompt: {read:,}/{total:,} tokens"
    return f"{text}, {cached:,} from cache" if cached else text


def load_pipeline(
    model: str | None, merge_model: str | None, config: AskConfig, say: Callable[[str], None] | None = None
) -> Pipeline:
    """`Pipeline.load` under the "loading the model…" spinner, each step shown as it starts
    (checkpoints are exported with `quantize.cached_gguf`): how chat, eval and serve load one.
    `say` takes each step as a line of its own instead (`serve --json-logs`: a JSON log line)."""
    from slmsql_cli.pipeline import Pipeline
    from slmsql_cli.quantize import cached_gguf

    if say is not None:
        say("loading the model…")
        return Pipeline.load(model, merge_model, config, progress=lambda m: say(m + "…"), export=cached_gguf)
    with StatusLine("loading the model…") as status:
        return Pipeline.load(
            model, merge_model, config, progress=lambda m: status.update(m + "…"), export=cached_gguf
        )
