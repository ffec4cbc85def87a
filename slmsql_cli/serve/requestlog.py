"""One log line per request, on stderr: `key=value` words for people, or one JSON object (`--json-logs`).

Both front ends log through `RequestLog.write`; the fields are whatever the request knew (route,
database, status, queue and run seconds, votes, prompt tokens evaluated, outcome).

A log line cannot be forged by what a client sends: in the words format every text value is
quoted (`path="/v1/ask"`) and escaped as a JSON string, and in both formats the characters a
terminal or a log reader acts on (`safe_text.unsafe`: control characters, so ANSI escape
sequences and line breaks; C1 controls; line and paragraph separators; bidirectional and other
format characters such as U+202E and U+061C) and lone surrogates are written as `\\uXXXX`
(`safe_text.json_escaped`). Numbers and booleans are written bare.

The server's libraries log through the same lines (`LogLines`): uvicorn's warnings and
tracebacks are one line each, a JSON object with `--json-logs`, the traceback a field of it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from typing import Any, TextIO

from slmsql_cli.answer import Answer
from slmsql_cli.safe_text import json_escaped


class RequestLog:
    def __init__(self, *, json_lines: bool = False, stream: TextIO | None = None) -> None:
        self.json_lines = json_lines
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def write(self, **fields: Any) -> None:
        fields = {k: v for k, v in fields.items() if v is not None}
        if self.json_lines:
            line = json_escaped(
                json.dumps({"time": round(time.time(), 3), **fields}, ensure_ascii=False, default=str)
            )
        else:
            line = " ".join(f"{k}={_word(v)}" for k, v in fields.items())
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def say(self, message: str) -> None:
        """A line about the server itself (listening, stopping), in the same format."""
        self.write(event="server", message=message)


class LogLines(logging.Handler):
    """A `logging` handler that writes each record as one `RequestLog` line (`event="log"`, its
    level, logger and message, and the traceback as a field), so that what uvicorn and asyncio
    log follows `--json-logs` too and cannot be forged either."""

    def __init__(self, log: RequestLog) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {
                "event": "log",
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
            if record.exc_info and record.exc_info[0] is not None:
                fields["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
            self.log.write(**fields)
        except Exception:
            self.handleError(record)


SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "mcp")


def route_server_logs(log: RequestLog, level: int = logging.WARNING) -> None:
    """Send the server libraries' loggers (SERVER_LOGGERS) to `log`, and nowhere else."""
    handler = LogLines(log)
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False


def answer_fields(answer: Answer) -> dict[str, Any]:
    """What a request log line says about an answer."""
    votes, total = answer.agreement
    stats = answer.generation.stats
    return {
        "votes": f"{votes}/{total}",
        "merged": answer.merged,
        "prompt_tokens": stats.prompt_tokens,
        "prompt_tokens_evaluated": stats.prompt_tokens_evaluated,
        "generated_tokens": stats.generated_tokens
        + (answer.revision.stats.generated_tokens if answer.revision else 0),
        "outcome": "answered" if answer.failure is None else "no-result",
    }


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int):
        return str(value)
    return json_escaped(json.dumps(str(value), ensure_ascii=False))
