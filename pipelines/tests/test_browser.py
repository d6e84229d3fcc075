"""The pipelines page in a real browser: Debian's Chromium driven by Playwright."""

import pytest
from django.contrib.auth.models import Permission

from pipelines.choices import RunStatus, RunTrigger
from pipelines.models import PipelineRun
from pipelines.tests.browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, require_chromium


@pytest.fixture
def page(monkeypatch):
    require_chromium()
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(5_000)
        yield page
        browser.close()


@pytest.fixture
def analyst(django_user_model):
    # Not staff: analysts use the site's own login page, not the admin's.
    user = django_user_model.objects.create_user("analyst", password=PASSWORD)
    user.user_permissions.add(Permission.objects.get(codename="add_pipelinerun"))
    return user


def test_run_button_queues_a_run_without_reloading_the_page(
    live_server, page, analyst, make_pipeline
):
    pipeline = make_pipeline(
        [{"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}}], name="iris"
    )

    page.goto(f"{live_server.url}/pipelines/")
    page.fill("#id_username", "analyst")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/pipelines/")

    page.evaluate("window.sameDocument = true")
    page.click(f"#run-outcome-{pipeline.pk} >> xpath=.. >> button")
    outcome = page.locator(f"#run-outcome-{pipeline.pk}")
    outcome.get_by_text("queued").wait_for()

    run = PipelineRun.objects.get(pipeline=pipeline)
    assert outcome.inner_text().strip() == f"Run #{run.pk} queued"
    assert page.evaluate("window.sameDocument") is True
    assert (run.status, run.trigger, run.started_by) == (
        RunStatus.QUEUED,
        RunTrigger.MANUAL,
        analyst,
    )
