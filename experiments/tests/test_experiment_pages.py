"""The experiments pages: every MLflow experiment, and one experiment's runs."""

import re
import socket
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from experiments import tracking
from pipelines import runs

IRIS_STEPS = [
    {"type": "sklearn_dataset", "params": {"name": "iris"}},
    {
        "type": "train_sklearn",
        "params": {"task": "classification", "estimator": "random_forest", "target": "target"},
    },
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def iris(make_pipeline):
    """The iris pipeline, run twice."""
    pipeline = make_pipeline(IRIS_STEPS, name="iris")
    for _ in range(2):
        run = runs.start_run(pipeline, wait=True)
        assert run.status == "succeeded", run.error_message
    return pipeline


@pytest.fixture
def analyst(client, django_user_model):
    user = django_user_model.objects.create_user("analyst", password="pw")
    client.force_login(user)
    return client


def experiment_id(pipeline) -> str:
    found = [e for e in tracking.list_experiments() if e["name"] == pipeline.experiment_name]
    return found[0]["id"]


def rows(html: str) -> list[str]:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


def test_list_shows_each_experiment_with_pipeline_runs_and_best(analyst, iris):
    accuracies = [r.metrics["accuracy"] for r in _mlflow_runs(iris)]
    response = analyst.get("/experiments/")
    assert response.status_code == 200
    row = next(r for r in rows(response.content.decode()) if "pipeline/iris" in r)
    assert f'href="/pipelines/{iris.pk}/"' in row
    assert '<td class="num">2</td>' in row
    assert "accuracy" in row
    from pipelines.templatetags.mlops_format import sig3

    assert sig3(max(accuracies)) in row
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d \w+", row)


def test_list_reads_mlflow_without_a_query_per_experiment(
    analyst, iris, make_pipeline, django_assert_max_num_queries
):
    other = make_pipeline(IRIS_STEPS, name="iris-two")
    runs.start_run(other, wait=True)
    with django_assert_max_num_queries(4):  # session, user, pipelines
        response = analyst.get("/experiments/")
    assert f'href="/pipelines/{other.pk}/"' in response.content.decode()


def test_detail_lists_runs_with_metrics_and_pipeline_run_links(analyst, iris):
    response = analyst.get(f"/experiments/{experiment_id(iris)}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert len(rows(html)) == 2
    for run in iris.runs.all():
        assert f'href="/runs/{run.pk}/"' in html
    assert "accuracy" in html and "Finished" in html


def test_detail_shows_chosen_params(analyst, iris):
    key = next(k for k in _mlflow_runs(iris)[0].params if "estimator" in k)
    response = analyst.get(f"/experiments/{experiment_id(iris)}/", {"param": key})
    assert "random_forest" in response.content.decode()


def test_detail_sorts_by_a_metric(analyst, iris, monkeypatch):
    seen = []
    original = tracking.search_runs

    def spy(*args, **kwargs):
        seen.append(kwargs.get("order_by"))
        return original(*args, **kwargs)

    monkeypatch.setattr(tracking, "search_runs", spy)
    response = analyst.get(
        f"/experiments/{experiment_id(iris)}/", {"sort": "metrics.accuracy", "desc": "1"}
    )
    assert response.status_code == 200
    assert seen == [["metrics.`accuracy` DESC"]]
    assert 'aria-sort="descending"' in response.content.decode()


def test_detail_filters_by_a_metric_condition(analyst, iris):
    url = f"/experiments/{experiment_id(iris)}/"
    assert len(rows(analyst.get(url, {"filter": "accuracy >= 0"}).content.decode())) == 2
    html = analyst.get(url, {"filter": "accuracy > 2"}).content.decode()
    assert "No runs match these filters" in html
    assert len(rows(analyst.get(url, {"status": "FINISHED"}).content.decode())) == 2


@pytest.mark.parametrize(
    "condition, message",
    [
        ("accuracy >> 0.9", "Unknown operator “&gt;&gt;”"),
        ("accuracy > high", "“high” is not a number"),
        ("accuracy", "is not a metric condition"),
    ],
)
def test_detail_explains_a_bad_filter(analyst, iris, condition, message):
    response = analyst.get(f"/experiments/{experiment_id(iris)}/", {"filter": condition})
    assert response.status_code == 200
    assert message in response.content.decode()


def test_detail_paginates_with_page_tokens(analyst, iris, monkeypatch):
    monkeypatch.setattr("experiments.services.RUNS_PER_PAGE", 1)
    url = f"/experiments/{experiment_id(iris)}/"
    html = analyst.get(url).content.decode()
    assert len(rows(html)) == 1
    next_url = re.search(r'href="(\?[^"]*page_token=[^"]*)" [^>]*rel="next"', html)[1]
    second = analyst.get(url + next_url.replace("&amp;", "&")).content.decode()
    assert len(rows(second)) == 1 and "Page 2" in second


def test_pages_say_when_the_store_is_unreachable(analyst, settings, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    settings.MLFLOW_TRACKING_URI = f"http://127.0.0.1:{port}"
    for url in ("/experiments/", "/experiments/1/"):
        response = analyst.get(url)
        assert response.status_code == 200
        assert f"http://127.0.0.1:{port}" in response.content.decode()
        assert "cannot be reached" in response.content.decode()


def test_list_without_experiments_says_what_to_do(analyst, monkeypatch):
    monkeypatch.setattr(tracking, "list_experiments", lambda: [])
    assert "No experiments yet" in analyst.get("/experiments/").content.decode()


@pytest.mark.parametrize("url", ["/experiments/", "/experiments/0/"])
def test_pages_need_a_login(client, db, url):
    response = client.get(url)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def _mlflow_runs(pipeline):
    client = tracking.configure()
    return [client.get_run(r.mlflow_run_id).data for r in pipeline.runs.all()]


@pytest.mark.screenshots
@pytest.mark.django_db(transaction=True)
def test_screenshots_of_the_experiment_pages(iris, live_server, django_user_model, monkeypatch):
    from pipelines.tests.browser import PASSWORD, chromium_page, log_in

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    user = django_user_model.objects.create_user("viewer", password=PASSWORD)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="pipelines"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        log_in(page, live_server.url, "viewer", next_path="/experiments/")
        page.screenshot(path=str(SCREENSHOTS / "experiment-list.png"), full_page=True)
        page.get_by_role("link", name="pipeline/iris").click()
        page.wait_for_selector("table.experiment-runs")
        page.screenshot(path=str(SCREENSHOTS / "experiment-detail.png"), full_page=True)
