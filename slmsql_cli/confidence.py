"""How sure an answer is, from what the run already knows: no model, no extra query.

Every surface shows the same thing: how many candidates agreed, whether the merge model changed
the answer, and a flag for each sign that the result deserves a second look:

* `no_result`: there is no result to trust at all (no SQL, or none that ran: `Answer.failure`);
* `empty`: the query ran and returned no row;
* `all_null`: every value of the result is NULL;
* `row_cap`: a query without LIMIT stopped at the row (or size) cap, so the rows are not all there;
* `split_vote`: the winning group has no majority of the round that produced the answer;
* `unmatched_values`: a value the question names (in quotes, or a capitalised name inside a
  sentence) matches nothing in the database's value index (which holds short values only, so
  the reason names the index, not the whole database): `unmatched.py` finds them, while the
  pipeline still has the question's matched values, and the answer carries them here.

The flags are hints for a person, not a verdict: the exit code does not change with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slmsql_cli.answer import Answer

FLAG_CODES = ("no_result", "empty", "all_null", "row_cap", "split_vote", "unmatched_values")


@dataclass(frozen=True)
class Flag:
    code: str  # one of FLAG_CODES
    reason: str  # in words, for the person reading the answer


@dataclass
class Confidence:
    votes: int  # candidates (or revisions) that returned the answer's rows
    sampled: int  # candidates (or revisions) of the round that produced the answer
    merged: bool  # the answer is the merge model's revision
    merge_changed: bool  # ... and it returns other rows than the vote before the merge
    flags: list[Flag] = field(default_factory=list)
    saved_id: int | None = None  # a saved answer's SQL, run again: no vote behind it

    @property
    def line(self) -> str:
        """The one line the table view prints (the vote count is on the summary line above it)."""
        merge = ""
        if self.merged:
            merge = (
                " · the merge model changed the voted answer"
                if self.merge_changed
                else " · the merge model kept the voted answer"
            )
        if self.saved_id is not None:
            merge = f" · saved answer #{self.saved_id}, kept by a person"
        if not self.flags:
            return f"confidence: no warning signs{merge}"
        return f"check this answer: {'; '.join(f.reason for f in self.flags)}{merge}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "votes": self.votes,
            "sampled": self.sampled,
            "merged": self.merged,
            "merge_changed": self.merge_changed,
            "flags": [{"code": f.code, "reason": f.reason} for f in self.flags],
            "saved_answer": self.saved_id,
            "summary": self.line,
        }


def assess(answer: Answer) -> Confidence:
    """The confidence of an answer, read from its rounds and result."""
    votes, sampled = answer.agreement
    generated, revision = answer.generation.winner, answer.revision.winner if answer.revision else None
    changed = bool(
        answer.merged
        and revision is not None
        and (generated is None or generated.result.key() != revision.result.key())
    )
    flags: list[Flag] = []
    result = answer.result
    if answer.failure:
        flags.append(Flag("no_result", answer.failure))
    if result is not None and result.ok:
        if not result.rows:
            flags.append(Flag("empty", "the result is empty"))
        elif all(value is None for row in result.rows for value in row):
            flags.append(Flag("all_null", "every value in the result is NULL"))
        if result.truncated and answer.sql and not has_limit(answer.sql):
            flags.append(
                Flag(
                    "row_cap",
                    f"the query has no LIMIT and stopped at the row cap ({len(result.rows):,} rows)",
                )
            )
    if sampled > 1 and votes and votes * 2 <= sampled:
        flags.append(Flag("split_vote", f"the vote was split: only {votes} of {sampled} agreed"))
    if answer.unmatched_values:
        named = ", ".join(f"'{v}'" for v in answer.unmatched_values)
        flags.append(
            Flag(
                "unmatched_values",
                f"the question names {named}, which no value in the database's value index contains",
            )
        )
    return Confidence(votes, sampled, answer.merged, changed, flags, answer.saved_id)


def has_limit(sql: str) -> bool:
    """Whether the statement's outermost query has a LIMIT (unparseable SQL counts as having one:
    no flag is raised on a guess)."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except Exception:
        return True
    while isinstance(tree, exp.Subquery):
        tree = tree.this
    return tree.args.get("limit") is not None or not isinstance(tree, exp.Query)
