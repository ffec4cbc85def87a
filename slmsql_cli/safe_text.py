"""The one way slmsql prints text it did not write: file names, questions, SQL, a model server's
messages, log fields.

Such text can carry characters that a terminal or a log reader acts on instead of showing: ESC
and the other C0/C1 controls (colours, a new window title, a cleared screen, a forged line after
a newline or a carriage return), bidirectional overrides and isolates that reorder what is
shown (U+202E, U+2066, the Arabic letter mark U+061C), invisible format characters (zero-width
space, soft hyphen, byte-order mark, tag characters), the line and paragraph separators
(U+2028/2029) and lone surrogates, which no terminal or file can encode. They are the Unicode
categories Cc, Cf, Cs, Zl and Zp; `visible` writes each as an escape (`\\x1b`, `\\u202e`,
`\\U000e0041`, `\\n`) and leaves every other character as it is.

Two characters of category Cf are kept: the zero-width non-joiner and joiner (U+200C, U+200D).
Persian, the Indic scripts and emoji sequences need them, and they only change how the letters
beside them join, never the order of text or the terminal's state.

Newlines: an `error:` line, a column name or a log field is one line, so by default a newline
is escaped too. Text that may run over lines (SQL, a value in a table cell, a hint) keeps `\\n`,
`\\t` and the `\\r` of a `\\r\\n` (`lines=True`); a lone `\\r`, which returns the cursor to
overwrite the line, is escaped.

A backslash is not doubled: the escapes are for people to read, not to be parsed back (the JSON
outputs, `--json` and `--json-logs`, keep the text exact: `json_escaped`).
"""

from __future__ import annotations

import re
import unicodedata

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_JOINERS = frozenset({"\u200c", "\u200d"})
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# characters worth a look: everything but printable ASCII (and, for lines, the line breaks kept)
_CANDIDATES = re.compile(r"[^\x20-\x7e]")
_CANDIDATES_LINES = re.compile(r"\r(?!\n)|[^\x20-\x7e\n\t\r]")


def unsafe(char: str) -> bool:
    """Whether a terminal or log reader would act on `char` rather than show it (module doc)."""
    return unicodedata.category(char) in _UNSAFE_CATEGORIES and char not in _JOINERS


def visible(text: str, *, lines: bool = False) -> str:
    """`text` for a terminal or a log line: every unsafe character written as a Python-style
    escape (`\\x1b`, `\\u202e`, `\\U000e0041`, `\\n`); with `lines`, newlines and tabs kept."""
    if text.isprintable():  # no control, format or separator character at all: the usual case
        return text
    pattern = _CANDIDATES_LINES if lines else _CANDIDATES
    return pattern.sub(_escape_match, text)


def json_escaped(json_text: str) -> str:
    """JSON text (as `json.dumps(..., ensure_ascii=False)` writes it) with every unsafe character
    written as a JSON `\\uXXXX` escape (a surrogate pair above U+FFFF): the same JSON value, and a
    line no terminal or log reader acts on. JSON puts such characters only inside strings."""
    if json_text.isprintable():
        return json_text
    return _CANDIDATES.sub(_json_match, json_text)


def _escape_match(match: re.Match[str]) -> str:
    char = match.group()
    if not unsafe(char):
        return char
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _json_match(match: re.Match[str]) -> str:
    char = match.group()
    if not unsafe(char):
        return char
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
