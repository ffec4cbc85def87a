"""The allow-list every model-written statement passes before any engine sees it: one statement,
and a query (SELECT, a set operation, VALUES; a WITH is part of its SELECT).

The SQLite executor checks each candidate here, then runs it under its own guards; `dialect`
checks here before it transpiles for DuckDB and PostgreSQL; `explain`, saved answers and the
training rewards refuse what would not run. Only sqlglot: no database driver, no query runs.
"""

from __future__ import annotations

import re
from typing import Any

from slmsql_cli import sqlglot_log


def check_sql(sql: str) -> str | None:
    """Why `sql` is refused before it reaches SQLite, or None. An allow-list, never a deny-list."""
    if not isinstance(sql, str) or not sql.strip():
        return "empty SQL"
    import sqlglot
    from sqlglot import exp

    try:
        with sqlglot_log.quiet():
            trees = [
                t
                for t in sqlglot.parse(sql, read="sqlite")
                if t is not None and not isinstance(t, exp.Semicolon)
            ]
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
