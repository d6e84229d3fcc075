"""The step inspector in a real browser (Debian's Chromium, Playwright): opened from a
run's step rows, its diff, the model's charts and paging through HTMX."""

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from pipelines import runs
from pipelines.tests.browser import PASSWORD, chromium_page, log_in

pytestmark = pytest.mark.django_db(transaction=True)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def ran(make_dataset, make_pipeline, classification_frame):
    """data -> drop_na (x2: 10 rows have none) -> train_sklearn -> predict, run once."""
    make_dataset(classification_frame, "data")
    pipeline = make_pipeline(
        [
            {"type": "csv", "name": "Extract", "params": {"dataset": "data"}},
            {"type": "drop_na", "name": "Drop rows without x2", "params": {"columns": ["x2"]}},
            {
                "type": "train_sklearn",
                "name": "Train",
                "params": {
                    "task": "classification",
                    "estimator": "random_forest",
                    "target": "label",
                },
            },
            {"type": "predict", "name": "Predict"},
        ],
        name="classifier",
    )
    run = runs.start_run(pipeline, wait=True)
    assert run.status == "succeeded", run.error_message
    return run


@pytest.fixture
def page(ran, live_server, django_user_model, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    analyst = django_user_model.objects.create_user("analyst", password=PASSWORD)
    analyst.user_permissions.add(*Permission.objects.filter(content_type__app_label="pipelines"))
    with chromium_page(width=1280, height=1000) as page:
        log_in(page, live_server.url, "analyst")
        yield page


def step_row(page, order: int):
    return page.locator("table.steps tbody tr").nth(order - 1)


def test_open_drop_na_from_the_run_and_see_what_it_removed(page, ran, live_server):
    page.goto(f"{live_server.url}/runs/{ran.pk}/")
    step_row(page, 2).get_by_role("link", name="Inspect output").click()
    page.wait_for_url(re.compile(rf"/pipelines/{ran.pipeline_id}/steps/2/$"))
    diff = page.locator(".inspector-diff")
    assert "200 → 190" in diff.inner_text()
    assert "(10 rows removed)" in diff.inner_text()
    assert page.locator("table.profile tbody tr").count() == 4
    assert "Rows 1–50 of 190" in page.locator("#rows-count").inner_text()

    page.get_by_role("link", name="Next ›").click()
    page.locator("#rows-count", has_text="Rows 51–100 of 190").wait_for()
    numbers = page.locator("table.data-rows tbody tr td:first-child").all_inner_texts()
    assert numbers == [str(n) for n in range(51, 101)]
    assert "page=2" in page.url  # pushed: the page can be reloaded or shared


def test_the_training_step_shows_importance_and_the_confusion_matrix(page, ran, live_server):
    page.goto(f"{live_server.url}/pipelines/{ran.pipeline_id}/steps/3/")
    assert page.locator(".inspector-tabs a[aria-current=page]").inner_text().startswith("model")
    page.wait_for_function(
        "() => { const c = document.querySelector('#importance-chart');"
        " return c && window.Chart && Chart.getChart(c); }"
    )
    points = page.evaluate(
        "Chart.getChart(document.querySelector('#importance-chart')).data.datasets[0].data.length"
    )
    assert points > 0
    matrix = page.locator("#confusion-matrix")
    assert matrix.is_visible()
    assert matrix.locator("tbody tr").count() == 2
    assert "RandomForestClassifier" in page.locator(".facts").first.inner_text()


@pytest.mark.screenshots
def test_screenshots_of_the_inspector(page, ran, live_server):
    page.goto(f"{live_server.url}/pipelines/{ran.pipeline_id}/steps/2/?sort=x1&desc=1&f=x1%3E0")
    page.screenshot(path=str(SCREENSHOTS / "step-inspector.png"), full_page=True)
    page.goto(f"{live_server.url}/pipelines/{ran.pipeline_id}/steps/3/?key=model")
    page.wait_for_function(
        "() => window.Chart && Chart.getChart(document.querySelector('#importance-chart'))"
    )
    page.screenshot(path=str(SCREENSHOTS / "step-inspector-model.png"), full_page=True)
