"""Training data rows as they are stored: a local JSON, JSON Lines, parquet, CSV or arrow file, or
a Hub dataset (`datasets`), read into plain dicts, and which of the four formats their columns
make (think, spider, candidates, sparc: SParC/CoSQL interactions). Building examples from the rows
is data.py's.

Every way a file can be unreadable (not UTF-8, not JSON, an unclosed CSV quote, a folder, a
missing dataset) is one UserError naming the file and, where it can, the line.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from slmsql_cli import hub
from slmsql_cli.benchmark_data import GOLD_COLUMNS, interaction_rows, is_interaction
from slmsql_cli.errors import UserError

PROMPT_COLUMNS = ("prompt", "input_seq", "instruction", "input")
TARGET_COLUMNS = ("completion", "output_seq", "response", "output")
CHAT_COLUMNS = ("messages", "conversations")
_USED_COLUMNS = set(PROMPT_COLUMNS + TARGET_COLUMNS + CHAT_COLUMNS + GOLD_COLUMNS) | {
    "question",
    "evidence",
    "db_id",
    "candidates",
    "system",
    "interaction",
    "database_id",
}
_FILE_TYPES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


def read_records(data: str, split: str = "train") -> list[dict[str, Any]]:
    """Rows from a local file (JSON list or JSONL, parquet, CSV, arrow) or a Hub dataset, as dicts."""
    path = Path(data).expanduser()
    if path.is_file():
        if path.suffix.lower() == ".json":
            return _json_rows(path)
        if path.suffix.lower() == ".jsonl":
            return _jsonl_rows(path, _read_text(path))
        kind = _FILE_TYPES.get(path.suffix.lower())
        if kind is None:
            raise UserError(
                f"cannot read {path.name}: unknown file type", "use .json, .jsonl, .parquet, .csv or .arrow"
            )
        return _hf_rows(kind, data_files=str(path))
    if path.exists():
        raise UserError(f"{path} is a folder", "pass the data file inside it (dev.json, train.jsonl, …)")
    if hub.REPO_ID.match(data):
        return _hf_rows(data, split=split)
    raise UserError(
        f"training data not found: {data}",
        "pass a .json/.jsonl/.parquet file or a Hub dataset id (owner/name)",
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path} is not text: byte {exc.start} is not UTF-8",
            "training data files are UTF-8 JSON/JSONL/CSV",
        ) from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def _jsonl_rows(path: Path, text: str) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(
                    f"{path} line {n} is not JSON: {exc.msg}", "one JSON object per line"
                ) from None
            if not isinstance(row, dict):
                raise UserError(f"{path} line {n} is not a JSON object", "one JSON object per line")
            rows.append(row)
    return rows


def _json_rows(path: Path) -> list[dict[str, Any]]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.lineno == 1 or text.lstrip().startswith("["):
            raise UserError(f"{path} is not valid JSON: {exc}") from None
        data = _jsonl_rows(path, text)  # JSON Lines saved as .json
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else data
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UserError(f"{path} must hold a list of rows (objects)")
    return data


def _hf_rows(name: str, **kwargs: Any) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise UserError(
            "reading this data needs the `datasets` package", "pip install 'slmsql[train]'"
        ) from None
    data_file = Path(kwargs["data_files"]) if "data_files" in kwargs else None
    try:
        ds = datasets.load_dataset(name, split=kwargs.pop("split", "train"), **kwargs)
    except (datasets.exceptions.DatasetGenerationError, ValueError) as exc:
        if data_file is None:  # a Hub dataset: the name or split is wrong
            raise UserError(
                f"cannot load dataset {name}: {str(exc).splitlines()[0]}",
                "check the name and split (--config data_split), and that the Hub is reachable",
            ) from None
        # A local file whose content datasets cannot turn into rows.
        problem = _csv_problem(data_file) if name == "csv" else None
        cause = exc.__cause__ or exc
        raise problem or UserError(
            f"cannot read {data_file}: {str(cause).splitlines()[0] if str(cause) else type(cause).__name__}",
            "check that the file is complete, has rows, and is of the type its name says",
        ) from None
    except (FileNotFoundError, ConnectionError, OSError) as exc:
        raise UserError(
            f"cannot load dataset {name}: {str(exc).splitlines()[0]}",
            "check the name and split (--config data_split), and that the Hub is reachable",
        ) from None
    keep = [c for c in ds.column_names if c in _USED_COLUMNS]
    return ds.select_columns(keep).to_list() if keep else ds.to_list()


def _csv_problem(path: Path) -> UserError | None:
    """Why a CSV file that `datasets` could not read is broken, with its line number, when Python's
    csv module can tell (an unclosed quote, bytes that are not UTF-8)."""
    import csv

    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for _row in reader:
            start = reader.line_num + 1
    except csv.Error as exc:
        if "end of data" in str(exc):
            return UserError(
                f"{path} line {start}: a quoted field is never closed",
                'close the quote, or write a quote inside a quoted field as two quotes ("")',
            )
        return UserError(f"{path} line {reader.line_num}: {exc}", "check the quoting on that line")
    return None


def detect_format(columns: Iterable[str], requested: str = "auto") -> str:
    """Which loader fits these columns; a clear error listing what was expected when none does.
    SParC and CoSQL share one format: "cosql" is read as "sparc"."""
    cols = set(columns)
    requested = "sparc" if requested == "cosql" else requested
    fits = {
        "sparc": "interaction" in cols,
        "candidates": "candidates" in cols
        and "question" in cols
        and bool(cols & set(GOLD_COLUMNS))
        and "db_id" in cols,
        "think": bool(cols & set(CHAT_COLUMNS))
        or (bool(cols & set(PROMPT_COLUMNS)) and bool(cols & set(TARGET_COLUMNS))),
        "spider": "question" in cols and bool(cols & set(GOLD_COLUMNS)) and "db_id" in cols,
    }
    if requested != "auto":
        if not fits[requested]:
            raise UserError(
                f"the data does not have the columns of the {requested} format (found: {', '.join(sorted(cols)) or 'none'})",
                _EXPECTED[requested],
            )
        return requested
    for name in ("sparc", "candidates", "think", "spider"):
        if fits[name]:
            return name
    raise UserError(
        f"cannot tell what kind of training data this is (columns: {', '.join(sorted(cols)) or 'none'})",
        "expected " + "; or ".join(_EXPECTED.values()),
    )


_EXPECTED = {
    "think": "prompt + completion (or input_seq + output_seq, or messages) for SynSQL-Think-style data",
    "spider": "question + query/SQL + db_id (+ evidence) for Spider/BIRD-style data, with --db-dir",
    "candidates": "question + query/SQL + db_id + candidates for merge-revision data",
    "sparc": "database_id + interaction ([{utterance, query}, …]) for SParC/CoSQL follow-ups, with --db-dir",
}


def row_count(records: list[dict[str, Any]]) -> int:
    """The examples the rows make: a SParC/CoSQL interaction makes one per turn, any other row one."""
    return sum(len(interaction_rows(r)) if is_interaction(r) else 1 for r in records)
