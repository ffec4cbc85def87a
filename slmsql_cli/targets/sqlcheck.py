"""The allow-list every model-written statement passes before any engine sees it: one statement,
and a query (SELECT, a set operation, VALUES; a WITH is part of its SELECT).

The SQLite executor checks each candidate here, then runs it under its own guards; `dialect`
checks here before it transpiles for DuckDB and PostgreSQL; `explain`, saved answers and the
training rewards refuse what would not run. Only sqlglot: no database driver, no query runs.

Nesting is capped before sqlglot sees the text (`too_deep`, also called by `transpile`): sqlglot
parses, rewrites and prints recursively, about 25 Python frames per level of parentheses, so a
statement nested a few dozen levels deep would end in a RecursionError (20,000 parentheses
crashed `ask` on DuckDB). A cheap scan counts the depth of parentheses and CASE … END outside
strings, quoted names and comments; over `MAX_NESTING` the statement is refused with a reason.
"""

from __future__ import annotations

import re
from typing import Any

from slmsql_cli import sqlglot_log

# The deepest nesting of parentheses and CASE … END a statement may have (docs/TRANSPILE.md).
# Real queries stay far below it (the Spider and BIRD dev gold SQL in ../shared/data: at most 4).
# sqlglot's whole path (the check, the rewrites, the target's parse, the explanation) takes 29
# levels of nested function calls with 230 frames already on the stack (the CLI has about 20, a
# test about 35): 25 leaves room below Python's recursion limit (tests/test_nesting.py).
MAX_NESTING = 25
NESTED_TOO_DEEPLY = "the statement is nested too deeply to be checked"

_NESTING_MARK = re.compile(r"""['"`\[()]|--|/\*|\b(?:case|end)\b""", re.IGNORECASE)
_CLOSING = {"'": "'", '"': '"', "`": "`", "[": "]", "--": "\n", "/*": "*/"}


def nesting_depth(sql: str, stop_above: int | None = None) -> int:
    """The deepest nesting of parentheses and CASE … END in `sql`, outside strings, quoted names
    and comments: one pass over the text, no parse (a quote or comment left open runs to the end).
    With `stop_above`, the scan ends as soon as the depth passes it."""
    depth = deepest = cases = 0
    pos = 0
    while match := _NESTING_MARK.search(sql, pos):
        mark = match.group().lower()
        pos = match.end()
        if mark in _CLOSING:
            end = sql.find(_CLOSING[mark], pos)
            if end < 0:
                break
            pos = end + len(_CLOSING[mark])
            continue
        if mark in ("(", "case"):
            depth += 1
            cases += mark == "case"
            deepest = max(deepest, depth)
            if stop_above is not None and deepest > stop_above:
                break
        elif mark == ")" or cases:
            depth = max(depth - 1, 0)
            cases -= mark == "end"
    return deepest


def too_deep(sql: str) -> str | None:
    """Why `sql` is nested too deeply for sqlglot (more than MAX_NESTING levels), or None. Every
    path to sqlglot with SQL from outside goes through here first: `check_sql` and `transpile`."""
    if nesting_depth(sql, stop_above=MAX_NESTING) > MAX_NESTING:
        return f"the statement is nested more than {MAX_NESTING} levels deep (parentheses and CASE)"
    return None


def check_sql(sql: str) -> str | None:
    """Why `sql` is refused before it reaches SQLite, or None. An allow-list, never a deny-list."""
    if not isinstance(sql, str) or not sql.strip():
        return "empty SQL"
    deep = too_deep(sql)
    if deep:
        return deep
    import sqlglot
    from sqlglot import exp

    try:
        with sqlglot_log.quiet():
            trees = [
                t
                for t in sqlglot.parse(sql, read="sqlite")
                if t is not None and not isinstance(t, exp.Semicolon)
            ]
    except RecursionError:  # deep without parentheses (a long chain of NOT): refused all the same
        return NESTED_TOO_DEEPLY
    except Exception:  # sqlglot's parser is not SQLite's: let SQLite judge (and the authorizer guard)
        return None
    if len(trees) > 1:
        return f"only one SQL statement is allowed, found {len(trees)}"
    if not trees:
        return "empty SQL"
    tree = trees[0]
    if isinstance(tree, (exp.Select, exp.SetOperation, exp.Values)):
        return None
    if isinstance(tree, exp.Subquery) and isinstance(
        tree.unnest(), (exp.Select, exp.SetOperation, exp.Values)
    ):
        return None
    return (
        f"only read-only queries (SELECT, WITH … SELECT, VALUES) may run (got {_statement_name(sql, tree)})"
    )


_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$)|\()*", re.DOTALL)
_WORD = re.compile(r"[A-Za-z_]+")
_OBJECT_KINDS = ("TABLE", "VIEW", "INDEX", "TRIGGER")


def _statement_name(sql: str, tree: Any) -> str:
    """The statement's own keyword(s): SAVEPOINT, REINDEX, CREATE TEMP TABLE, INSERT (for WITH … INSERT).

    sqlglot's node type is no name for it: it parses `SAVEPOINT x` as an alias and `REINDEX` as
    a column.
    """
    words = _WORD.findall(sql[_LEADING_NOISE.match(sql).end() :][:200])  # type: ignore[union-attr]
    if not words:
        return tree.key.upper()
    first = words[0].upper()
    if first == "WITH":
        return tree.key.upper() if tree.key in ("insert", "update", "delete") else "WITH"
    if first in ("CREATE", "DROP", "ALTER"):
        upper = [w.upper() for w in words[:5]]
        end = next((i for i, w in enumerate(upper) if w in _OBJECT_KINDS), 0)
        return " ".join(upper[: end + 1]) if end else " ".join(upper[:2])
    return first
