"""llama.cpp's log output: silenced once per process for `ask`, `train` and `export` alike.

llama.cpp prints load, context and per-tensor notices to stderr; users see them only with
SLMSQL_DEBUG=1.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

_callback: Any = None  # llama.cpp keeps only the C pointer: the Python callback must stay alive


def silence() -> None:
    """Route llama.cpp's log messages to a callback that drops them (unless SLMSQL_DEBUG is set)."""
    global _callback
    if _callback is not None or os.environ.get("SLMSQL_DEBUG"):
        return
    import llama_cpp

    @llama_cpp.llama_log_callback
    def _drop(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    _callback = _drop
    llama_cpp.llama_log_set(_drop, ctypes.c_void_p(0))
