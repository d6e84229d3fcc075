"""The MLflow run page: what a run logged, its trials, and its pipeline run, both ways."""

import json
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from experiments import runs as run_pages
from experiments import tracking
from pipelines import runs
from pipelines.templatetags.mlops_format import sig3

SEARCH_STEPS = [
    {"type": "sklearn_dataset", "params": {"name": "iris"}},
    {
        "type": "train_sklearn",
        "params": {
            "task": "classification",
            "estimator": "logistic_regression",
            "target": "target",
            "search": {"grid": {"C": [0.001, 1.0]}},
        },
    },
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def searched(make_pipeline):
    """A finished pipeline run whose training step searched two candidates."""
    run = runs.start_run(make_pipeline(SEARCH_STEPS, name="iris search"), wait=True)
    assert run.status == "succeeded", run.error_message
    return run


@pytest.fixture
def analyst(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("analyst"))
    return client


def page(client, mlflow_run_id: str) -> str:
    response = client.get(f"/experiments/runs/{mlflow_run_id}/")
    assert response.status_code == 200
    return response.content.decode()


def trials(run) -> list[dict]:
    experiment_id = tracking.run_details(run.mlflow_run_id)["experiment_id"]
    found, _ = tracking.search_runs(
        [experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run.mlflow_run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return found


def chart_data(html: str, element_id: str) -> dict:
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html)
    return json.loads(found[1])


def test_page_shows_what_the_run_logged(analyst, searched):
    html = page(analyst, searched.mlflow_run_id)
    logged = tracking.run_details(searched.mlflow_run_id)

    assert f'<h1 class="run-title">iris search #{searched.pk} ' in html and "Finished" in html
    assert f'href="/experiments/{logged["experiment_id"]}/">pipeline/iris search</a>' in html
    assert re.search(r"<dt>Started</dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</dd>", html)
    assert re.search(r"<dt>Duration</dt><dd>[\d.]+ s</dd>", html)
    params = html.split('id="params"', 1)[1].split('id="nested"', 1)[0]
    assert 'title="2.train_sklearn.estimator"' in params and "logistic_regression" in params
    metrics = html.split('id="metrics"', 1)[1].split('id="params"', 1)[0]
    assert f'title="{logged["metrics"]["accuracy"]}">{sig3(logged["metrics"]["accuracy"])}<' in (
        metrics
    )
    assert "one value" in metrics and "<canvas" not in metrics
    tags, system = html.split('id="tags"', 1)[1].split("<details", 1)
    assert f'title="{searched.pk}"' in tags and "mlops.run_id" in tags
    assert "mlflow.runName" not in tags and "mlflow.runName" in system.split("</details>")[0]


def test_long_param_values_are_truncated_with_the_whole_value_as_title(analyst, searched):
    html = page(analyst, searched.mlflow_run_id)
    grid = tracking.run_details(searched.mlflow_run_id)["params"]["2.train_sklearn.search.grid.C"]
    assert f'<span class="truncate" title="{grid}">{grid}</span>' in html


def test_metric_history_is_charted_with_bounded_data(analyst, searched):
    tracking.log_metric_steps(searched.mlflow_run_id, "loss", [1 / (n + 1) for n in range(2000)])
    html = page(analyst, searched.mlflow_run_id)

    assert "2,000 values, chart" in html
    assert "500 of them drawn" in html
    number = re.search(r'<canvas data-line-chart="(history-\d+)-data"', html)[1]
    chart = chart_data(html, f"{number}-data")
    assert chart["x"] == "Step" and chart["y"] == "loss"
    assert chart["total"] == 2000 and len(chart["points"]) <= run_pages.MAX_CHART_POINTS
    assert chart["points"][0] == {"x": 0, "y": 1.0}
    assert chart["points"][-1] == {"x": 1999, "y": 1 / 2000}
    assert 'src="/static/vendor/chartjs/chart.umd.min.js"' in html


def test_gradient_boosting_logs_its_loss_per_stage_as_a_charted_history(analyst, make_pipeline):
    steps = [
        {"type": "sklearn_dataset", "params": {"name": "diabetes"}},
        {
            "type": "train_sklearn",
            "params": {
                "task": "regression",
                "estimator": "gradient_boosting",
                "target": "target",
                "hyperparams": {"n_estimators": 30},
            },
        },
    ]
    run = runs.start_run(make_pipeline(steps, name="boosted"), wait=True)
    assert run.status == "succeeded", run.error_message

    losses = [point["value"] for point in tracking.metric_history(run.mlflow_run_id, "train_loss")]
    assert len(losses) == 30 and losses[-1] < losses[0]
    html = page(analyst, run.mlflow_run_id)
    assert "30 values, chart" in html
    number = re.search(r'<canvas data-line-chart="(history-\d+)-data"', html)[1]
    chart = chart_data(html, f"{number}-data")
    assert chart["y"] == "train_loss" and len(chart["points"]) == 30


def test_values_json_cannot_carry_leave_gaps_in_the_chart(analyst, searched):
    tracking.log_metric_steps(searched.mlflow_run_id, "loss", [0.5, float("nan"), 0.25])
    html = page(analyst, searched.mlflow_run_id)
    number = re.search(r'<canvas data-line-chart="(history-\d+)-data"', html)[1]
    assert [p["y"] for p in chart_data(html, f"{number}-data")["points"]] == [0.5, None, 0.25]


def test_search_trials_are_listed_with_links_and_the_best_marked(analyst, searched):
    html = page(analyst, searched.mlflow_run_id)
    nested = html.split('id="nested"', 1)[1].split('id="tags"', 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", nested.split("<tbody>", 1)[1], re.S)
    logged = trials(searched)

    assert len(rows) == 2
    for row, trial in zip(rows, logged, strict=True):
        assert f'href="/experiments/runs/{trial["id"]}/"' in row
        assert trial["params"]["C"] in row
    assert "best" not in rows[0] and ">best</span>" in rows[1]
    # Cross-validated scores read as mean ± std, one column per metric.
    assert 'cv_accuracy</span><br><span class="muted">mean ± std' in nested
    mean, std = logged[1]["metrics"]["cv_accuracy_mean"], logged[1]["metrics"]["cv_accuracy_std"]
    assert f'{sig3(mean)} <span class="muted">± {sig3(std)}</span>' in rows[1]


def test_a_trial_links_to_its_parent_and_to_the_pipeline_run(analyst, searched):
    trial = trials(searched)[0]
    html = page(analyst, trial["id"])

    assert f'href="/experiments/runs/{searched.mlflow_run_id}/"' in html
    assert f'href="/runs/{searched.pk}/">#{searched.pk}</a>' in html
    assert "through the parent run" in html
    assert "No runs are nested in this one" in html


def test_pipeline_run_and_mlflow_run_link_to_each_other(analyst, searched):
    run_page = analyst.get(f"/runs/{searched.pk}/").content.decode()
    assert f'href="/experiments/runs/{searched.mlflow_run_id}/"' in run_page
    assert f'href="/experiments/runs/{searched.mlflow_run_id}/artifacts/"' in run_page

    html = page(analyst, searched.mlflow_run_id)
    assert f'href="/runs/{searched.pk}/">#{searched.pk}</a>' in html
    assert f'href="/pipelines/{searched.pipeline_id}/">iris search</a>' in html


def test_artifacts_are_embedded_from_the_artifact_browser(analyst, searched):
    html = page(analyst, searched.mlflow_run_id)
    artifacts = html.split('id="artifacts"', 1)[1]
    assert 'id="artifact-list"' in artifacts
    here = f"/experiments/runs/{searched.mlflow_run_id}/artifacts/"
    assert f'href="{here}?path=step_2"' in artifacts


def test_a_run_no_pipeline_run_recorded_is_shown_and_says_so(analyst, searched):
    mlflow_run_id = searched.mlflow_run_id
    searched.delete()
    html = page(analyst, mlflow_run_id)

    assert "None linked: no pipeline run here recorded this MLflow run" in html
    assert "Artifacts are browsable here only for MLflow runs a pipeline run" in html
    assert 'id="artifact-list"' not in html
    assert "trial 2</a>" in html  # its trials are still listed


@pytest.mark.parametrize("mlflow_run_id", ["0" * 32, "not-a-run", "abc'--"])
def test_an_unknown_run_is_not_found(analyst, db, mlflow_run_id):
    assert analyst.get(f"/experiments/runs/{mlflow_run_id}/").status_code == 404


def test_an_unreachable_store_answers_503_with_the_notice(analyst, settings, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: connections are refused
    settings.MLFLOW_TRACKING_URI = f"http://127.0.0.1:{port}"

    response = analyst.get(f"/experiments/runs/{'a' * 32}/")
    html = response.content.decode()
    assert response.status_code == 503
    assert f"<code>http://127.0.0.1:{port}</code> cannot be reached" in html
    assert "MLFLOW_TRACKING_URI" in html


def test_the_page_needs_a_login(client, db):
    response = client.get(f"/experiments/runs/{'a' * 32}/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.django_db(transaction=True)
def test_the_page_through_a_real_server(make_pipeline, live_server, client, django_user_model):
    run = runs.start_run(make_pipeline(SEARCH_STEPS, name="served"), wait=True)
    client.force_login(django_user_model.objects.create_user("served"))
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    def fetch(path: str):
        request = urllib.request.Request(live_server.url + path, headers={"Cookie": cookie})
        return urllib.request.urlopen(request, timeout=30)

    with fetch(f"/experiments/runs/{run.mlflow_run_id}/") as response:
        html = response.read().decode()
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert f"served #{run.pk}" in html and f'href="/runs/{run.pk}/"' in html
    with pytest.raises(urllib.error.HTTPError) as missing:
        fetch(f"/experiments/runs/{'0' * 32}/")
    assert missing.value.code == 404


@pytest.mark.screenshots
@pytest.mark.django_db(transaction=True)
def test_screenshot_of_the_run_page(make_pipeline, live_server, django_user_model, monkeypatch):
    from pipelines.tests.browser import PASSWORD, chromium_page, log_in

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    run = runs.start_run(make_pipeline(SEARCH_STEPS, name="iris search"), wait=True)
    # A learning curve, as an iterative trainer logs one: a loss falling with noise.
    curve = [1.2 * 0.995**n + 0.05 * ((n * 7919) % 13) / 13 for n in range(1200)]
    tracking.log_metric_steps(run.mlflow_run_id, "train_loss", curve)
    tracking.log_metric_steps(run.mlflow_run_id, "val_accuracy", [0.6, 0.8, 0.88, 0.9, 0.91])
    user = django_user_model.objects.create_user("viewer", password=PASSWORD)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="pipelines"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = f"/experiments/runs/{run.mlflow_run_id}/"
    with chromium_page() as browser_page:
        log_in(browser_page, live_server.url, "viewer", next_path=path)
        browser_page.wait_for_function(
            "document.querySelectorAll('canvas[data-line-chart]').length === 2"
            " && [...document.querySelectorAll('canvas[data-line-chart]')]"
            ".every(c => Chart.getChart(c))"
        )
        browser_page.screenshot(path=str(SCREENSHOTS / "experiment-run.png"), full_page=True)
