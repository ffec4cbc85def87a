"""Shrink a schema that does not fit the prompt budget to the tables the question is about.

The full schema is always preferred (the models were trained on full schemas); this runs only
when the prompt would exceed the prompt budget (`prompts.PROMPT_BUDGET`) or the context. Tables
are ranked by how much of the question's wording they share (table and column names, column
comments) and by the values the question mentions. The question's tables are those whose name
shares a word with it or that hold a value it mentions (failing any, those sharing any word, even
a column name's; failing that too - a question in another language than the schema's, say - all
tables in schema order). They are kept whole (their keys included), best first, each with the
tables its foreign keys point to so that the joins the model needs stay expressible, until the
budget is spent - and no further: tables the question does not name are not added just because
there is room (a shorter prompt is faster, and the models were trained on far smaller schemas
than a 300-table database).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from slmsql_cli.schema import Schema, Table

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _words(text: str) -> set[str]:
    out = set()
    for w in _WORD.findall(text.lower()):
        out.add(w)
        if len(w) > 3 and w.endswith("s"):
            out.add(w[:-1])  # plural to singular, crudely: "albums" finds "album"
    return out


def _split_identifier(name: str) -> str:
    return re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("_", " ")


def rank_tables(schema: Schema, question: str, matched_values: dict[tuple[str, str], list[Any]]) -> list[str]:
    """Table names, most relevant to the question first (ties keep schema order)."""
    return [name for name, _score, _named in _ranked(schema, question, matched_values)]


def choose_tables(
    schema: Schema,
    question: str,
    matched_values: dict[tuple[str, str], list[Any]],
    cost: Callable[[str], int],
    room: int,
) -> list[str]:
    """The tables to show, for `keep_tables`: the question's tables best first, each with the
    tables its foreign keys reference, while their summed `cost` (tokens of a table's block)
    stays within `room`; the first that would overflow ends the list. `cost` is called once per
    table considered, never for the whole prompt."""
    ranked = _ranked(schema, question, matched_values)
    relevant = (
        [name for name, _score, named in ranked if named]
        or [name for name, score, _named in ranked if score > 0]
        or [name for name, _score, _named in ranked]
    )
    by_name = {t.name.lower(): t for t in schema.tables}
    kept: list[str] = []
    shown: set[str] = set()
    spent = 0
    for name in relevant:
        new = [t for t in _with_references(by_name, name) if t not in shown]
        extra = sum(cost(t) for t in new)
        if spent + extra > room:
            break
        kept.append(name)
        shown.update(new)
        spent += extra
    return kept


def _with_references(by_name: dict[str, Table], name: str) -> list[str]:
    """`name` and the tables its foreign keys reference, as `keep_tables` adds them."""
    table = by_name[name.lower()]
    refs = [
        by_name[fk.ref_table.lower()].name for fk in table.foreign_keys if fk.ref_table.lower() in by_name
    ]
    return list(dict.fromkeys([table.name, *refs]))


def _ranked(
    schema: Schema, question: str, matched_values: dict[tuple[str, str], list[Any]]
) -> list[tuple[str, float, bool]]:
    """(table, score, named) best first; named: the table's name shares a word with the question
    or the table holds a value the question mentions."""
    q = _words(question)
    valued = {t.lower() for (t, _c), vals in matched_values.items() if vals}
    scores: dict[str, float] = {}
    named: set[str] = set()
    for table in schema.tables:
        in_name = len(q & _words(_split_identifier(table.name)))
        score = 3.0 * in_name
        for col in table.columns:
            score += len(q & _words(_split_identifier(col.name) + " " + col.comment))
        if table.name.lower() in valued:
            score += 5.0
        if in_name or table.name.lower() in valued:
            named.add(table.name)
        scores[table.name] = score
    # A table linked by a foreign key to a relevant one is likely needed for the join.
    for table in schema.tables:
        for fk in table.foreign_keys:
            if scores.get(fk.ref_table, 0) > 0:
                scores[table.name] += 0.5
            if scores[table.name] > 0 and fk.ref_table in scores:
                scores[fk.ref_table] += 0.5
    order = {t.name: i for i, t in enumerate(schema.tables)}
    best_first = sorted(scores, key=lambda name: (-scores[name], order[name]))
    return [(name, scores[name], name in named) for name in best_first]


def keep_tables(schema: Schema, names: list[str]) -> Schema:
    """The schema restricted to `names` plus the tables their foreign keys reference, in schema order."""
    wanted = {n.lower() for n in names}
    by_name = {t.name.lower(): t for t in schema.tables}
    for name in list(wanted):
        table = by_name.get(name)
        for fk in table.foreign_keys if table else []:
            wanted.add(fk.ref_table.lower())
    tables: list[Table] = [t for t in schema.tables if t.name.lower() in wanted]
    return Schema(schema.db_id, tables)
