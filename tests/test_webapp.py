"""The web app in a real headless browser against a real `slmsql serve --http` process.

Chromium comes from tests/browser.py. The server runs the real Gemma 3 270M test model on a tiny
database, on a free loopback port it picks itself (`--port 0`).

Gemma 270M is a base model and rarely writes SQL, so the model's answer is checked for what the
page must show either way (the SQL or the plain statement that there is none, the vote summary,
every candidate on demand); the SQL-and-table path is then driven through the page's own
"Edit and run" (POST /v1/sql), which is real SQL through the server's read-only executor. The
screenshots (the model's answer, then the edited SQL's table) are saved in tests/artifacts/
(git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the [serve] extra")

import playwright.sync_api as playwright
from browser import ARTIFACTS, chromium_page, needs_chromium
from conftest import REPO, make_pets_db

from slmsql_cli.serve.process import ServerProcess

START_TIMEOUT = 300.0  # seconds for the server to load the model on a busy machine
ANSWER_TIMEOUT_MS = 600_000
N = 2
TOKEN = "webapp-test-token"

pytestmark = needs_chromium


@pytest.fixture()
def server(gemma_gguf: Path, tmp_path: Path) -> Iterator[str]:
    """`slmsql serve --http --token …` on a free loopback port; yields its URL and checks that
    SIGTERM stops it with exit code 0."""
    db = make_pets_db(tmp_path / "pets.sqlite")
    args = ["--db", f"pets={db}", "--model", str(gemma_gguf), "-n", str(N), "--max-tokens", "24", "--no-merge"]  # fmt: skip
    env = {"PYTHONPATH": str(REPO), "SLMSQL_CACHE_DIR": str(tmp_path / "cache"), "SLMSQL_TOKEN": TOKEN}
    server = ServerProcess(args, tmp_path / "server.log", cwd=REPO, env=env, start_timeout=START_TIMEOUT)
    try:
        yield server.url
    finally:
        code = server.stop()
    assert code == 0, server.log()


@pytest.fixture()
def page(tmp_path: Path) -> Iterator[playwright.Page]:
    with chromium_page(tmp_path / "chromium-profile", height=1000) as page:
        yield page


def open_app(page: playwright.Page, url: str) -> None:
    """Load the page; the server wants a token, so the page says so and takes one."""
    expect = playwright.expect
    page.goto(url)
    expect(page.get_by_role("alert")).to_contain_text("bearer token")
    page.get_by_label("Bearer token").fill(TOKEN)
    page.get_by_role("button", name="Save for this tab").click()
    expect(page.get_by_label("Database")).to_have_value("pets")
    expect(page.locator("#database option")).to_have_text(["pets (1 table)"])
    expect(page.get_by_role("alert")).to_be_hidden()


def test_ask_in_the_browser(server: str, page: playwright.Page) -> None:
    expect = playwright.expect
    open_app(page, server)
    page.get_by_label("Question").fill("How many pets are there?")
    page.get_by_role("button", name="Ask").click()
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()  # busy while the model works
    answer = page.locator("#answer")
    expect(answer).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    expect(page.get_by_role("status")).to_contain_text("Answered in")

    sql = page.locator("#sql")
    expect(sql).not_to_be_empty()
    summary = page.locator("#summary").inner_text()
    assert re.search(rf"(\d+/{N} candidates agreed|none of the {N} candidates)", summary), summary
    page.get_by_text(f"Candidates ({N})").click()  # the candidates, on demand
    expect(page.locator("#candidates > li")).to_have_count(N)
    if page.locator("#view-toggle").is_visible():  # a chartable result shows its chart first
        page.get_by_role("button", name="Table").click()
    if page.locator("#result table").count():  # the model's SQL ran: its table is there
        expect(page.locator("#result table thead th").first).to_be_visible()
    else:
        expect(page.get_by_role("alert")).to_be_visible()  # no SQL, or it failed: said so
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webapp-answer.png"), full_page=True)

    # The SQL-and-table path, with SQL the test chooses: highlighted, run read-only, tabulated.
    page.get_by_text("Edit and run this SQL").click()
    page.get_by_label("SQL (one read-only statement)").fill(
        "SELECT name, kind, age FROM pets ORDER BY age DESC"
    )
    page.get_by_role("button", name="Run").click()
    table = page.locator("#result table")
    expect(table.locator("thead th")).to_have_text(["name", "kind", "age"])
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator("tbody tr").first.locator("td")).to_have_text(["Tom", "cat", "5"])
    expect(sql.locator(".kw").first).to_have_text("SELECT")  # highlighted
    expect(page.get_by_role("alert")).to_be_hidden()

    page.screenshot(path=str(ARTIFACTS / "webapp-edited-sql.png"), full_page=True)

    # The box goes through the same guard as the model's SQL: a write is an error, not a change.
    page.get_by_label("SQL (one read-only statement)").fill("DELETE FROM pets")
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_role("alert")).to_contain_text("The SQL failed")
    page.get_by_label("SQL (one read-only statement)").fill("SELECT count(*) AS pets FROM pets")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#result table tbody td")).to_have_text(["2"])
    expect(page.get_by_role("alert")).to_be_hidden()
