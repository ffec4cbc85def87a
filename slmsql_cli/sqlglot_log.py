"""sqlglot's warnings kept off the user's terminal, in one place.

sqlglot logs a warning for syntax it only half understands (`VACUUM`, `REPLACE INTO` parse as a
generic Command) before slmsql refuses or translates the statement itself; slmsql says what went
wrong in its own words, so those warnings are silenced while it parses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet() -> Iterator[None]:
    """sqlglot's logger at ERROR for the duration (then back to its own level)."""
    log = logging.getLogger("sqlglot")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
