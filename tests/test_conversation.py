"""Follow-up renderings (issue 29): a single question is today's prompt byte for byte; earlier
turns go into the question field in the chosen rendering; the oldest are dropped first."""

from __future__ import annotations

import pytest

from slmsql_cli.conversation import MAX_TURNS, RENDERINGS, Turn, fit, render
from slmsql_cli.prompts import question_text

TURNS = [Turn("Which albums sold best?", "SELECT title FROM albums ORDER BY sales DESC"), Turn("only rock")]


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_a_single_question_is_unchanged(rendering: str) -> None:
    r = render("How many singers?", "singer means a row of singer", [], rendering)
    assert (r.question, r.evidence, r.used, r.dropped) == (
        "How many singers?",
        "singer means a row of singer",
        (),
        0,
    )


def test_none_ignores_the_turns_and_says_so() -> None:
    r = render("and who played?", "", TURNS, "none")
    assert (r.question, r.evidence, r.used, r.dropped) == ("and who played?", "", (), 2)


def test_questions_are_joined_oldest_first() -> None:
    r = render("and who played on them?", "", TURNS, "questions")
    assert r.question == "Which albums sold best? only rock and who played on them?"
    assert r.evidence == "" and r.used == tuple(TURNS)


def test_evidence_holds_the_earlier_questions_and_their_sql_before_the_own_evidence() -> None:
    r = render("and who played on them?", "rock is a genre", TURNS, "evidence")
    assert r.question == "and who played on them?"
    assert question_text(r.question, r.evidence) == (
        "Previous question: Which albums sold best?\n"
        "Its SQL: SELECT title FROM albums ORDER BY sales DESC\n"
        "Previous question: only rock\n"
        "rock is a genre\n"
        "and who played on them?"
    )


def test_at_most_max_turns_are_kept() -> None:
    many = [Turn(f"q{i}") for i in range(MAX_TURNS + 3)]
    r = render("last", "", many, "questions")
    assert r.dropped == 3 and r.used == tuple(many[3:])


def test_fit_drops_the_oldest_turns_first() -> None:
    turns = [Turn("first question"), Turn("second question"), Turn("third")]
    r = fit("now?", "", turns, "questions", lambda r: len(r.question) <= 30)
    assert r.question == "second question third now?" and r.dropped == 1
    alone = fit("now?", "", turns, "questions", lambda r: False)
    assert alone.question == "now?" and alone.used == () and alone.dropped == 3


def test_an_unknown_rendering_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown rendering"):
        render("q", "", TURNS, "sparc")
