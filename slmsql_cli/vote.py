"""Self-consistency: candidates that return the same rows vote for one answer.

CSC-SQL (`infer_utils.major_voting2`) groups candidates by `frozenset(rows)`: row order and
duplicate rows don't matter, column order does. A group keeps the SQL of its first member, and
the winner is the first group (in sampling order) with the most votes. Candidates without SQL,
with an error or with a timeout get no vote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from slmsql_cli.targets.result import ExecResult


@dataclass
class Candidate:
    text: str  # the whole completion
    sql: str | None  # extract_sql(text)
    result: ExecResult | None  # None when there was no SQL to run
    finish_reason: str = ""  # why its text ended (engine_protocol.Completion); "" for a saved answer


@dataclass
class Group:
    sql: str  # the first member's SQL
    result: ExecResult  # the first member's result
    members: list[int] = field(default_factory=list)  # indices into the candidate list

    @property
    def votes(self) -> int:
        return len(self.members)


def vote(candidates: Sequence[Candidate]) -> list[Group]:
    """Groups of candidates with equal results, most votes first; ties keep first-appearance order."""
    groups: dict[frozenset, Group] = {}
    for i, cand in enumerate(candidates):
        if cand.sql is None or cand.result is None or not cand.result.ok:
            continue
        key = cand.result.key()
        if key in groups:
            groups[key].members.append(i)
        else:
            groups[key] = Group(sql=cand.sql, result=cand.result, members=[i])
    # sorted() is stable and dicts keep insertion order, so equal votes stay in order of first appearance.
    return sorted(groups.values(), key=lambda g: -g.votes)


def candidate_dicts(
    candidates: Sequence[Candidate], groups: Sequence[Group], *, text: bool = True
) -> list[dict[str, Any]]:
    """Each candidate as `ask --json` and `eval --out` record it: its SQL, the group it voted for
    (an index into `groups`, None without a vote), that group's votes, why it got no vote
    ("no SQL", "timeout" or the SQLite error; None when it ran), why its text ended (`finish_reason`)
    and, with `text`, the completion."""
    group_of = {i: g for g, grp in enumerate(groups) for i in grp.members}
    out = []
    for i, c in enumerate(candidates):
        g = group_of.get(i)
        record: dict[str, Any] = {
            "sql": c.sql,
            "group": g,
            "votes": groups[g].votes if g is not None else 0,
            "error": failure(c),
            # "constrained": --constrain left it no admissible token, so it ended there
            "finish_reason": c.finish_reason or None,
        }
        if text:
            record["text"] = c.text
        out.append(record)
    return out


def failure(candidate: Candidate) -> str | None:
    """Why a candidate gets no vote, in a few words; None when its SQL ran."""
    result = candidate.result
    if candidate.sql is None or result is None:
        return "no SQL"
    if result.ok:
        return None
    return "timeout" if result.timed_out else result.error
