"""The SQL out of a model completion: one rule for `ask`, `eval` and `train`.

The rule is CSC-SQL's (`common_utils.py: parse_response_for_sql`): the text inside the last
`<answer>…</answer>` after `</think>`; otherwise the last ```` ```sql ```` block; otherwise the
whole reply after `</think>` if it reads as SQL. Two of the reference's defects are fixed on
purpose:

* The reference turns every newline into a space, so a `-- comment` line swallows the rest of the
  query. Here newlines are kept and comments are removed (outside string literals).
* The reference deletes every `;`, including those inside string literals
  (`WHERE name = 'a;b'`). Here only trailing semicolons go.

A completion cut off by the stop string `</answer>` or by the token limit may have an `<answer>`
without its closing tag; everything after the last `<answer>` is then the SQL.
"""

from __future__ import annotations

import re

_SQL_FENCE = re.compile(r"```sql\s*(.*?)\s*```", re.DOTALL | re.IGNORECASE)
_ANY_FENCE = re.compile(r"```(?:sql\b|[a-zA-Z0-9_-]*\n)?\s*(.*?)\s*```", re.DOTALL | re.IGNORECASE)
_FENCE_MARK = re.compile(r"```(?:sql\b)?", re.IGNORECASE)
# First words of a statement; a write is still "SQL-like" here - the executor refuses it later.
_SQL_START = re.compile(
    r"^\(*\s*(select|with|values|insert|update|delete|replace|drop|create|alter|pragma|attach|detach|"
    r"vacuum|explain|begin|commit|rollback|reindex|analyze)\b",
    re.IGNORECASE,
)


def extract_sql(text: str | None) -> str | None:
    """The SQL a completion answers with, or None when there is nothing SQL-like in it."""
    if not text:
        return None
    text = text.replace("</s>", "")
    body = text.rsplit("</think>", 1)[1] if "</think>" in text else text

    if "<answer>" in body:
        answer = body.rsplit("<answer>", 1)[1].split("</answer>", 1)[0]
        fenced = _ANY_FENCE.findall(answer)
        return _clean(fenced[-1] if fenced else _FENCE_MARK.sub("", answer))
    for pattern in (_SQL_FENCE, _ANY_FENCE):
        blocks = [b for b in pattern.findall(text) if _clean(b)]
        if blocks:
            return _clean(blocks[-1])
    return _clean(_FENCE_MARK.sub("", body))


def strip_comments(sql: str) -> str:
    """`sql` without `--` and `/* */` comments; quoted strings and identifiers stay intact.

    A `--` comment is replaced by nothing up to (not including) its newline and a block comment
    by one space, so tokens on either side never fuse.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    closing = {"'": "'", '"': '"', "`": "`", "[": "]"}
    while i < n:
        ch = sql[i]
        if ch in closing:
            end = sql.find(closing[ch], i + 1)
            # SQL escapes a quote by doubling it: 'it''s' is one literal.
            while end != -1 and ch != "[" and end + 1 < n and sql[end + 1] == closing[ch]:
                end = sql.find(closing[ch], end + 2)
            end = n - 1 if end == -1 else end
            out.append(sql[i : end + 1])
            i = end + 1
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = n if newline == -1 else newline
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
            out.append(" ")
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _clean(candidate: str) -> str | None:
    """Comments and trailing semicolons gone; None when it doesn't read as SQL.

    Lines are left alone (a string literal may span them)."""
    sql = strip_comments(candidate).strip()
    while sql.endswith(";"):
        sql = sql[:-1].rstrip()
    if not sql or not _SQL_START.match(sql):
        return None
    return sql
