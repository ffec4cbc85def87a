"""`slmsql serve`: one loaded model answering many clients, over MCP (stdio) or a local HTTP API.

`service.py` is the core both front ends share (the database registry, the one-at-a-time model
queue, the answer documents); `http.py` and `mcp_server.py` only translate requests. They need
the `[serve]` extra (`require_extra`); nothing here is imported on the `ask` path.
"""

from __future__ import annotations

import importlib.util

from slmsql_cli.errors import UserError

_EXTRA_MODULES = {"http": ("fastapi", "uvicorn", "sse_starlette"), "mcp": ("mcp",)}


def require_extra(front: str) -> None:
    """A UserError naming the `[serve]` extra when a package the `front` end needs is missing."""
    missing = [m for m in _EXTRA_MODULES[front] if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"slmsql serve --{front} needs {', '.join(missing)}, which is not installed",
            "pip install 'slmsql[serve]' (scripts/setup.sh installs it by default)",
        )
