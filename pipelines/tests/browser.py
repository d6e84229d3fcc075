"""What the real-browser tests share: Chromium through Playwright, a login, a worker.

Playwright's sync API runs an event loop in the test's thread, so Django's ORM calls made
by the test itself need DJANGO_ALLOW_ASYNC_UNSAFE; the live server runs in its own thread.
"""

import importlib.util
import os
import queue
import threading
from contextlib import contextmanager

import pytest
from django.db import connections

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"


def require_chromium() -> None:
    """Skip without Chromium or Playwright, or fail under MLOPS_REQUIRE_SERVICES=1."""
    if not os.access(CHROMIUM, os.X_OK):
        problem = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    elif importlib.util.find_spec("playwright") is None:
        problem = "the playwright package is missing (pip install -r requirements-dev.txt)"
    else:
        return
    if os.environ.get("MLOPS_REQUIRE_SERVICES") == "1":
        pytest.fail(problem)
    pytest.skip(problem)


@contextmanager
def chromium_page(width: int = 1280, height: int = 900):
    """A fresh headless Chromium page; closed with its browser on exit."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(10_000)
        try:
            yield page
        finally:
            browser.close()


def log_in(page, base_url: str, username: str, next_path: str = "/pipelines/") -> None:
    page.goto(f"{base_url}{next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(f"{base_url}{next_path}")


class InlineWorker:
    """Executes queued runs in a thread of the test process, as a qcluster worker would.

    Runs are handed over where the platform enqueues them (`pipelines.runs.enqueue`), so
    the page under test queues them exactly as in production.
    """

    def __init__(self):
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._work, daemon=True)

    def enqueue(self, run_pk: int) -> None:
        self.queue.put(run_pk)

    def start(self) -> "InlineWorker":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=60)

    def _work(self) -> None:
        from pipelines.runs import execute_run

        try:
            while (run_pk := self.queue.get()) is not None:
                execute_run(run_pk, isolated=False)
        finally:
            connections.close_all()
