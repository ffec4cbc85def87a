"""CSC-SQL corrective merge: when the vote is split, a merge model sees the top two drafts.

The pieces follow CSC-SQL's `csc_sql/src/cscsql/utils/common_utils.py` (`build_merge_generate_prompt`,
`execute_batch_vote_sql_to_result`; github.com/CycloneBoy/csc_sql, arXiv 2505.13271), so the merge
model reads the text it was trained on: results rendered by `normal_execute_result`, and the
schema pruned by `build_link_table_from_ddl` / `build_schema_link_columns` to the tables and
columns the two drafts use.

Two reference defects are fixed on purpose in `needs_merge`:

* Tied top groups. The reference's top-2 loop points both slots at the same group when the two
  largest groups have equal votes, so an exact tie - the least certain vote there is - was never
  merged. Here any two groups with different results are merged, tied or not.
* CTEs. The reference merges only drafts that start with `select`, so a draft starting with
  `WITH` was never revised. Here every draft that executed (SELECT, WITH … SELECT, VALUES) counts.

Two smaller deviations in `prune_ddl`: a backquoted table name (`` `Order` ``) matches its draft
(the reference compared it with the backquotes on, and dropped it), and a table a draft reads
without naming a column (`SELECT count(*) FROM t`) is kept whole (the reference lost it).
"""

from __future__ import annotations

from collections.abc import Sequence

from slmsql_cli.prompts import merge_prompt
from slmsql_cli.schema import Schema
from slmsql_cli.targets.result import ExecResult
from slmsql_cli.vote import Group

RESULT_CHARS = 1000  # normal_execute_result: longer results are cut here
RESULT_ROWS = 20
_TABLE_SPLIT = "CREATE TABLE "


def needs_merge(groups: Sequence[Group]) -> bool:
    """True when at least two groups disagree: there is something for the merge model to settle."""
    return len(groups) >= 2 and groups[0].result.key() != groups[1].result.key()


def merge_message(
    db_details: str, schema: Schema, question: str, evidence: str, groups: Sequence[Group]
) -> str:
    """The merge user message for the two largest groups, as `ask` sends it and `train` trains on it:
    `db_details` (the whole schema's block with the question's values, `prompt_builder.schema_block`)
    pruned to what the two drafts use (`schema` resolves their columns), both drafts with their results."""
    drafts = top_drafts(groups)
    return merge_prompt(prune_ddl(db_details, [sql for sql, _ in drafts], schema), question, evidence, drafts)


def top_drafts(groups: Sequence[Group]) -> list[tuple[str, str]]:
    """The (SQL, result text) pairs of the two largest groups, as the merge prompt lists them."""
    return [(g.sql, format_result(g.result)) for g in groups[:2]]


def format_result(result: ExecResult) -> str:
    """A draft's result as the merge prompt shows it (reference `normal_execute_result`).

    The repr of the fetched rows; more than 20 rows become "The execution results of the first
    twenty columns are: …" (the reference says columns and means rows); anything longer than
    1000 characters is cut and gets "...".
    """
    if result.timed_out:
        text = "execute sql timeout. "
    elif result.error is not None:
        text = f"execute sql error message: {result.error}"
    else:
        rows = list(result.rows)
        text = repr(rows)
        if len(rows) > RESULT_ROWS:
            head = repr(rows[:RESULT_ROWS])
            if len(head) > RESULT_CHARS:
                head = head[:RESULT_CHARS] + "...]"
            text = f"The execution results of the first twenty columns are: {head}"
    if len(text) > RESULT_CHARS:
        text = text[:RESULT_CHARS] + "..."
    return text


