"""What every command shares: the error edge and the consoles."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from slmsql_cli.errors import UserError

if TYPE_CHECKING:
    from slmsql_cli.pipeline import AskConfig, Pipeline

F = TypeVar("F", bound=Callable[..., Any])

out = Console(soft_wrap=True)  # results: stdout, so they pipe
err = Console(stderr=True, soft_wrap=True)  # progress, errors, summaries: stderr


def fail(message: str, hint: str | None = None, exit_code: int = 2) -> typer.Exit:
    """Print one error line (and a hint) to stderr and return the Exit to raise."""
    # Messages quote user input and pip extras (`slmsql[train]`): brackets in them are text, not markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    if hint:
        err.print(f"[dim]hint: {escape(hint)}[/]", highlight=False)
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
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def load_pipeline(model: str | None, merge_model: str | None, config: AskConfig) -> Pipeline:
    """`Pipeline.load` under the "loading the model…" spinner, each step shown as it starts
    (checkpoints are exported with `quantize.cached_gguf`): how chat, eval and serve load one."""
    from quantize import cached_gguf
    from slmsql_cli.pipeline import Pipeline

    with err.status("loading the model…") as status:
        return Pipeline.load(
            model, merge_model, config, progress=lambda m: status.update(m + "…"), export=cached_gguf
        )
