"""The SQL of an answer in plain sentences, built from sqlglot's parse: no model involved.

A person who cannot read SQL can still check that the query asked what they meant: which tables
it reads and how they are joined, every filter with its values, the grouping, the aggregates,
the order and the limit, each subquery and set operation in sentences of its own.

It must never be wrong about the query, so it only says what the parse says:

* Expressions it has words for (columns, literals, COUNT/SUM/AVG/MIN/MAX/GROUP_CONCAT, the
  comparisons, LIKE/GLOB, IN, BETWEEN, IS NULL, EXISTS, AND/OR/NOT) are put in words; any other
  expression (arithmetic, CASE, CAST, functions, window functions) is quoted as the SQL text
  sqlglot reads, with the aggregates inside it named.
* A clause it has no sentence for (a named WINDOW, DISTINCT ON, anything sqlglot parses that is
  not listed here) ends the explanation with "and a part this explanation does not cover: <SQL>",
  and SQL that sqlglot cannot parse gets only that line.

The SQL is read as SQLite, the dialect the model writes (and `ask` translates for other targets).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlglot
from sqlglot import exp

from slmsql_cli.errors import UserError

if TYPE_CHECKING:
    from slmsql_cli.database import Database

DIALECT = "sqlite"
UNCOVERED = "and a part this explanation does not cover: "

# Select/set-operation arguments that have a sentence below; any other one that is set is quoted
# as uncovered. ("kind" and "distinct"'s plain form are handled; "distinct" with ON is not.)
_SELECT_ARGS = frozenset(
    {
        "with_",
        "expressions",
        "distinct",
        "from_",
        "joins",
        "where",
        "group",
        "having",
        "order",
        "limit",
        "offset",
    }
)
_SET_ARGS = frozenset({"with_", "this", "expression", "distinct", "order", "limit", "offset"})
_JOIN_ARGS = frozenset({"this", "on", "side", "kind", "using"})
_COMPARISONS: dict[type[exp.Expr], str] = {
    exp.EQ: "equals",
    exp.NEQ: "is not equal to",
    exp.GT: "is greater than",
    exp.GTE: "is at least",
    exp.LT: "is less than",
    exp.LTE: "is at most",
    exp.NullSafeEQ: "is the same as",  # SQLite's `a IS b`
    exp.NullSafeNEQ: "is not the same as",  # SQLite's `a IS NOT b`
}
# How each aggregate is said; tests check that every aggregate of a query is named by its word.
AGGREGATE_WORDS: dict[type[exp.Expr], str] = {
    exp.Count: "number",
    exp.Sum: "sum",
    exp.Avg: "average",
    exp.Min: "minimum",
    exp.Max: "maximum",
    exp.GroupConcat: "joined",
}


@dataclass
class Explanation:
    """Sentences about one SQL statement; `uncovered` holds the SQL texts they do not explain."""

    sentences: list[str] = field(default_factory=list)
    uncovered: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """One sentence per line; subqueries' sentences indented under their heading."""
        return "\n".join(self.sentences)

    @property
    def complete(self) -> bool:
        return not self.uncovered


def explain_sql(sql: str) -> Explanation:
    """The explanation of one SQLite statement (never raises: unparseable SQL is 'not covered')."""
    from slmsql_cli.targets.sqlcheck import too_deep

    text = (sql or "").strip()
    if not text:
        return Explanation(["The SQL is empty."])
    tree = None if too_deep(text) else _parse(text)  # sqlglot recurses once per level
    if tree is None or not isinstance(tree.unnest(), exp.Select | exp.SetOperation | exp.Values):
        return Explanation([UNCOVERED + text], [text])
    return _Explainer().explain(tree)


def _parse(sql: str) -> exp.Expr | None:
    log = logging.getLogger("sqlglot")
    level = log.level
    log.setLevel(logging.ERROR)  # unsupported syntax warns, then parses as a Command
    try:
        trees = [
            t for t in sqlglot.parse(sql, read=DIALECT) if t is not None and not isinstance(t, exp.Semicolon)
        ]
    except Exception:  # sqlglot's parser is not SQLite's: whatever it cannot read is not covered
        return None
    finally:
        log.setLevel(level)
    if len(trees) != 1 or isinstance(trees[0], exp.Command):
        return None
    return trees[0]