def prune_ddl(db_details: str, sqls: Sequence[str], schema: Schema | None = None) -> str:
    """`db_details` (the "Database Schema" DDL block) cut to what the drafts use.

    Kept: the tables either draft reads; inside them the columns either draft names, every
    PRIMARY KEY / FOREIGN KEY line, and each CREATE TABLE's first and last lines. Table order
    and line text are untouched. When no table can be resolved the full block comes back.

    The reference cut the block out of the prompt with the newline before and after it; a kept
    table that was not the last one therefore still ends in a blank line, and so does the result.
    The merge model was trained on that, so it is reproduced.
    """
    parts = f"\n{db_details}\n".split(_TABLE_SPLIT)
    blocks = {_table_name(p).lower(): p for p in parts[1:] if "(" in p}
    if not blocks:
        return db_details
    columns = (
        _schema_columns(schema) if schema is not None else {t: _ddl_columns(p) for t, p in blocks.items()}
    )
    used: dict[str, set[str]] = {}
    for sql in sqls:
        for table, cols in referenced_columns(sql, columns).items():
            used.setdefault(table, set()).update(cols)
    kept = [_prune_block(blocks[t], used[t]) for t in blocks if t in used]
    if not kept:
        return db_details
    return f"{_TABLE_SPLIT}{_TABLE_SPLIT.join(kept)}".removesuffix("\n")


def referenced_columns(sql: str, columns: dict[str, list[str]]) -> dict[str, set[str]]:
    """{table: {column, ...}} that `sql` reads, lower-cased; tables outside `columns` are ignored.

    sqlglot's `qualify` resolves aliases and unqualified columns against the schema; scopes keep
    a subquery's or CTE's columns apart from the outer query's. A table read without naming any
    column maps to an empty set.
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.optimizer.scope import traverse_scope

    known = {t.lower(): {c.lower() for c in cols} for t, cols in columns.items()}
    mapping: dict[str, object] = {t: {c: "TEXT" for c in cols} for t, cols in known.items()}
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
        tree = qualify(
            tree, schema=mapping, dialect="sqlite", validate_qualify_columns=False, quote_identifiers=False
        )
        scopes = traverse_scope(tree)
    except Exception:  # unparseable draft: it contributes nothing
        return {}
    used: dict[str, set[str]] = {}
    for table in tree.find_all(exp.Table):
        if table.name.lower() in known:
            used.setdefault(table.name.lower(), set())
    for scope in scopes:
        for column in scope.columns:
            source = scope.sources.get(column.table)
            if isinstance(source, exp.Table) and source.name.lower() in known:
                name = column.name.lower()
                if name in known[source.name.lower()]:
                    used.setdefault(source.name.lower(), set()).add(name)
    return used


def _table_name(part: str) -> str:
    return part.split("(", 1)[0].strip().strip('`"[]')


def _column_name(line: str) -> str:
    """The column a DDL line defines: `    name type, -- …` or `` `odd name` type, … ``."""
    text = line.strip()
    if text.startswith("`"):
        return text[1:].split("`", 1)[0]
    return text.split(" ", 1)[0].rstrip(",")


def _ddl_columns(block: str) -> list[str]:
    lines = block.split("\n")[1:-1]
    return [
        _column_name(ln)
        for ln in lines
        if ln.strip() and not _is_key_line(ln) and not ln.strip().startswith(")")
    ]


def _schema_columns(schema: Schema) -> dict[str, list[str]]:
    return {t.name.lower(): [c.name for c in t.columns] for t in schema.tables}


def _is_key_line(line: str) -> bool:
    upper = line.upper()
    return "PRIMARY KEY" in upper or "FOREIGN KEY" in upper


def _prune_block(block: str, keep: set[str]) -> str:
    """One table's DDL with only the `keep` columns (reference `build_schema_link_columns`)."""
    if not keep:
        return block
    lines = block.split("\n")
    out = []
    for i, line in enumerate(lines):
        text = line.strip()
        # Lines that are not "name type, ..." (the closing ");", blank lines, a comma-less last
        # column) are kept, as the reference keeps them.
        if i in (0, len(lines) - 1) or _is_key_line(line) or not (len(text) > 2 and "," in text):
            out.append(line)
        elif _column_name(line).lower() in keep:
            out.append(line)
    return "\n".join(out)
