"""From tuning to serving in a real browser: run the demo regressor, change a training
parameter, run it again, compare the two runs, register the better model from its run
page, make it champion, and call it through the prediction API.

Runs are queued by the pages as in production; the `worker` fixture executes them.
"""

import json
import re
import urllib.request

import pandas as pd
import pytest
from django.contrib.auth.models import Permission
from django.db.models import Q
from rest_framework.authtoken.models import Token
from sklearn import datasets

from experiments import tracking
from pipelines.demo import seed_demo
from pipelines.models import Pipeline
from pipelines.tests.browser import PASSWORD, chromium_page, log_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PIPELINE = "diabetes-regressor"
HYPERPARAMS = "3.train_sklearn.hyperparams.learning_rate"
EQUAL_PARAM = "3.train_sklearn.estimator"


@pytest.fixture
def analyst(django_user_model):
    """May edit and run pipelines, register models, move aliases and call the API."""
    user = django_user_model.objects.create_user("analyst", password=PASSWORD)
    user.user_permissions.add(
        *Permission.objects.filter(
            Q(content_type__app_label="pipelines")
            | Q(codename__in=["register_model", "set_alias", "predict"])
        )
    )
    return user


def run_and_wait(page) -> None:
    """Press the editor's Run button and follow the run to its end."""
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    page.locator("#run-status", has_text="Succeeded").wait_for(timeout=60_000)


def compare_row(page, key: str):
    return page.locator("table.compare-table tbody tr").filter(
        has=page.locator("th", has_text=re.compile(rf"^(≠ )?{re.escape(key)}$"))
    )


def test_tune_compare_register_promote_and_predict(live_server, analyst, worker, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    seed_demo()
    pipeline = Pipeline.objects.get(name=PIPELINE)
    base = live_server.url
    with chromium_page() as page:
        page.set_default_timeout(20_000)
        log_in(page, base, "analyst", next_path=f"/pipelines/{pipeline.pk}/")

        # Run, change the learning rate in the editor, save, run again.
        run_and_wait(page)
        page.goto(f"{base}/pipelines/{pipeline.pk}/")
        hyperparams = page.locator("li.step-card").nth(2).locator("[name$='-hyperparams']")
        assert json.loads(hyperparams.input_value())["learning_rate"] == 0.05
        hyperparams.fill('{"n_estimators": 200, "learning_rate": 0.2, "max_depth": 2}')
        page.get_by_role("button", name="Save").first.click()
        page.get_by_text(re.compile(r"Saved version \d+")).first.wait_for()
        run_and_wait(page)
        first, second = pipeline.runs.order_by("pk")

        # The experiment: tick both runs, compare them.
        page.goto(f"{base}/experiments/")
        page.get_by_role("link", name=f"pipeline/{PIPELINE}", exact=True).click()
        for run in (first, second):
            label = f"Compare {PIPELINE} #{run.pk}"
            page.get_by_role("checkbox", name=label, exact=True).check()
        page.get_by_role("button", name="Compare selected").click()
        page.wait_for_url(re.compile(r"/experiments/compare/\?"))
        assert compare_row(page, EQUAL_PARAM).count() == 1
        headers = page.locator("table.compare-table thead th.compare-run a.truncate")
        columns = [
            first if f"#{first.pk}" in label else second for label in headers.all_inner_texts()
        ]
        assert set(columns) == {first, second}

        # Only differences: the changed learning rate stays, the same estimator goes.
        page.get_by_label("Only differences").check()
        compare_row(page, EQUAL_PARAM).wait_for(state="detached")
        changed = compare_row(page, HYPERPARAMS).locator("td").all_inner_texts()
        assert changed == ["0.05" if run == first else "0.2" for run in columns]
        assert "hidden" in page.locator("#compare-table").inner_text()

        # The better run by r2 (the regression's main metric), opened from its column.
        best = (
            compare_row(page, "r2")
            .locator("td")
            .evaluate_all("cells => cells.findIndex(cell => cell.classList.contains('best'))")
        )
        better = max((first, second), key=lambda run: run.metrics["r2"])
        assert columns[best] == better
        headers.nth(best).click()
        page.wait_for_url(f"{base}/experiments/runs/{better.mlflow_run_id}/")

        # Register its model from the run page.
        assert page.locator("#id_register_name").input_value() == PIPELINE
        page.fill("#id_register_name", "diabetes")
        page.fill("#id_register_description", "Tuned learning rate.")
        page.get_by_role("button", name="Register").click()
        page.get_by_text("Registered diabetes version 1.").wait_for()
        assert page.get_by_role("link", name="diabetes version 1").is_visible()
        page.get_by_role("link", name="Open diabetes").click()
        page.wait_for_url(f"{base}/models/diabetes/")

        # Make it champion on the model page.
        page.fill("#id_alias", "champion")
        page.select_option("#id_version", "1")
        page.get_by_role("button", name="Set alias").click()
        page.get_by_text("Alias champion now points at version 1.").wait_for()
        assert "champion" in page.locator("#version-1 td.aliases").inner_text()

    # Predict through the API by the alias, as an integration would.
    rows = datasets.load_diabetes(as_frame=True).data.head(3)  # what the demo dataset holds
    token = Token.objects.create(user=analyst)
    request = urllib.request.Request(
        f"{base}/api/models/diabetes@champion/predict",
        data=json.dumps({"records": rows.to_dict("records")}).encode(),
        headers={"Authorization": f"Token {token.key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert (answer["model"], answer["version"]) == ("diabetes", 1)
    assert tracking.model_version("diabetes", 1)["run_id"] == better.mlflow_run_id
    expected = tracking.load_model("models:/diabetes@champion").predict(pd.DataFrame(rows))
    served = [prediction["prediction"] for prediction in answer["predictions"]]
    assert served == pytest.approx(list(expected), rel=1e-12)
