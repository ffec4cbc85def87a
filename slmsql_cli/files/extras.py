"""The optional libraries that read Parquet and Excel: imported when needed, named when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from slmsql_cli.errors import UserError


def require(module: str, what: str) -> ModuleType:
    """`module`, or a UserError saying that reading `what` needs the `files` extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"reading {what} needs the {module.split('.')[0]} package, which is not installed",
            "pip install 'slmsql[files]' (pyarrow for Parquet, openpyxl for Excel)",
        ) from None
