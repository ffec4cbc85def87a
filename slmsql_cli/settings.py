"""The user's settings folder, and the one setting it holds: the default model.

`slmsql models default NAME|PATH` writes it once, so `ask`, `chat`, `serve` and `bench` use
that model without `--model` (as `llm models default` does). The folder is
$XDG_CONFIG_HOME/slmsql, else ~/.config/slmsql, created 0700; the setting is one line of text in
`default-model` (0600), so it can be read and edited by hand. What the line means (an alias, a
Hub repo, a file) is `models.choose`'s business; this module only keeps it.
"""

from __future__ import annotations

import os
from pathlib import Path

from slmsql_cli.cache import private_mkdir, write_text_atomic
from slmsql_cli.errors import UserError

DEFAULT_MODEL_FILE = "default-model"


def config_dir() -> Path:
    """$XDG_CONFIG_HOME/slmsql, else ~/.config/slmsql (read now, not at import: tests move it)."""
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    root = Path(base).expanduser() if base else Path.home() / ".config"
    return root / "slmsql"


def default_model_file() -> Path:
    return config_dir() / DEFAULT_MODEL_FILE


def stored_default_model() -> str | None:
    """The model `slmsql models default` set, or None when none is set (or the file is unreadable:
    a broken setting must not stop `ask` from starting with the built-in model)."""
    try:
        text = default_model_file().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return lines[0] if lines else None


def store_default_model(spec: str) -> Path:
    """Keep `spec` as the default model (the folder 0700, the file 0600, written atomically)."""
    path = default_model_file()
    try:
        private_mkdir(path.parent)
        write_text_atomic(path, spec.strip() + "\n")
    except OSError as exc:
        raise UserError(
            f"cannot write the default model to {path}: {exc.strerror or exc}",
            "check that folder's permissions, or set SLMSQL_MODEL instead",
        ) from None
    return path


def clear_default_model() -> bool:
    """Forget the stored default model; False when none was set."""
    path = default_model_file()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise UserError(
            f"cannot remove {path}: {exc.strerror or exc}", "check that folder's permissions"
        ) from None
    return True
