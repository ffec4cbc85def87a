"""SQLite SQL (what the models write) → DuckDB or PostgreSQL SQL that returns what SQLite would.

sqlglot translates the syntax (`sqlglot.transpile(sql, read="sqlite", write=dialect)`); where
SQLite *means* something else than the target, a rewrite of the parsed tree comes first. Each
rewrite is one small function below, named for the difference it removes, with a test pair (SQLite
in, target SQL out) in tests/test_transpile.py. With the target's `Schema`, the tree is qualified
and typed by sqlglot's optimizer first (`qualify`, `annotate_types`), so the rewrites that depend
on a column's type (and sqlglot's own integer-division handling) can see it; without a schema, or
when sqlglot cannot qualify the query, those rewrites are skipped.

What no rewrite can fix (see docs/TRANSPILE.md for the measured cases): which row a `LIMIT`
without `ORDER BY`, or an `ORDER BY` with ties, returns; SQLite's bare columns in a grouped query
without min()/max() (an arbitrary row of the group, here too); text that SQLite silently reads
as a number (`'12abc' + 0` is 12 in SQLite, an error or NULL in the targets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify

from slmsql_cli import sqlglot_log
from slmsql_cli.errors import first_line
from slmsql_cli.schema import Schema
from slmsql_cli.targets.sqlcheck import NESTED_TOO_DEEPLY, too_deep

DIALECTS = ("duckdb", "postgres")


@dataclass
class Transpiled:
    sql: str | None  # the SQL for the target, or None when it cannot be translated
    reason: str | None = None  # why not, one line


@dataclass
class Context:
    dialect: str
    schema: Schema | None
    typed: bool = False  # whether the tree is qualified and its expressions carry types
    tables: dict[str, str] = field(default_factory=dict)  # lowercase → the schema's spelling
    columns: dict[str, dict[str, str]] = field(default_factory=dict)  # table (lowercase) → the same


Rewrite = Callable[[exp.Expr, Context], exp.Expr]


def transpile(sql: str, dialect: str, schema: Schema | None = None) -> Transpiled:
    """`sql` (SQLite) in `dialect`, or the reason it cannot be. `schema` (the target's tables with
    their column types) lets the rewrites see types and the exact spelling of names."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}")
    deep = too_deep(sql)  # before sqlglot: its parser and rewrites recurse once per level
    if deep:
        return Transpiled(None, deep)
    try:
        return _transpile(sql, dialect, schema)
    except RecursionError:  # deep without parentheses (a long chain of NOT or unary minus)
        return Transpiled(None, NESTED_TOO_DEEPLY)


def _transpile(sql: str, dialect: str, schema: Schema | None) -> Transpiled:
    with sqlglot_log.quiet():
        try:
            tree = sqlglot.parse_one(sql, read="sqlite")
        except sqlglot.errors.SqlglotError as exc:
            return Transpiled(None, f"sqlglot cannot parse it: {first_line(exc)}")
        tables, columns = _names(schema)
        ctx = Context(dialect, schema, tables=tables, columns=columns)
        try:
            for rewrite in REWRITES:
                tree = rewrite(tree, ctx)
            return Transpiled(tree.sql(dialect=dialect, unsupported_level=sqlglot.ErrorLevel.RAISE))
        except sqlglot.errors.SqlglotError as exc:
            return Transpiled(None, f"no {dialect} form: {first_line(exc)}")


def _names(schema: Schema | None) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    if schema is None:
        return {}, {}
    tables = {t.name.lower(): t.name for t in schema.tables}
    columns = {t.name.lower(): {c.name.lower(): c.name for c in t.columns} for t in schema.tables}
    return tables, columns


def _mapping(schema: Schema) -> dict[str, object]:
    """The schema as sqlglot's {table: {column: type}}; a type sqlglot cannot read is left out."""
    mapping: dict[str, object] = {}
    for t in schema.tables:
        cols = {}
        for c in t.columns:
            try:
                exp.DataType.build(c.type or "text")
                cols[c.name] = c.type or "text"
            except sqlglot.errors.SqlglotError:
                cols[c.name] = "unknown"
        mapping[t.name] = cols
    return mapping


