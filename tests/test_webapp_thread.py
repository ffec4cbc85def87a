"""The web page carries a conversation (issue 29), in headless Chromium: a second question follows
the first (the model is given both), the page shows the thread and marks the follow-up, and
"New question" starts over. The server is the real app on uvicorn in this process with the
scripted engine standing for the model (as in test_webapp_chart.py), which records the prompts it
is given. The screenshot is kept in tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the [serve] extra")

import playwright.sync_api as playwright
from browser import ARTIFACTS, chromium_page, needs_chromium, serving

from slmsql_cli.pipeline import AskConfig, Pipeline
from slmsql_cli.scripted import ScriptedEngine
from slmsql_cli.serve.registry import Registry
from slmsql_cli.serve.service import Service

pytestmark = needs_chromium
COUNT = "SELECT count(*) AS pets FROM pets"
CATS = "SELECT count(*) AS cats FROM pets WHERE kind = 'cat'"
AGES = "SELECT name, age FROM pets"


def said(sql: str) -> str:
    return f"<think>\nWrite it.\n</think>\n<answer>\n{sql}\n</answer>"


@pytest.fixture()
def served(pets_db: Path, scripted_engine) -> Iterator[tuple[str, ScriptedEngine]]:
    engine = scripted_engine([said(COUNT)] * 2 + [said(CATS)] * 2 + [said(AGES)] * 2)
    service = Service(
        Pipeline.load("scripted", config=AskConfig(n=2, merge=False)),
        Registry.open([f"pets={pets_db}"]),
        model_name="scripted",
        load_seconds=0.0,
    )
    with serving(service) as url:
        yield url, engine


def asked(prompt: str) -> str:
    return prompt.split("Question:\n", 1)[1].split("\n\nInstructions:", 1)[0]


def test_the_page_follows_up_shows_the_thread_and_starts_over(served, tmp_path: Path) -> None:
    url, engine = served
    expect = playwright.expect
    with chromium_page(tmp_path / "chromium-profile", height=1200) as page:
        page.goto(url)
        expect(page.get_by_label("Database")).to_have_value("pets")
        expect(page.locator("#thread-box")).to_be_hidden()  # nothing asked yet

        def ask(question: str) -> None:
            page.get_by_label("Question").fill(question)
            page.get_by_role("button", name="Ask").click()
            expect(page.get_by_role("status")).to_contain_text("Answered in")

        ask("How many pets are there?")
        expect(page.locator("#follow-up")).to_be_hidden()  # the first question is asked alone
        expect(page.locator("#thread li")).to_have_count(1)

        ask("and how many cats?")
        expect(page.locator("#result table tbody td")).to_have_text(["1"])
        expect(page.locator("#follow-up")).to_have_text("Follow-up of 1 earlier question.")
        thread = page.locator("#thread li")
        expect(thread).to_have_count(2)
        expect(thread.nth(0).locator(".question")).to_have_text("How many pets are there?")
        expect(thread.nth(0).locator(".turn-sql")).to_have_text(COUNT)
        expect(thread.nth(0).locator(".mark")).to_have_count(0)
        expect(thread.nth(1).locator(".mark")).to_have_text("follow-up")
        assert asked(engine.prompts[1]) == "How many pets are there? and how many cats?"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "webapp-thread.png"), full_page=True)

        page.get_by_role("button", name="New question").click()
        expect(page.locator("#thread-box")).to_be_hidden()
        expect(page.locator("#answer")).to_be_hidden()
        expect(page.get_by_label("Question")).to_be_focused()
        ask("Names and ages?")
        expect(page.locator("#follow-up")).to_be_hidden()
        expect(page.locator("#thread li")).to_have_count(1)
        assert asked(engine.prompts[2]) == "Names and ages?"
