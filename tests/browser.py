"""Headless Chromium for the web page's tests (test_webapp*.py), and the server they open.

Chromium is the Debian package (`scripts/setup.sh` installs it), driven by Playwright through
`executable_path`: Playwright's own browser download is never used. Each page gets a fresh
profile, and a JavaScript error on the page fails the test that opened it.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import playwright.sync_api as playwright
import pytest
from conftest import REPO

from slmsql_cli.serve.http import create_app, listen
from slmsql_cli.serve.service import Service

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "tests" / "artifacts"  # screenshots (git-ignored)
# Chromium must neither reach out (updates, sync, QUIC probes) nor need a GPU or a sandbox.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (scripts/setup.sh installs Debian's `chromium`)"
)


@contextmanager
def chromium_page(profile: Path, height: int) -> Iterator[playwright.Page]:
    """A page in a fresh headless Chromium, 1100 px wide; asserts on closing that the page
    raised no JavaScript error."""
    with playwright.sync_playwright() as p:
        # A persistent context is how Playwright takes a --user-data-dir: a fresh one per test.
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": height},
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        context.close()
        assert not errors, f"the page raised: {errors}"


@contextmanager
def serving(service: Service) -> Iterator[str]:
    """The real FastAPI app for `service` on uvicorn, in this process on a free loopback port; its
    address. The service is closed after the server."""
    import uvicorn

    sock = listen("127.0.0.1", 0, None)
    uv = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        service.close()
