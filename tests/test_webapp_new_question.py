"""The web page clears the answer before a new question (issue 27: it kept the previous answer and
its chart on screen while the model sampled for the next question).

Headless Chromium on the real FastAPI app (uvicorn in this process, as test_webapp_chart.py runs
it); the model is a scripted engine whose second sampling waits until the test has looked at the
page, so "while the model works" is a moment the test holds, not a race.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the [serve] extra")

import playwright.sync_api as playwright
from browser import chromium_page, needs_chromium, serving

from slmsql_cli import engines
from slmsql_cli.engine_protocol import Completion, GenerationStats, PromptProgress, SamplingParams
from slmsql_cli.pipeline import AskConfig, Pipeline
from slmsql_cli.scripted import ScriptedEngine
from slmsql_cli.serve.registry import Registry
from slmsql_cli.serve.service import Service

pytestmark = needs_chromium
AGES = "SELECT age, count(*) AS pets FROM pets GROUP BY age ORDER BY age"  # charted
NAMES = "SELECT name FROM pets WHERE kind = 'cat'"


def said(sql: str) -> str:
    return f"<think>\nRead the table.\n</think>\n<answer>\n{sql}\n</answer>"


class HeldEngine(ScriptedEngine):
    """The script's answers; every sampling after the first waits for `go`."""

    def __init__(self, texts: list[str]) -> None:
        super().__init__(texts, name="held")
        self.go = threading.Event()
        self.waiting = threading.Event()

    def sample(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        on_token: Callable[[int], None] | None = None,
        on_prompt: PromptProgress | None = None,
    ) -> tuple[list[Completion], GenerationStats]:
        if self.prompts:
            self.waiting.set()
            assert self.go.wait(120), "the test never let the model go on"
        return super().sample(prompt, params, on_token, on_prompt)


@pytest.fixture()
def held(pets_db: Path) -> Iterator[tuple[str, HeldEngine]]:
    engine = HeldEngine([said(AGES)] * 2 + [said(NAMES)] * 2)
    with engines.registered("held", lambda spec, config, export=None: engine):
        service = Service(
            Pipeline.load("held", config=AskConfig(n=2, merge=False)),
            Registry.open([f"pets={pets_db}"]),
            model_name="held",
            load_seconds=0.0,
        )
    with serving(service) as url:
        try:
            yield url, engine
        finally:
            engine.go.set()  # never leave the service's worker waiting
    assert not engine.script, f"completions never asked for: {engine.script}"


def test_a_new_question_clears_the_answer_before_it(held: tuple[str, HeldEngine], tmp_path: Path) -> None:
    url, engine = held
    expect = playwright.expect
    with chromium_page(tmp_path / "chromium-profile", height=1200) as page:
        page.goto(url)
        expect(page.get_by_label("Database")).to_have_value("pets")
        page.get_by_label("Question").fill("How many pets of each age?")
        page.get_by_role("button", name="Ask").click()
        answer = page.locator("#answer")
        expect(answer).to_be_visible()
        expect(page.locator("#chart svg")).to_be_visible()
        expect(page.locator("#summary")).to_contain_text("2/2 candidates agreed")
        expect(page.locator("#confidence .badge")).to_be_visible()

        page.get_by_label("Question").fill("Which of them are cats?")
        page.get_by_role("button", name="Ask").click()
        assert engine.waiting.wait(60), "the second question never reached the model"
        # the model is sampling: the status says so, and nothing of the first answer is shown
        expect(page.get_by_role("button", name="Cancel")).to_be_visible()
        expect(answer).to_be_hidden()
        for part in ("#sql code", "#summary", "#explanation", "#result", "#chart", "#candidates"):
            expect(page.locator(part)).to_have_text("")
        expect(page.locator("#chart svg")).to_have_count(0)
        expect(page.locator("#result table")).to_have_count(0)
        expect(page.locator("#confidence")).to_be_hidden()
        expect(page.locator("#view-toggle")).to_be_hidden()
        expect(page.locator("#sql-edit")).to_have_value("")
        assert page.get_by_role("button", name="Keep this answer").is_hidden()

        engine.go.set()
        expect(answer).to_be_visible()
        expect(page.locator("#sql code")).to_have_text(NAMES)
        expect(page.locator("#result table tbody tr")).to_have_count(1)  # Tom, the one cat
        expect(page.locator("#chart svg")).to_have_count(0)  # one text column: no chart
        expect(page.locator("#result")).to_be_visible()
