"""One log line per request, on stderr: `key=value` words for people, or one JSON object (`--json-logs`).

Both front ends log through `RequestLog.write`; the fields are whatever the request knew (route,
database, status, queue and run seconds, votes, prompt tokens evaluated, outcome).

A log line cannot be forged by what a client sends: in the words format every text value is
quoted (`path="/v1/ask"`) and escaped as a JSON string, and in both formats the characters a
terminal or a log reader acts on (control characters, so ANSI escape sequences and line breaks;
C1 controls; line and paragraph separators; bidirectional overrides) and lone surrogates are
written as `\\uXXXX`. Numbers and booleans are written bare.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from typing import Any, TextIO

from slmsql_cli.answer import Answer


class RequestLog:
    def __init__(self, *, json_lines: bool = False, stream: TextIO | None = None) -> None:
        self.json_lines = json_lines
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def write(self, **fields: Any) -> None:
        fields = {k: v for k, v in fields.items() if v is not None}
        if self.json_lines:
            line = _safe(
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


# what a terminal or log viewer would act on, and what cannot be encoded: escaped as \uXXXX
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _safe(text: str) -> str:
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int):
        return str(value)
    return _safe(json.dumps(str(value), ensure_ascii=False))
