"""Whole flows an analyst goes through in a real browser (Debian's Chromium, Playwright).

Runs are queued by the pages exactly as in production; `InlineWorker` executes them in a
thread of the test process where a qcluster worker would.
"""

import re

import pytest
from django.contrib.auth.models import Permission

import pipelines.testing  # noqa: F401  (registers the `sleep` step for the cancel flow)
from pipelines.choices import RunStatus
from pipelines.models import Pipeline, PipelineRun
from pipelines.tests.browser import PASSWORD, chromium_page, log_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def page(live_server, django_user_model, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    analyst = django_user_model.objects.create_user("analyst", password=PASSWORD)
    analyst.user_permissions.add(*Permission.objects.filter(content_type__app_label="pipelines"))
    with chromium_page() as page:
        page.set_default_timeout(20_000)
        log_in(page, live_server.url, "analyst")
        yield page


def card(page, order: int):
    return page.locator("li.step-card").nth(order - 1)


def add_step(page, slug: str):
    page.select_option("#new-step-type", slug)
    count = page.locator("li.step-card").count()
    page.get_by_role("button", name="Add step").click()
    page.locator("li.step-card").nth(count).wait_for()
    return page.locator("li.step-card").nth(count)


def save(page):
    page.get_by_role("button", name="Save").first.click()
    page.get_by_text(re.compile(r"Saved version \d+")).first.wait_for()


def wait_for_run_status(page, status: str):
    page.locator("#run-status", has_text=status).wait_for(timeout=60_000)


def build_wine_pipeline(page, base_url: str) -> Pipeline:
    """New pipeline: wine -> drop_na, run up to step 2, then train (target picked from
    the columns step 2 cached) -> predict, saved."""
    page.goto(f"{base_url}/pipelines/new/")
    page.fill("input[name=name]", "wine")
    page.get_by_role("button", name="Create pipeline").click()
    page.wait_for_url(re.compile(r"/pipelines/\d+/$"))
    load = add_step(page, "sklearn_dataset")
    load.locator("[name$='-name']").select_option("wine")
    add_step(page, "drop_na")
    save(page)

    card(page, 2).get_by_role("button", name="Run up to this step").click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    wait_for_run_status(page, "Succeeded")
    page.goto(f"{base_url}/pipelines/{Pipeline.objects.get(name='wine').pk}/")

    train = add_step(page, "train_sklearn")
    target = train.locator("[name$='-target']")
    offered = train.locator(f"datalist#{target.get_attribute('list')} option")
    assert "target" in offered.evaluate_all("options => options.map(o => o.value)")
    target.fill("target")
    train.locator("[name$='-task']").select_option("classification")
    train.locator("[name$='-estimator']").fill("random_forest")
    add_step(page, "predict")
    save(page)
    return Pipeline.objects.get(name="wine")


def test_build_a_pipeline_from_nothing_run_it_and_watch_it_finish(live_server, page, worker):
    pipeline = build_wine_pipeline(page, live_server.url)
    assert [s.step_type for s in pipeline.steps.all()] == [
        "sklearn_dataset",
        "drop_na",
        "train_sklearn",
        "predict",
    ]

    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    page.evaluate("window.sameDocument = true")
    wait_for_run_status(page, "Succeeded")

    steps = page.locator("table.steps tbody tr")
    assert steps.count() == 4
    assert steps.filter(has_text="Succeeded").count() == 4
    run = pipeline.runs.order_by("-pk").first()
    assert run.status == RunStatus.SUCCEEDED
    progress = page.locator("#run-progress")
    assert "accuracy" in progress.inner_text()
    assert f"{run.metrics['accuracy']:.3g}" in progress.inner_text()
    assert page.evaluate("window.sameDocument") is True  # followed without a reload


def test_a_changed_parameter_makes_later_steps_stale_and_run_from_reuses_the_rest(
    live_server, page, worker
):
    pipeline = build_wine_pipeline(page, live_server.url)
    page.get_by_role("button", name="Run", exact=True).click()
    wait_for_run_status(page, "Succeeded")
    page.goto(f"{live_server.url}/pipelines/{pipeline.pk}/")

    card(page, 3).locator("[name$='-test_size']").fill("0.3")
    save(page)

    assert card(page, 1).locator(".status").inner_text() == "fresh"
    assert card(page, 2).locator(".status").inner_text() == "fresh"
    for order in (3, 4):
        assert card(page, order).locator(".status").inner_text() == "stale"
    assert "parameters changed" in card(page, 3).locator(".step-state").inner_text()
    assert "an earlier step changed" in card(page, 4).locator(".step-state").inner_text()

    card(page, 3).get_by_role("button", name="Run from this step").click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    wait_for_run_status(page, "Succeeded")
    steps = page.locator("table.steps tbody tr")
    for order in (1, 2):
        assert "Reused from cache" in steps.nth(order - 1).inner_text()
    assert "Succeeded" in steps.nth(2).inner_text()


def test_an_invalid_value_shows_beside_its_field_and_nothing_is_saved(
    live_server, page, make_pipeline
):
    pipeline = make_pipeline(
        [
            {"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}},
            {"type": "sample", "name": "Sample", "params": {"n": 50}},
        ],
        name="iris",
    )
    page.goto(f"{live_server.url}/pipelines/{pipeline.pk}/")

    rows = card(page, 2).locator("[name$='-n']")
    rows.evaluate("input => input.removeAttribute('min')")  # what a script could post
    rows.fill("-5")
    page.get_by_role("button", name="Save").first.click()

    error = card(page, 2).locator(".field-error").first
    error.wait_for()
    assert "greater than" in error.inner_text()
    assert rows.get_attribute("aria-describedby").count(error.get_attribute("id")) == 1
    assert rows.input_value() == "-5"  # the analyst's input stays in the form
    page.reload()
    assert card(page, 2).locator("[name$='-n']").input_value() == "50"
    assert pipeline.steps.get(order=2).params["n"] == 50


def test_drag_and_drop_reorders_steps_and_the_order_survives_a_reload(
    live_server, page, make_pipeline
):
    pipeline = make_pipeline(
        [
            {"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}},
            {"type": "drop_na", "name": "Clean", "params": {}},
            {"type": "drop_duplicates", "name": "Dedupe", "params": {}},
        ],
        name="iris",
    )
    page.goto(f"{live_server.url}/pipelines/{pipeline.pk}/")

    card(page, 3).locator(".drag-handle").drag_to(card(page, 2).locator(".step-head"))
    assert card(page, 2).locator("h2").inner_text().endswith("Dedupe")
    save(page)
    page.reload()

    titles = [t.splitlines()[-1] for t in page.locator("li.step-card h2").all_inner_texts()]
    assert titles == ["Load", "Dedupe", "Clean"]
    assert list(pipeline.steps.values_list("name", flat=True)) == ["Load", "Dedupe", "Clean"]


def test_cancel_a_running_run_from_its_page(live_server, page, worker, make_pipeline):
    pipeline = make_pipeline(
        [{"type": "sleep", "name": f"Wait {i}", "params": {"seconds": 1.5}} for i in range(4)],
        name="slow",
    )
    page.goto(f"{live_server.url}/pipelines/{pipeline.pk}/")
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    wait_for_run_status(page, "Running")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#run-cancel").click()
    wait_for_run_status(page, "Cancelled")

    run = PipelineRun.objects.get(pipeline=pipeline)
    assert run.status == RunStatus.CANCELLED
    assert run.step_runs.filter(status="succeeded").count() < 4
    assert "Cancellation requested" in page.locator("#run-log").inner_text()


def test_upload_a_csv_build_a_pipeline_on_it_run_it_and_inspect_the_model(
    live_server, page, worker, django_user_model, tmp_path
):
    # The progress bar itself is followed, throttled, in datasources' test_dataset_browser.
    analyst = django_user_model.objects.get(username="analyst")
    analyst.user_permissions.add(*Permission.objects.filter(content_type__app_label="datasources"))
    frame = make_classification_frame(rows=300)
    path = tmp_path / "patients.csv"
    frame.to_csv(path, index=False)

    page.goto(f"{live_server.url}/data/datasets/upload/")
    page.fill("#id_name", "patients")
    page.set_input_files("#id_file", str(path))
    page.click("form[data-upload] button[type=submit]")
    page.wait_for_url("**/data/datasets/view/patients/?version=1")
    assert page.locator("table.preview tbody tr").count() == 20

    page.goto(f"{live_server.url}/pipelines/new/")
    page.fill("input[name=name]", "patients-model")
    page.get_by_role("button", name="Create pipeline").click()
    page.wait_for_url(re.compile(r"/pipelines/\d+/$"))
    add_step(page, "csv").locator("[name$='-dataset']").fill("patients")
    add_step(page, "drop_na")
    train = add_step(page, "train_sklearn")
    train.locator("[name$='-task']").select_option("classification")
    train.locator("[name$='-estimator']").fill("random_forest")
    train.locator("[name$='-target']").fill("label")
    add_step(page, "predict")
    save(page)
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    wait_for_run_status(page, "Succeeded")

    page.locator("table.steps tbody tr").nth(2).get_by_role("link", name="Inspect output").click()
    page.wait_for_function(
        "() => { const c = document.querySelector('#importance-chart');"
        " return c && window.Chart && Chart.getChart(c); }"
    )
    chart = "Chart.getChart(document.querySelector('#importance-chart'))"
    assert page.evaluate(f"{chart}.data.datasets[0].data.length") == 4  # four features
    assert page.locator("#confusion-matrix tbody tr").count() == 2

    page.goto(page.url.split("?")[0] + "?key=data")
    page.get_by_role("link", name="Next ›").click()
    page.locator("#rows-count", has_text="Rows 51–100 of").wait_for()
    numbers = page.locator("table.data-rows tbody tr td:first-child").all_inner_texts()
    assert numbers == [str(n) for n in range(51, 101)]


def make_classification_frame(rows: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    features = rng.normal(size=(rows, 4))
    frame = pd.DataFrame(features, columns=["age", "bmi", "pressure", "glucose"])
    frame["label"] = (features[:, 0] + features[:, 3] > 0).astype(int)
    return frame