def _sql(node: exp.Expr) -> str:
    return node.sql(dialect=DIALECT)


def _clause_text(key: str, value: object) -> str:
    """The SQL of a parsed argument that has no sentence, e.g. `WINDOW w AS (ORDER BY a)`."""
    if isinstance(value, exp.Expr):
        return _sql(value)
    items = value if isinstance(value, list) else [value]
    texts = [_sql(v) if isinstance(v, exp.Expr) else str(v) for v in items]
    if key == "windows":  # a named window prints as `w OVER (...)` on its own
        return "WINDOW " + ", ".join(t.replace(" OVER ", " AS ", 1) for t in texts)
    return f"{key.rstrip('_').upper()} {', '.join(texts)}"


class _Explainer:
    """Walks one statement; subqueries are numbered as met and explained after their parent."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, exp.Expr]] = []
        self.uncovered: list[str] = []
        self.named: set[str] = set()  # WITH names (lower case): a FROM of one is not a table

    def explain(self, tree: exp.Expr) -> Explanation:
        sentences = self.query(tree)
        done = 0
        while done < len(self.pending):
            number, node = self.pending[done]
            done += 1
            sentences.append(f"Subquery {number}:")
            sentences.extend("  " + s for s in self.query(node))
        if self.uncovered:
            sentences.append(UNCOVERED + "; ".join(self.uncovered))
        return Explanation(sentences, list(self.uncovered))

    def subquery(self, node: exp.Expr) -> str:
        """Number a subquery for later explanation; its name in the sentence that mentions it."""
        number = len(self.pending) + 1
        self.pending.append((number, node.unnest() if isinstance(node, exp.Subquery) else node))
        return f"subquery {number}"

    def not_covered(self, node: exp.Expr | str) -> None:
        self.uncovered.append(node if isinstance(node, str) else _sql(node))

    def other_args(self, node: exp.Expr, covered: frozenset[str]) -> None:
        """Quote each argument of `node` that is set and has no sentence here."""
        for key, value in node.args.items():
            if key not in covered and value not in (None, [], False):
                self.not_covered(_clause_text(key, value))

    # ---- statements ------------------------------------------------------------------------
    def query(self, node: exp.Expr) -> list[str]:
        while isinstance(node, exp.Subquery | exp.Paren) and not node.args.get("alias"):
            node = node.this
        if isinstance(node, exp.Select):
            return self.select(node)
        if isinstance(node, exp.SetOperation):
            return self.set_operation(node)
        if isinstance(node, exp.Values):
            return [f"It returns the fixed rows {_sql(node)}."]
        self.not_covered(node)
        return []

    def with_clause(self, node: exp.Expr) -> list[str]:
        with_ = node.args.get("with_")
        if not with_:
            return []
        sentences = []
        for cte in with_.expressions:
            self.named.add(cte.alias.lower())
            columns = cte.args["alias"].columns if cte.args.get("alias") else []
            named = f" with columns {', '.join(c.name for c in columns)}" if columns else ""
            kind = "recursive " if with_.args.get("recursive") else ""
            sentences.append(
                f"First it defines the {kind}named result {cte.alias}{named} as {self.subquery(cte.this)}."
            )
        return sentences

    def select(self, node: exp.Select) -> list[str]:
        self.other_args(node, _SELECT_ARGS)
        sentences = self.with_clause(node)
        sentences.extend(self.sources(node))
        if node.args.get("where"):
            sentences.append(f"It keeps only the rows where {self.condition(node.args['where'].this)}.")
        group = node.args.get("group")
        if group:
            self.other_args(group, frozenset({"expressions"}))
            if group.expressions:
                sentences.append(f"It groups the rows by {self.values(group.expressions)}.")
        if node.args.get("having"):
            sentences.append(f"It keeps only the groups where {self.condition(node.args['having'].this)}.")
        returns = self.values(node.expressions)
        distinct = node.args.get("distinct")
        if distinct is not None and distinct.args.get("on") is not None:
            self.not_covered(distinct)
        sentences.append(f"It returns {returns}{', without duplicate rows' if distinct else ''}.")
        sentences.extend(self.order_and_limit(node))
        return sentences

    def set_operation(self, node: exp.SetOperation) -> list[str]:
        self.other_args(node, _SET_ARGS)
        sentences = self.with_clause(node)
        left, right = self.subquery(node.this), self.subquery(node.expression)
        distinct = node.args.get("distinct", True)
        if isinstance(node, exp.Union):
            how = (
                "the rows either one returns, duplicates removed"
                if distinct
                else "all rows of both, duplicates kept"
            )
            sentences.append(f"It combines {left} and {right} (UNION{'' if distinct else ' ALL'}): {how}.")
        elif isinstance(node, exp.Intersect):
            sentences.append(f"It keeps only the rows that both {left} and {right} return (INTERSECT).")
        elif isinstance(node, exp.Except):
            sentences.append(f"It keeps the rows of {left} that {right} does not return (EXCEPT).")
        else:
            self.not_covered(node)
        sentences.extend(self.order_and_limit(node))
        return sentences

    def order_and_limit(self, node: exp.Expr) -> list[str]:
        sentences = []
        order = node.args.get("order")
        if order:
            keys = []
            for ordered in order.expressions:
                this = ordered.this
                is_position = isinstance(this, exp.Literal) and this.is_int
                key = f"its column {this.this}" if is_position else self.value(this)
                desc = bool(ordered.args.get("desc"))
                text = f"{key} in {'descending' if desc else 'ascending'} order"
                nulls_first = ordered.args.get("nulls_first")
                if nulls_first is not None and bool(nulls_first) == desc:  # SQLite: NULL sorts lowest
                    text += f" with NULLs {'first' if nulls_first else 'last'}"
                keys.append(text)
            sentences.append(f"It sorts the result by {', then by '.join(keys)}.")
        limit, offset = node.args.get("limit"), node.args.get("offset")
        if limit is not None:
            count = limit.expression
            if isinstance(limit.args.get("offset"), exp.Expr):  # LIMIT offset, count
                offset = limit.args["offset"]
            if isinstance(count, exp.Neg) and isinstance(count.this, exp.Literal) and count.this.is_int:
                text = "It keeps every row (a negative LIMIT is no limit)"
            elif isinstance(count, exp.Literal) and count.is_int:
                n = int(count.this)
                what = "row" if n == 1 else f"{n} rows"
                text = f"It keeps only the first {what}"
            else:
                text = f"It keeps at most {self.value(count)} rows"
            if offset is not None:
                skip = offset.expression if isinstance(offset, exp.Offset) else offset
                text += f", after skipping the first {self.value(skip)}"
            sentences.append(text + ".")
        elif offset is not None:
            skip = offset.expression if isinstance(offset, exp.Offset) else offset
            sentences.append(f"It skips the first {self.value(skip)} rows.")
        return sentences

    # ---- FROM and JOIN -----------------------------------------------------------------------
    def source(self, node: exp.Expr) -> str:
        alias = node.alias
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            name = _sql(exp.table_(node.name, db=node.args.get("db"), catalog=node.args.get("catalog")))
            kind = "named result" if not node.args.get("db") and node.name.lower() in self.named else "table"
            return f"the {kind} {name}" + (f" (as {alias})" if alias and alias != node.name else "")
        if isinstance(node, exp.Subquery):
            return f"the result of {self.subquery(node)}" + (f" (as {alias})" if alias else "")
        named = f" (as {alias})" if alias else ""
        bare = node.copy()
        bare.set("alias", None)
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Func):  # json_each(...), pragma_…(...)
            return f"the table-valued function {_sql(bare)}{named}"
        return f"the rows of {_sql(bare)}{named}"

    def sources(self, node: exp.Select) -> list[str]:
        from_ = node.args.get("from_")
        if from_ is None:
            return [] if not node.args.get("joins") else [f"It reads {self.values(node.args['joins'])}."]
        sentences = [f"It reads {self.source(from_.this)}."]
        for join in node.args.get("joins") or []:
            sentences.append(self.join(join))
        return sentences

    def join(self, join: exp.Join) -> str:
        natural = (join.args.get("method") or "").upper() == "NATURAL"
        self.other_args(join, _JOIN_ARGS | ({"method"} if natural else set()))
        side, kind = (join.args.get("side") or "").upper(), (join.args.get("kind") or "").upper()
        what = self.source(join.this)
        on, using = join.args.get("on"), join.args.get("using")
        if natural or kind == "NATURAL":
            pairing = "pairing rows that agree on every column the two share by name"
        elif using:
            pairing = f"pairing rows that agree on {', '.join(_sql(c) for c in using)}"
        elif on is not None:
            pairing = f"pairing rows where {self.condition(on)}"
        else:
            return f"It pairs every row so far with every row of {what}."
        kept = {
            "LEFT": "; rows read before it that have no match are kept, with NULLs for it",
            "RIGHT": "; its rows that have no match are kept, with NULLs for the others",
            "FULL": "; rows of either side that have no match are kept, with NULLs",
        }.get(side, "")
        return f"It joins in {what}, {pairing}{kept}."

    # ---- conditions ------------------------------------------------------------------------
    def condition(self, node: exp.Expr) -> str:
        if isinstance(node, exp.Paren):
            return self.condition(node.this)
        if isinstance(node, exp.And | exp.Or):
            word = "and" if isinstance(node, exp.And) else "or"
            other = exp.Or if isinstance(node, exp.And) else exp.And
            parts = []
            for part in node.flatten():
                inner = part.unnest() if isinstance(part, exp.Paren) else part
                text = self.condition(inner)
                parts.append(f"({text})" if isinstance(inner, other) else text)
            return f" {word} ".join(parts) if word == "and" else "either " + ", or ".join(parts)
        if isinstance(node, exp.Not):
            return self.negated(node.this.unnest() if isinstance(node.this, exp.Paren) else node.this)
        for kind, phrase in _COMPARISONS.items():
            if type(node) is kind:
                return f"{self.value(node.this)} {phrase} {self.value(node.expression)}"
        if isinstance(node, exp.Escape) and isinstance(node.this, exp.Like | exp.ILike):
            return self.like(node.this, escape=node.expression)
        if isinstance(node, exp.Like | exp.ILike):
            return self.like(node)
        if isinstance(node, exp.Glob):
            return f"{self.value(node.this)} matches the GLOB pattern {self.value(node.expression)}"
        if isinstance(node, exp.In):
            return self.in_(node, negated=False)
        if isinstance(node, exp.Between):
            return f"{self.value(node.this)} is between {self.value(node.args['low'])} and {self.value(node.args['high'])}"
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            return f"{self.value(node.this)} is NULL (missing)"
        if isinstance(node, exp.Is):
            return f"{self.value(node.this)} is the same as {self.value(node.expression)}"
        if isinstance(node, exp.Exists):
            return f"{self.subquery(node.this)} returns at least one row"
        return f"{self.value(node)} holds (is true)"

    def negated(self, node: exp.Expr) -> str:
        if isinstance(node, exp.In):
            return self.in_(node, negated=True)
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            return f"{self.value(node.this)} is not NULL (present)"
        if isinstance(node, exp.Between):
            return f"{self.value(node.this)} is not between {self.value(node.args['low'])} and {self.value(node.args['high'])}"
        if isinstance(node, exp.Exists):
            return f"{self.subquery(node.this)} returns no row"
        if isinstance(node, exp.Like | exp.ILike):
            return self.like(node, negate=True)
        inner = self.condition(node)
        return (
            f"it is not true that ({inner})"
            if isinstance(node, exp.And | exp.Or)
            else f"it is not true that {inner}"
        )

    def like(self, node: exp.Expr, *, escape: exp.Expr | None = None, negate: bool = False) -> str:
        negate = negate != bool(node.args.get("negate"))
        verb = "does not match" if negate else "matches"
        pattern = self.value(node.expression)
        text = f"{self.value(node.this)} {verb} the pattern {pattern} (% is any text, _ any one character"
        text += ", ignoring case for ASCII letters)" if isinstance(node, exp.Like) else ")"
        if escape is not None:
            text += f", with {self.value(escape)} as the escape character"
        return text

    def in_(self, node: exp.In, *, negated: bool) -> str:
        subject = self.value(node.this)
        query = node.args.get("query")
        if query is not None:
            return f"{subject} is {'not ' if negated else ''}among the values {self.subquery(query)} returns"
        if node.expressions:
            listed = ", ".join(self.value(e) for e in node.expressions)
            return f"{subject} is {'not ' if negated else ''}one of ({listed})"
        if isinstance(node.args.get("field"), exp.Expr):  # SQLite's `x IN table`
            return f"{subject} is {'not ' if negated else ''}among the values of {_sql(node.args['field'])}"
        self.not_covered(node)
        return f"{subject} is {'not ' if negated else ''}in {_sql(node)}"

    # ---- values ----------------------------------------------------------------------------
    def values(self, nodes: list[exp.Expr]) -> str:
        parts = [self.value(n) for n in nodes]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    def value(self, node: exp.Expr) -> str:
        if isinstance(node, exp.Alias):
            return f"{self.value(node.this)} (named {node.alias})"
        if isinstance(node, exp.Column):
            return "all columns of " + node.table if isinstance(node.this, exp.Star) else _sql(node)
        if isinstance(node, exp.Star):
            return "all columns"
        if isinstance(node, exp.Literal):
            return f"'{node.this}'" if node.is_string else str(node.this)
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
            return f"-{node.this.this}"
        if isinstance(node, exp.Null):
            return "NULL"
        if isinstance(node, exp.Subquery):
            return f"the result of {self.subquery(node)}"
        if isinstance(node, exp.Paren) and isinstance(node.this, exp.Column | exp.Literal | exp.AggFunc):
            return self.value(node.this)
        words = self.aggregate(node)
        if words is not None:
            return words
        if isinstance(node, exp.Filter) and isinstance(node.expression, exp.Where):
            words = self.aggregate(node.this)
            if words is not None:
                return f"{words} (only rows where {self.condition(node.expression.this)})"
        if isinstance(node, exp.Window) and self.aggregate(node.this) is not None:
            return f"{self.aggregate(node.this)} over each row's window ({_sql(node)})"
        inside = [a for a in node.find_all(exp.AggFunc) if a is not node and not a.find_ancestor(exp.Window)]
        if inside:
            named = self.values([exp.Var(this=self.aggregate(a) or _sql(a)) for a in inside])
            return f"{_sql(node)} (computed from {named})"
        return _sql(node)

    def aggregate(self, node: exp.Expr) -> str | None:
        """An aggregate in words (None for anything else)."""
        if type(node) not in AGGREGATE_WORDS or node.args.get("expressions"):  # MAX(a, b) is not one
            return None
        arg = node.this
        distinct = isinstance(arg, exp.Distinct)
        if distinct:
            if len(arg.expressions) != 1:
                return None
            arg = arg.expressions[0]
        what = self.value(arg) if arg is not None else ""
        if isinstance(node, exp.Count):
            if isinstance(arg, exp.Star) or arg is None:
                return "the number of rows"
            return f"the number of {'different ' if distinct else ''}values of {what}"
        of = f"the different values of {what}" if distinct else what
        if isinstance(node, exp.GroupConcat):
            sep = node.args.get("separator")
            joined = f" with {self.value(sep)} between them" if sep is not None else ""
            return f"the values of {of} joined into one text{joined}"
        return f"the {AGGREGATE_WORDS[type(node)]} of {of}"


def explain_for(db: Database, sql: str) -> Explanation:
    """`slmsql explain`: SQL a person wrote, checked (`check_query`), refused when SQLite cannot
    parse it (a misspelt keyword would otherwise be "a part this explanation does not cover"),
    then explained."""
    check_query(db, sql)
    problem = _sqlite_problems(db, sql)
    if problem.syntax:
        raise UserError(
            f"this SQL does not parse: {problem.syntax}",
            "check the spelling near the place SQLite names; explain reads SQLite's SQL",
        )
    return explain_sql(sql)


def missing_names(db: Database, sql: str) -> list[str]:
    """The tables and columns `sql` names that `db` lacks, as SQLite resolves them against an
    empty copy of the schema ("column b.titel"); [] when it names only what exists. Aliases,
    WITH names and subqueries resolve as they would when the query runs."""
    return _sqlite_problems(db, sql).missing


_MAX_MISSING = 20  # names looked up, one SQLite compile each


@dataclass
class _Problems:
    syntax: str | None = None  # SQLite's parse error
    missing: list[str] = field(default_factory=list)  # "table t", "column b.titel"


def _sqlite_problems(db: Database, sql: str) -> _Problems:
    """Compile (EXPLAIN, never run) `sql` in an in-memory SQLite holding `db`'s tables with their
    columns and no rows. SQLite names one missing column per compile: each one found is added
    to every table and the SQL compiled again, so that all of them are named."""
    import sqlite3

    from slmsql_cli.schema import quote

    found = _Problems()
    conn = sqlite3.connect(":memory:")
    try:
        tables = {}
        for table in db.schema.tables:
            if table.name.lower() not in tables:
                tables[table.name.lower()] = table.name
                columns = (
                    ", ".join(quote(c.name) for c in table.columns) or '" "'
                )  # no columns: one blank name
                conn.execute(f"CREATE TABLE {quote(table.name)} ({columns})")
        for _ in range(_MAX_MISSING):
            try:
                conn.execute("EXPLAIN " + sql.strip())
                break
            except sqlite3.Warning:  # more than one statement: check_query refused it already
                break
            except sqlite3.Error as exc:
                message = str(exc)
            kind, _, name = message.partition(": ")
            if kind == "no such column" and name and f"column {name}" not in found.missing:
                found.missing.append(f"column {name}")
                column = quote(name.rsplit(".", 1)[-1])
                for table_name in tables.values():
                    with contextlib.suppress(sqlite3.Error):  # a table that has it under another case
                        conn.execute(f"ALTER TABLE {quote(table_name)} ADD COLUMN {column}")
            elif kind == "no such table" and name:
                found.missing.append(f"table {name}")
                break
            elif (
                "syntax error" in message or message in ("incomplete input",) or kind == "unrecognized token"
            ):
                found.syntax = message
                break
            else:  # no such function, ambiguous column, …: what the query run would say
                break
    finally:
        conn.close()
    return found


def check_query(db: Database, sql: str) -> None:
    """A UserError unless `sql` passes the model's read-only check (`sqlcheck.check_sql`: one
    SELECT, WITH … SELECT or VALUES) and names only tables of `db` (or its own WITH names)."""
    from slmsql_cli.targets.sqlcheck import check_sql

    rejection = check_sql(sql)
    if rejection:
        raise UserError(
            f"this SQL is refused: {rejection}", "give one SELECT, WITH … SELECT or VALUES statement"
        )
    tree = _parse(sql.strip())
    if tree is None:
        return
    named = {cte.alias.lower() for cte in tree.find_all(exp.CTE)}
    known = {t.lower() for t in db.table_names()}
    unknown = [t.name for t in tree.find_all(exp.Table) if t.name and t.name.lower() not in named | known]
    if unknown:
        raise UserError(
            f"{db.name} has no table named {', '.join(dict.fromkeys(unknown))}",
            f"its tables: {', '.join(db.table_names())}",
        )
