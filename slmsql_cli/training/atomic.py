"""FINER-SQL's atomic operations: a SQL query as a set of small, comparable facts.

A wrong but executable query earns partial credit in GRPO for how much of the gold query it got
right: both queries are decomposed into atomic operations (tables, joins, selected columns and
aggregates, predicates, grouping, ordering, limit, nesting, set operations), and the Jaccard overlap
of the two sets is reshaped (FINER-SQL, github.com/thanhdath/finer-sql: `atomic_ops/atomic_ops.py`
and `atomic_ops/reward.py`, shaped with `grpo_writer.py`'s "S3" values).

Written afresh on sqlglot with the same operation vocabulary, plus normalizations the reference
lacks, so that equivalent spellings give equal sets:

* table aliases resolve to the table they name (``T1.name`` → ``singer.name``; a second use of the
  same table in one scope is ``singer#2``), so alias names do not matter;
* inner joins commute: every inner-joined table is a ``FROM`` source and ``ON_EQ`` carries the
  structure (outer joins keep ``JOIN(table, LEFT)``);
* ``a = b`` and ``b = a`` are one predicate, ``5 < x`` is ``x > 5``, IN lists are sorted;
* ``FROM a, b WHERE a.x = b.y`` is the same join as ``a JOIN b ON a.x = b.y``;
* output-column aliases are dropped (they never change a result set) and ORDER BY an alias means
  the aliased expression.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

# FINER-SQL's "S3" shaping, the values its released training runs use (grpo_writer.py).
FINER_E = 0.05
FINER_BETA = 0.79
FINER_GAMMA = 0.20

_COMPARISONS: dict[type[exp.Expression], str] = {
    exp.EQ: "EQ",
    exp.NEQ: "NEQ",
    exp.GT: "GT",
    exp.GTE: "GTE",
    exp.LT: "LT",
    exp.LTE: "LTE",
    exp.Like: "LIKE",
    exp.ILike: "ILIKE",
    exp.Glob: "GLOB",
    exp.Is: "IS",
}
_SYMMETRIC = {"EQ", "NEQ"}
_FLIPPED = {"GT": "LT", "LT": "GT", "GTE": "LTE", "LTE": "GTE"}


def sql_to_ops(sql: str) -> list[str]:
    """The atomic operations of one SQL statement, in emission order. Raises ValueError if it is not one parsable query."""
    try:
        trees = [t for t in sqlglot.parse(sql, read="sqlite") if t is not None]
    except SqlglotError as exc:
        raise ValueError(f"cannot parse SQL: {exc}") from None
    if len(trees) != 1 or not isinstance(trees[0], exp.Query):
        raise ValueError(f"expected one query, got {len(trees)} statement(s)")
    walker = _Walker()
    walker.query(trees[0])
    return walker.ops


@lru_cache(maxsize=65536)
def atomic_ops(sql: str) -> frozenset[str]:
    """The set of atomic operations of `sql`; empty when it does not parse as one query (the reference's rule)."""
    try:
        return frozenset(sql_to_ops(sql))
    except (ValueError, SqlglotError, RecursionError):
        return frozenset()


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """|A ∩ B| / |A ∪ B|; 0 when both are empty (an unparsable pair earns nothing)."""
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 0.0


def shaped(s: float, e: float = FINER_E, beta: float = FINER_BETA, gamma: float = FINER_GAMMA) -> float:
    """FINER-SQL's reshaping e·s + (1−e)·β·s^γ: with the S3 values even small overlaps earn a useful signal."""
    return e * s + (1.0 - e) * beta * s**gamma


def similarity(pred_sql: str, gold_sql: str) -> float:
    """Jaccard overlap of the two queries' atomic operations."""
    return jaccard(atomic_ops(pred_sql), atomic_ops(gold_sql))


class _Walker:
    """Emits ops while walking a query; `scopes` maps alias/table names to canonical table names."""

    def __init__(self) -> None:
        self.ops: list[str] = []
        self.scopes: list[dict[str, str]] = []

    # ---- queries ---------------------------------------------------------------------------
    def query(self, node: exp.Expression | exp.Query) -> None:
        while isinstance(node, (exp.Subquery, exp.Paren)):
            node = node.this
        with_ = node.args.get("with_")
        if with_ is not None:
            for cte in with_.expressions:
                self.ops.append(f"WITH_CTE({cte.alias_or_name.lower()})")
                self.nested("CTE", cte.this)
        if isinstance(node, exp.SetOperation):
            self.query(node.this)
            kind = type(node).__name__.upper() + ("" if node.args.get("distinct", True) else "_ALL")
            self.ops.append(kind)
            self.nested("SET_RIGHT", node.expression)
            self.order_limit(node)
        elif isinstance(node, exp.Select):
            self.select(node)
        else:
            self.ops.append(f"QUERY_TREE({node.sql(dialect='sqlite')})")

    def nested(self, role: str, node: exp.Expression) -> None:
        self.ops.append(f"ENTER_SUBQUERY({role})")
        self.query(node)
        self.ops.append("EXIT_SUBQUERY")

    def select(self, node: exp.Select) -> None:
        self.scopes.append({})
        try:
            implicit_joins = self.sources(node)
            aliases = self.projections(node)
            if node.args.get("distinct"):
                self.ops.append("DISTINCT")
            where = node.args.get("where")
            if where is not None:
                for pred in _conjuncts(where.this):
                    if implicit_joins and self.join_equality(pred):
                        continue
                    self.predicate("WHERE_PRED", pred)
            group = node.args.get("group")
            if group is not None:
                for e in group.expressions:
                    self.ops.append(f"GROUP_BY({self.fmt(_resolve_alias(e, aliases))})")
            having = node.args.get("having")
            if having is not None:
                for pred in _conjuncts(having.this):
                    self.predicate("HAVING_PRED", _resolve_alias(pred, aliases))
            self.order_limit(node, aliases)
        finally:
            self.scopes.pop()

    def order_limit(self, node: exp.Expression, aliases: dict[str, exp.Expression] | None = None) -> None:
        order = node.args.get("order")
        if order is not None:
            for o in order.expressions:
                direction = "DESC" if o.args.get("desc") else "ASC"
                self.ops.append(f"ORDER_BY({self.fmt(_resolve_alias(o.this, aliases or {}))}, {direction})")
        for key in ("limit", "offset"):
            clause = node.args.get(key)
            if clause is not None:
                value = clause.args.get("expression") or clause.this
                text = str(value.this) if isinstance(value, exp.Literal) else self.fmt(value)
                self.ops.append(f"{key.upper()}({text})")

    # ---- FROM / JOIN -----------------------------------------------------------------------
    def sources(self, node: exp.Select) -> bool:
        """Emit FROM and JOIN ops; True when some join has no ON (comma or CROSS join), whose keys live in WHERE."""
        from_ = node.args.get("from_")
        if from_ is None:
            return False
        self.ops.append(f"FROM({self.source(from_.this, 'FROM')})")
        implicit = False
        for join in node.args.get("joins") or []:
            name = self.source(join.this, "JOIN")
            on = join.args.get("on")
            using = join.args.get("using")
            kind = (join.args.get("side") or join.args.get("kind") or "INNER").upper()
            if kind == "CROSS" and on is None and not using:
                kind, implicit = "INNER", True
            # Inner joins commute: their tables are plain sources and ON_EQ carries the structure.
            self.ops.append(f"FROM({name})" if kind == "INNER" else f"JOIN({name}, {kind})")
            if on is not None:
                for pred in _conjuncts(on):
                    if not self.join_equality(pred):
                        self.predicate("ON_PRED", pred)
            for ident in using or []:
                self.ops.append(f"JOIN_USING({ident.name.lower()})")
        return implicit

    def source(self, src: exp.Expression, role: str) -> str:
        """Register a FROM/JOIN source in the current scope and return its canonical name."""
        scope = self.scopes[-1]
        if isinstance(src, exp.Table):
            table = src.name.lower()
            used = set(scope.values())
            canonical, k = table, 1
            while canonical in used:  # the same table twice in one scope (a self-join)
                k += 1
                canonical = f"{table}#{k}"
            scope[src.alias_or_name.lower()] = canonical
            scope.setdefault(table, canonical)
            return canonical
        inner = src.this if isinstance(src, exp.Subquery) else src
        self.nested(role, inner)
        canonical = "subquery" if "subquery" not in scope.values() else f"subquery#{len(scope) + 1}"
        if src.alias:
            scope[src.alias.lower()] = canonical
        return canonical

    def join_equality(self, pred: exp.Expression) -> bool:
        """`a.x = b.y` between two different sources is a join key: emit ON_EQ and report True."""
        if not (
            isinstance(pred, exp.EQ)
            and isinstance(pred.left, exp.Column)
            and isinstance(pred.right, exp.Column)
        ):
            return False
        left, right = self.qualified(pred.left), self.qualified(pred.right)
        if left is None or right is None or left.split(".")[0] == right.split(".")[0]:
            return False
        a, b = sorted((left, right))
        self.ops.append(f"ON_EQ({a}, {b})")
        return True

    def qualified(self, col: exp.Column) -> str | None:
        if not col.table:
            return None
        return f"{self.canonical(col.table)}.{col.name.lower()}"

    def canonical(self, name: str) -> str:
        key = name.lower()
        for scope in reversed(self.scopes):
            if key in scope:
                return scope[key]
        return key

    # ---- SELECT list -----------------------------------------------------------------------
    def projections(self, node: exp.Select) -> dict[str, exp.Expression]:
        aliases: dict[str, exp.Expression] = {}
        for proj in node.expressions:
            target = proj
            if isinstance(proj, exp.Alias):
                target = proj.this
                aliases[proj.alias.lower()] = target
            self.ops.append(self.projection(target))
        return aliases

    def projection(self, target: exp.Expression) -> str:
        if isinstance(target, exp.Window):
            spec = [f"PARTITION_BY({', '.join(self.fmt(p) for p in target.args.get('partition_by') or [])})"]
            order = target.args.get("order")
            if order is not None:
                spec.append(
                    "ORDER_BY("
                    + ", ".join(
                        f"{self.fmt(o.this)} {'DESC' if o.args.get('desc') else 'ASC'}"
                        for o in order.expressions
                    )
                    + ")"
                )
            self.ops.append(f"WINDOW({', '.join(spec)})")
            return f"SELECT_WIN({self.fmt(target.this)})"
        if isinstance(target, exp.AggFunc):
            args = ", ".join(self.fmt(a) for a in _func_args(target))
            return f"SELECT_AGG({type(target).__name__.upper()}, {args})"
        if isinstance(target, (exp.Column, exp.Star)):
            return f"SELECT_COL({self.fmt(target)})"
        return f"SELECT_EXPR({self.fmt(target)})"

    # ---- predicates ------------------------------------------------------------------------
    def predicate(self, kind: str, p: exp.Expression) -> None:
        role = kind.split("_")[0]
        for cls, name in _COMPARISONS.items():
            if type(p) is cls:
                left, right = p.this, p.expression
                lhs, rhs = self.operand(left, role), self.operand(right, role)
                if name in _SYMMETRIC and (_is_constant(left) or not _is_constant(right)):
                    lhs, rhs = sorted((lhs, rhs)) if _is_constant(left) == _is_constant(right) else (rhs, lhs)
                elif name in _FLIPPED and _is_constant(left) and not _is_constant(right):
                    name, lhs, rhs = _FLIPPED[name], rhs, lhs
                self.ops.append(f"{kind}({name}, {lhs}, {rhs})")
                return
        if isinstance(p, exp.Between):
            self.ops.append(
                f"{kind}(BETWEEN, {self.fmt(p.this)}, [{self.fmt(p.args['low'])}, {self.fmt(p.args['high'])}])"
            )
        elif isinstance(p, exp.In) and p.args.get("query") is not None:
            self.nested(f"{role}_IN", p.args["query"])
            self.ops.append(f"{kind}(IN_SUBQ, {self.fmt(p.this)}, SUBQUERY)")
        elif isinstance(p, exp.In):
            values = sorted(self.fmt(v) for v in p.expressions)
            self.ops.append(f"{kind}(IN, {self.fmt(p.this)}, [{', '.join(values)}])")
        elif isinstance(p, exp.Exists):
            self.nested(f"{role}_EXISTS", p.this)
            self.ops.append(f"{kind}(EXISTS, SUBQUERY)")
        else:  # OR, NOT and anything else stay one opaque (but alias-free) tree
            self.ops.append(f"{kind}_TREE({self.fmt(p)})")

    def operand(self, e: exp.Expression, role: str) -> str:
        if isinstance(e, exp.Subquery):
            self.nested(f"{role}_SCALAR", e.this)
            return "SUBQUERY"
        return self.fmt(e)

    # ---- expressions -----------------------------------------------------------------------
    def fmt(self, e: exp.Expression | None) -> str:
        """An expression as text with literals as VALUE(..), columns unqualified and lower-case."""
        if e is None:
            return ""
        if isinstance(e, exp.Paren):
            return self.fmt(e.this)
        if isinstance(e, exp.Column):
            return "*" if isinstance(e.this, exp.Star) else e.name.lower()
        if isinstance(e, exp.Star):
            return "*"
        if isinstance(e, exp.Literal):
            return f"VALUE('{e.this}')" if e.is_string else f"VALUE({e.this})"
        if isinstance(e, exp.Null):
            return "VALUE(NULL)"
        if isinstance(e, exp.Boolean):
            return f"VALUE({str(e.this).upper()})"
        if isinstance(e, exp.Distinct):
            return "DISTINCT " + ", ".join(self.fmt(x) for x in e.expressions)
        if isinstance(e, exp.Subquery):
            self.nested("EXPR", e.this)
            return "SUBQUERY"
        if isinstance(e, exp.Cast):
            return f"CAST({self.fmt(e.this)} AS {e.to.sql(dialect='sqlite')})"
        if isinstance(e, exp.Func):
            args = ", ".join(self.fmt(a) for a in _func_args(e))
            name = e.sql_name() if not isinstance(e, exp.Anonymous) else str(e.this)
            return f"{name.upper()}({args})"
        return _strip_qualifiers(e).sql(dialect="sqlite")


def _func_args(f: exp.Expression) -> list[exp.Expression]:
    """A function's argument expressions in declaration order (SUBSTR's start and length included)."""
    out: list[exp.Expression] = []
    for key in f.arg_types:
        value = f.args.get(key)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, exp.Expression):
                out.append(v)
    return out


def _conjuncts(e: exp.Expression) -> list[exp.Expression]:
    while isinstance(e, exp.Paren):
        e = e.this
    if isinstance(e, exp.And):
        return _conjuncts(e.this) + _conjuncts(e.expression)
    return [e]


def _is_constant(e: exp.Expression) -> bool:
    return isinstance(e, (exp.Literal, exp.Null, exp.Boolean)) or (
        isinstance(e, exp.Neg) and _is_constant(e.this)
    )


def _resolve_alias(e: exp.Expression, aliases: dict[str, exp.Expression]) -> exp.Expression:
    """Replace bare references to output aliases (ORDER BY cnt) by the aliased expression."""
    if not aliases:
        return e

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name.lower() in aliases:
            return aliases[node.name.lower()].copy()
        return node

    return e.copy().transform(swap)


def _strip_qualifiers(e: exp.Expression) -> exp.Expression:
    def strip(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column):
            return exp.column(node.name.lower())
        return node

    return e.copy().transform(strip)
