"""Errors a user can cause.

Everything the user can get wrong (a missing file, an empty question, an unsupported model) is
raised as :class:`UserError` deep in the pipeline and turned into one line plus a hint and a
non-zero exit by the CLI. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a driver's or a parser's), or its type's name."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def require(module: str, extra: str, what: str, note: str = "") -> ModuleType:
    """`module`, imported; or a UserError saying that `what` needs it and which extra installs it
    (the one wording of "install the extra")."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"{what} needs the {module.split('.')[0]} package, which is not installed",
            f"install slmsql's [{extra}] extra: pip install 'slmsql[{extra}]'"
            + (f" ({note})" if note else ""),
        ) from None


class UserError(Exception):
    """A problem with the user's input, shown as one clear line (and a hint) without a traceback."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"
