"""The web page's chart, explanation, confidence badge and "Keep this answer", in headless Chromium.

The server is the real FastAPI app on uvicorn, in this process on a free loopback port, with the
scripted engine standing for the model (as in test_serve_http.py), so the test is quick and the
answer is known: a two-column numeric result, which the page must draw as a chart with a toggle
back to the table. Everything else is real: the service, the executor, the saved-answer store,
the page's own JavaScript. test_webapp.py drives the real model in a real server process.
The screenshot is kept in tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the [serve] extra")

import playwright.sync_api as playwright
from browser import ARTIFACTS, chromium_page, needs_chromium, serving

from slmsql_cli.pipeline import AskConfig, Pipeline
from slmsql_cli.serve.registry import Registry
from slmsql_cli.serve.service import Service

pytestmark = needs_chromium
AGES = "SELECT age, count(*) AS pets FROM pets GROUP BY age ORDER BY age"


def said(sql: str) -> str:
    return f"<think>\nGroup them.\n</think>\n<answer>\n{sql}\n</answer>"


@pytest.fixture()
def server(pets_db: Path, scripted_engine) -> Iterator[str]:
    scripted_engine([said(AGES)] * 2)
    service = Service(
        Pipeline.load("scripted", config=AskConfig(n=2, merge=False)),
        Registry.open([f"pets={pets_db}"]),
        model_name="scripted",
        load_seconds=0.0,
    )
    with serving(service) as url:
        yield url


@pytest.fixture()
def page(tmp_path: Path) -> Iterator[playwright.Page]:
    with chromium_page(tmp_path / "chromium-profile", height=1200) as page:
        yield page


def test_chart_explanation_confidence_and_keep(server: str, page: playwright.Page) -> None:
    expect = playwright.expect
    page.goto(server)
    expect(page.get_by_label("Database")).to_have_value("pets")
    page.get_by_label("Question").fill("How many pets of each age?")
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#answer")).to_be_visible()

    # the explanation under the SQL, the badge with no warning signs
    expect(page.locator("#explanation li").first).to_have_text("It reads the table pets.")
    expect(page.locator("#explanation")).to_contain_text("It groups the rows by age.")
    expect(page.locator("#confidence .badge")).to_have_text("No warning signs")

    # two numeric columns: a chart first (ages rise: a line with a point per row), then the table
    chart = page.locator("#chart svg")
    expect(chart).to_be_visible()
    expect(chart).to_have_attribute("aria-label", "Line chart of pets by age")
    expect(chart.locator("circle")).to_have_count(2)
    expect(page.locator("#result")).to_be_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webapp-chart.png"), full_page=True)
    page.get_by_role("button", name="Table").click()
    expect(page.locator("#result table tbody tr")).to_have_count(2)
    expect(chart).to_be_hidden()
    page.get_by_role("button", name="Chart").click()
    expect(chart).to_be_visible()

    # a text label makes bars: the edited SQL's result is charted too
    page.get_by_text("Edit and run this SQL").click()
    page.get_by_label("SQL (one read-only statement)").fill("SELECT name, age FROM pets ORDER BY name")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#chart svg")).to_have_attribute("aria-label", "Bar chart of age by name")
    expect(page.locator("#chart rect.bar")).to_have_count(2)
    expect(page.locator("#explanation li").last).to_have_text(
        "It sorts the result by name in ascending order."
    )

    # keep the model's SQL again, then ask the same question alone (a follow-up is always the
    # model's: "New question" starts over): answered from the store
    page.get_by_label("SQL (one read-only statement)").fill(AGES)
    page.get_by_role("button", name="Run").click()
    page.get_by_role("button", name="Keep this answer").click()
    expect(page.get_by_role("status")).to_contain_text("Kept as saved answer #1")
    page.get_by_role("button", name="New question").click()
    page.get_by_label("Question").fill("how many pets of each age")
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#summary")).to_contain_text("saved answer #1")
    expect(page.locator("#confidence")).to_contain_text("No warning signs")