def _own(node: exp.Expr, select: exp.Select) -> bool:
    """Whether `node` belongs to `select` itself, not to a subquery inside it."""
    return node.find_ancestor(exp.Select) is select


def _aliases(tree: exp.Expr) -> set[str]:
    return {a.alias.lower() for a in tree.find_all(exp.Alias)} | {
        t.alias.lower() for t in tree.find_all(exp.Table) if t.alias
    }


# --- the rewrites ------------------------------------------------------------------------------


class Unsupported(sqlglot.errors.SqlglotError):
    """SQLite SQL with no equivalent in the target; the message says what."""


# SQLite functions without a same-meaning function in the target (sqlglot passes them through,
# and the engine would fail with a less clear message, or, for a name it has, mean something else).
_NO_EQUIVALENT = {
    "duckdb": frozenset({"likelihood", "likely", "unlikely", "total", "zeroblob", "randomblob", "changes"}),
    "postgres": frozenset(
        {"likelihood", "likely", "unlikely", "total", "zeroblob", "randomblob", "changes", "printf", "hex"}
    ),
}


def sqlite_only_features_are_refused(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """FTS5 MATCH, and functions the target lacks (PostgreSQL: GLOB too), cannot keep their
    meaning: the SQL is refused with the reason, rather than failing (or differing) in the engine."""
    if tree.find(exp.Match):
        raise Unsupported("MATCH (SQLite full-text search) has no equivalent")
    if ctx.dialect == "postgres" and tree.find(exp.Glob):
        raise Unsupported("GLOB has no PostgreSQL equivalent")
    for func in tree.find_all(exp.Anonymous):
        if func.name.lower() in _NO_EQUIVALENT[ctx.dialect]:
            raise Unsupported(f"{func.name.lower()}() has no {ctx.dialect} equivalent")
    return tree


def double_quotes_are_strings(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """SQLite reads `"English"` as a string when no column has that name (a misfeature kept for
    compatibility, sqlite.org/quirks.html §8); the targets always read a column. Needs the schema."""
    if ctx.schema is None:
        return tree
    known = {c for cols in ctx.columns.values() for c in cols} | _aliases(tree)
    for col in list(tree.find_all(exp.Column)):
        ident = col.this
        if (
            isinstance(ident, exp.Identifier)
            and ident.quoted
            and not col.table
            and ident.name.lower() not in known
        ):
            col.replace(exp.Literal.string(ident.name))
    return tree


def qualify_and_type(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """Not a difference itself: resolve every column to its table and give every expression a type
    (sqlglot's optimizer), for the rewrites that follow. A query sqlglot cannot qualify stays as it is."""
    if ctx.schema is None:
        return tree
    mapping = _mapping(ctx.schema)
    try:
        qualified = qualify(
            tree.copy(),
            dialect="sqlite",
            schema=mapping,
            expand_stars=False,
            validate_qualify_columns=False,
            quote_identifiers=False,
            identify=False,
        )
        typed = annotate_types(qualified, schema=mapping, dialect="sqlite")
    except sqlglot.errors.SqlglotError:
        return tree
    ctx.typed = True
    return typed


def like_ignores_case(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """SQLite's LIKE ignores ASCII case; the targets' LIKE does not: ILIKE."""
    for like in list(tree.find_all(exp.Like)):
        like.replace(exp.ILike(this=like.this, expression=like.expression))
    return tree


def _is_text(node: exp.Expr) -> bool:
    return node.type is not None and node.is_type(*exp.DataType.TEXT_TYPES)


def _is_number(node: exp.Expr) -> bool:
    return node.type is not None and node.is_type(*exp.DataType.NUMERIC_TYPES)


_NUMBER_PATTERN = r"^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"


def _to_number(node: exp.Expr, ctx: Context, otherwise: exp.Expr | None = None) -> exp.Expr:
    """Text read as a number where it is one (SQLite's numeric affinity); `otherwise` (NULL by
    default) where it is not. DuckDB has TRY_CAST; PostgreSQL checks the text with a pattern first."""
    double = exp.DataType.build("double")
    if ctx.dialect == "duckdb":
        number: exp.Expr = exp.TryCast(this=node.copy(), to=double)
        if otherwise is not None:
            number = exp.Coalesce(this=number, expressions=[otherwise])
    else:
        is_number = exp.RegexpLike(this=node.copy(), expression=exp.Literal.string(_NUMBER_PATTERN))
        number = exp.Case(ifs=[exp.If(this=is_number, true=exp.Cast(this=node.copy(), to=double))])
        if otherwise is not None:
            number.set("default", otherwise)
    if otherwise is None:
        return number
    return exp.Case(
        ifs=[exp.If(this=exp.Is(this=node.copy(), expression=exp.Null()), true=exp.Null())], default=number
    )


def _to_text(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Literal) and not node.is_string:
        return exp.Literal.string(node.name)
    return exp.Cast(this=node.copy(), to=exp.DataType.build("text"))


_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)


def comparisons_follow_affinity(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """SQLite compares a TEXT column with a number by its affinity rules (sqlite.org/datatype3.html
    §4.2): against another column of numeric type the text is read as a number; against an
    expression or literal the number becomes text (`age < 5` compares '10' and '5' as text). The
    targets refuse to compare text with numbers, so the conversion is written out."""
    if not ctx.typed:
        return tree
    for cmp in list(tree.find_all(*_COMPARISONS)):
        left, right = cmp.left, cmp.right
        for text, other in ((left, right), (right, left)):
            if isinstance(text, exp.Column) and _is_text(text) and _is_number(other):
                if isinstance(other, exp.Column):
                    text.replace(_to_number(text, ctx))
                else:
                    other.replace(_to_text(other))
                break
    for node in list(tree.find_all(exp.In)):
        query = node.args.get("query")
        inner = query.unnest() if query is not None else None
        if isinstance(inner, exp.Select) and len(inner.expressions) == 1:
            subject, item = node.this, inner.expressions[0]
            value = item.unalias()
            if isinstance(subject, exp.Column) and isinstance(value, exp.Column):
                if _is_number(subject) and _is_text(value):
                    value.replace(_to_number(value, ctx))
                elif _is_text(subject) and _is_number(value):
                    subject.replace(_to_number(subject, ctx))
    for check in list(tree.find_all(exp.In, exp.Between)):
        subject = check.this
        if isinstance(subject, exp.Column) and _is_text(subject):
            items = (
                check.expressions if isinstance(check, exp.In) else [check.args["low"], check.args["high"]]
            )
            for item in items:
                if _is_number(item) and not isinstance(item, exp.Column):
                    item.replace(_to_text(item))
    return tree


def numeric_aggregates_read_text_as_numbers(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """SQLite's avg() and sum() read text as numbers; the targets refuse text."""
    if not ctx.typed:
        return tree
    for agg in list(tree.find_all(exp.Avg, exp.Sum)):
        if _is_text(agg.this):  # text that is no number counts as 0
            agg.this.replace(_to_number(agg.this, ctx, otherwise=exp.Literal.number(0)))
    return tree


def bare_columns_take_one_row(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """SQLite lets a grouped query name columns that are neither grouped nor aggregated ("bare
    columns", sqlite.org/lang_select.html §2.5): with a min() or max() in the query they come from
    the row holding that min or max, otherwise from some row of the group. The targets refuse them,
    so each is wrapped: the min/max row's value (DuckDB ARG_MAX/ARG_MIN, PostgreSQL the first of
    an ordered ARRAY_AGG), else any value of the group."""
    for select in list(tree.find_all(exp.Select)):
        group = select.args.get("group")
        parts = [*select.expressions, select.args.get("having"), select.args.get("order")]
        parts = [p for p in parts if p is not None]
        aggs = [
            a
            for p in parts
            for a in p.find_all(exp.AggFunc)
            if _own(a, select) and not a.find_ancestor(exp.Window)
        ]
        if not group and not aggs:
            continue
        grouped = _grouped_keys(select)
        extreme = next((a for a in aggs if isinstance(a, (exp.Max, exp.Min))), None)
        aliases = {e.alias.lower() for e in select.expressions if e.alias}
        for part in parts:
            for col in list(part.find_all(exp.Column)):
                if not _own(col, select) or _in_aggregate(col, select) or _is_grouped(col, grouped, part):
                    continue
                if not col.table and col.name.lower() in aliases:
                    continue  # ORDER BY an output column
                col.replace(_one_value(col, extreme, ctx))
    return tree


def _grouped_keys(select: exp.Select) -> set[str]:
    group = select.args.get("group")
    keys: set[str] = set()
    if not group:
        return keys
    outputs = select.expressions
    by_alias = {e.alias.lower(): e.unalias() for e in outputs if e.alias}
    for g in group.expressions:
        target = g
        if isinstance(g, exp.Literal) and g.is_int and 0 < int(g.name) <= len(outputs):
            target = outputs[int(g.name) - 1].unalias()
        elif isinstance(g, exp.Column) and not g.table and g.name.lower() in by_alias:
            target = by_alias[g.name.lower()]
        keys.add(_key(target))
        if isinstance(target, exp.Column):
            keys.add(target.name.lower())  # the column by name, however it is qualified
    return keys


def _key(node: exp.Expr) -> str:
    return node.sql(dialect="sqlite").lower()


def _is_grouped(col: exp.Column, keys: set[str], stop: exp.Expr) -> bool:
    if col.name.lower() in keys:  # by name: T1.id and id are the same grouped column
        return True
    node: exp.Expr | None = col.parent
    while node is not None and node is not stop.parent:
        if _key(node) in keys:
            return True
        node = node.parent
    return False


def _in_aggregate(col: exp.Column, select: exp.Select) -> bool:
    node = col.find_ancestor(exp.AggFunc, exp.Select, exp.Window)
    return isinstance(node, (exp.AggFunc, exp.Window)) and _own(node, select)


def _one_value(col: exp.Column, extreme: exp.Expr | None, ctx: Context) -> exp.Expr:
    value = col.copy()
    if ctx.dialect == "duckdb":
        if extreme is None:
            return exp.Anonymous(this="ANY_VALUE", expressions=[value])
        name = "ARG_MAX_NULL" if isinstance(extreme, exp.Max) else "ARG_MIN_NULL"
        return exp.Anonymous(this=name, expressions=[value, extreme.this.copy()])
    order = None
    if extreme is not None:
        desc = isinstance(extreme, exp.Max)
        order = exp.Order(expressions=[exp.Ordered(this=extreme.this.copy(), desc=desc, nulls_first=False)])
    agg = exp.ArrayAgg(this=exp.Order(this=value, expressions=order.expressions) if order else value)
    return exp.Bracket(this=exp.Paren(this=agg), expressions=[exp.Literal.number(1)], offset=1)


def names_as_the_schema_spells_them(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """SQLite matches names ignoring case, quoted or not; PostgreSQL folds unquoted names to lower
    case and matches quoted ones exactly. Table and column names take the schema's spelling, quoted."""
    if not ctx.tables:
        return tree
    sources = {}  # alias or name (lowercase) → the table's lowercase name
    for table in tree.find_all(exp.Table):
        sources[(table.alias or table.name).lower()] = table.name.lower()
    anywhere: dict[str, str] = {}
    for cols in ctx.columns.values():
        for low, spelled in cols.items():
            anywhere.setdefault(low, spelled)
    for table in list(tree.find_all(exp.Table)):
        table_name = ctx.tables.get(table.name.lower())
        if table_name is not None and isinstance(table.this, exp.Identifier):
            table.set("this", exp.Identifier(this=table_name, quoted=True))
    for col in list(tree.find_all(exp.Column)):
        if not isinstance(col.this, exp.Identifier):
            continue
        own = ctx.columns.get(sources.get(col.table.lower(), ""), {}) if col.table else {}
        column_name = own.get(col.name.lower()) or (
            None if col.table and own else anywhere.get(col.name.lower())
        )
        if column_name is not None:
            col.set("this", exp.Identifier(this=column_name, quoted=True))
    return tree


def scan_order_breaks_ties(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """SQLite's ORDER BY keeps rows that tie in the order it read them: rowid order of the first
    table, then of each joined one (when its plan follows the FROM order, as it mostly does on
    these benchmarks); the targets' sorts are not stable. A query without grouping gets each
    table's row position as the last ORDER BY terms (DuckDB `rowid`, PostgreSQL `ctid`: the copy
    holds the rows in SQLite's rowid order)."""
    position = "rowid" if ctx.dialect == "duckdb" else "ctid"
    for select in list(tree.find_all(exp.Select)):
        order, source = select.args.get("order"), select.args.get("from_")
        joins = select.args.get("joins") or []
        tables = [source.this] if source is not None else []
        tables += [j.this for j in joins]
        if (
            not order
            or not tables
            or not all(isinstance(t, exp.Table) for t in tables)
            or any(j.side or j.kind not in ("", "INNER") for j in joins)
            or select.args.get("group")
            or select.args.get("distinct")
            or any(isinstance(o.this, exp.Literal) for o in order.expressions)
            or any(a for e in select.expressions for a in e.find_all(exp.AggFunc) if _own(a, select))
        ):
            continue
        for table in tables:
            order.append(
                "expressions",
                exp.Ordered(this=exp.column(position, table=table.alias_or_name), nulls_first=True),
            )
    return tree


_JULIAN = {  # the Julian day number with its fraction; both engines count from midnight, SQLite from noon
    "duckdb": "JULIAN(CAST(x AS TIMESTAMP)) - 0.5",
    "postgres": "CAST(EXTRACT(JULIAN FROM CAST(x AS TIMESTAMP)) AS DOUBLE PRECISION) - 0.5",
}


def julianday_has_an_equivalent(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """SQLite's julianday() has no function of that name in the targets (sqlglot passes it through):
    DuckDB's julian() and PostgreSQL's EXTRACT(JULIAN …), less the half day by which they differ."""
    for func in list(tree.find_all(exp.Anonymous)):
        if func.name.lower() == "julianday" and len(func.expressions) == 1:
            template = sqlglot.parse_one(_JULIAN[ctx.dialect], read=ctx.dialect)
            template.find(exp.Column).replace(func.expressions[0].copy())  # type: ignore[union-attr]
            func.replace(exp.Paren(this=template))
    return tree


def group_order_breaks_ties(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """SQLite returns the groups of a grouped query in the order of their keys, and its ORDER BY
    mostly keeps that order among ties - ascending, or descending when the last ORDER BY term is
    DESC (measured on SQLite 3.40, when the grouping sorts; when it reads an index instead, ties
    stay ascending). The targets order ties at random, so `ORDER BY count(*) DESC LIMIT 1` may
    pick another group: the group keys are appended to the ORDER BY."""
    for select in list(tree.find_all(exp.Select)):
        group, order = select.args.get("group"), select.args.get("order")
        if not group or not order or not order.expressions:
            continue
        desc = bool(order.expressions[-1].args.get("desc"))
        present = {_key(o.this) for o in order.expressions}
        for key in group.expressions:
            if isinstance(key, exp.Literal) or _key(key) in present:
                continue
            order.append("expressions", exp.Ordered(this=key.copy(), desc=desc, nulls_first=not desc))
    return tree


REWRITES: list[Rewrite] = [
    sqlite_only_features_are_refused,
    double_quotes_are_strings,
    qualify_and_type,
    like_ignores_case,
    julianday_has_an_equivalent,
    comparisons_follow_affinity,
    numeric_aggregates_read_text_as_numbers,
    group_order_breaks_ties,
    bare_columns_take_one_row,
    scan_order_breaks_ties,
    names_as_the_schema_spells_them,
]
