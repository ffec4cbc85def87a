"""The values a question names that the database's value index lacks (`confidence`'s
`unmatched_values` flag): found by the pipeline once per question, while it still has the values
the question matched, and carried on the `Answer`.

A value the question names is text in quotes, or a run of capitalised words that does not start
a sentence. The index holds values of at most 40 characters, and a bounded number per column
(`values.py`), so the flag's reason says it is the index that lacks a value, not the database.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from slmsql_cli.values import is_indexable

if TYPE_CHECKING:
    from slmsql_cli.database import Database, Values


# A value the question names: text in quotes, or a run of capitalised words that does not start
# a sentence ("How many albums did AC/DC release in New York?" → AC/DC, New York).
_QUOTED = re.compile(r"\"([^\"]+)\"|“([^”]+)”|‘([^’]+)’|(?<!\w)'([^']+)'(?!\w)")
_CAPITALISED = re.compile(r"(?<![.?!]\s)(?<!^)\b([A-Z][\w/&'-]*(?:\s+[A-Z][\w/&'-]*)*)")


def question_values(question: str) -> list[str]:
    """The values a question names, by the rule above, in order and without repeats."""
    found = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(question)]
    unquoted = _QUOTED.sub(" ", question).strip()
    found += [m.group(1) for m in _CAPITALISED.finditer(unquoted) if m.group(1) != "I"]
    return list(dict.fromkeys(v.strip() for v in found if v.strip()))


def _name_form(text: str) -> str:
    """A name as a question may write it: `tv_channel` ~ "TV Channels", `Student_Club` ~ "student club"."""
    return re.sub(r"[\s_]+", " ", text.casefold()).strip().rstrip("s")


def unmatched_values(db: Database, question: str, matched: Values) -> list[str]:
    """The values the question names that no value in the database's value index contains: not
    among the values the question already matched (`matched`, from the index), not contained in
    an indexed value nor containing one, and not the name of the database, a table or a column.
    Numbers (not indexed) and single characters are skipped. (The index holds values of at most 40 characters, and a
    bounded number per column: `values.py`; the flag's reason says it is the index that lacks it.)"""
    names = {db.db_id, Path(db.name).stem} | {
        n for t in db.schema.tables for n in (t.name, *(c.name for c in t.columns))
    }
    forms = {_name_form(n) for n in names if n}
    found = [str(v).lower() for values in matched.values() for v in values]
    missing = []
    for value in question_values(question):
        low = value.lower()
        if len(value) < 2 or not is_indexable(value) or _name_form(value) in forms:
            continue
        hits = found + [hit[1].lower() for hit in db.index.search(value)]
        if any(low in v or (len(v) >= 3 and v in low) for v in hits):
            continue
        missing.append(value)
    return missing
