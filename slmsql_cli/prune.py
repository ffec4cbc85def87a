"""Shrink a schema that does not fit the model's context to the tables the question is about.

The full schema is always preferred (the models were trained on full schemas); this runs only
when prompt + generation would overflow the context. Tables are ranked by how much of the
question's wording they share (table and column names, column comments) and by the values the
question mentions; the top tables are kept whole (their keys included), then tables that their
foreign keys point to, so that the joins the model needs stay expressible.
"""

from __future__ import annotations

import re
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
    q = _words(question)
    valued = {t.lower() for (t, _c), vals in matched_values.items() if vals}
    scores: dict[str, float] = {}
    for table in schema.tables:
        score = 3.0 * len(q & _words(_split_identifier(table.name)))
        for col in table.columns:
            score += len(q & _words(_split_identifier(col.name) + " " + col.comment))
        if table.name.lower() in valued:
            score += 5.0
        scores[table.name] = score
    # A table linked by a foreign key to a relevant one is likely needed for the join.
    for table in schema.tables:
        for fk in table.foreign_keys:
            if scores.get(fk.ref_table, 0) > 0:
                scores[table.name] += 0.5
            if scores[table.name] > 0 and fk.ref_table in scores:
                scores[fk.ref_table] += 0.5
    order = {t.name: i for i, t in enumerate(schema.tables)}
    return sorted(scores, key=lambda name: (-scores[name], order[name]))


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
