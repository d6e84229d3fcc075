"""The Compare runs page, and picking runs to compare from an experiment's runs table."""

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from experiments import compare, tracking
from experiments.tests.test_experiment_pages import experiment_id, rows
from pipelines import runs, services
from pipelines.models import PipelineRun

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
URL = "/experiments/compare/"


def tree_steps(depth: int, criterion: str = "gini") -> list[dict]:
    return [
        {"type": "sklearn_dataset", "params": {"name": "iris"}},
        {
            "type": "train_sklearn",
            "params": {
                "task": "classification",
                "estimator": "decision_tree",
                "target": "target",
                "random_state": 0,
                "hyperparams": {"max_depth": depth, "criterion": criterion},
            },
        },
    ]


@pytest.fixture
def trees(make_pipeline) -> list[PipelineRun]:
    """Three runs of one pipeline, edited between them: depth 1, depth 3, then entropy."""
    pipeline = make_pipeline(tree_steps(1), name="trees")
    done = []
    for depth, criterion in ((1, "gini"), (3, "gini"), (3, "entropy")):
        services.update_pipeline(pipeline, steps=tree_steps(depth, criterion))
        run = runs.start_run(pipeline, wait=True)
        assert run.status == "succeeded", run.error_message
        done.append(run)
    return done


@pytest.fixture
def analyst(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("analyst", password="pw"))
    return client


def ids(pipeline_runs) -> list[str]:
    return [run.mlflow_run_id for run in pipeline_runs]


def depth_key(runs_: list[dict]) -> str:
    return next(key for key in runs_[0]["params"] if key.endswith("max_depth"))


def test_side_by_side_has_a_column_per_run_and_marks_the_best(trees):
    loaded = compare.load_runs(ids(trees))
    table = compare.side_by_side(loaded)
    depth = next(row for row in table["params"] if row["key"] == depth_key(loaded))
    assert [cell["value"] for cell in depth["cells"]] == ["1", "3", "3"] and depth["differs"]
    accuracy = next(row for row in table["metrics"] if row["key"] == "accuracy")
    values = [cell["value"] for cell in accuracy["cells"]]
    assert [cell["best"] for cell in accuracy["cells"]] == [v == max(values) for v in values]
    assert [run["pipeline_run"] for run in loaded] == trees


def test_only_differences_hides_rows_equal_in_every_run(trees):
    loaded = compare.load_runs(ids(trees))
    everything = compare.side_by_side(loaded)
    differences = compare.side_by_side(loaded, only_differences=True)
    same = [row["key"] for row in everything["params"] if not row["differs"]]
    assert any(key.endswith("estimator") for key in same)
    shown = [row["key"] for row in differences["params"] + differences["metrics"]]
    assert not set(same) & set(shown) and depth_key(loaded) in shown
    assert differences["hidden"] == sum(
        not row["differs"] for row in everything["params"] + everything["metrics"]
    )


def test_lower_is_better_for_errors_and_losses():
    assert compare.lower_is_better("rmse") and compare.lower_is_better("val_loss")
    assert not compare.lower_is_better("accuracy") and not compare.lower_is_better("r2")


def test_metric_charts_are_bounded_and_json_safe(trees):
    loaded = compare.load_runs(ids(trees))
    loaded[0]["metrics"]["broken"] = float("nan")
    for number in range(compare.MAX_METRIC_CHARTS + 5):
        loaded[0]["metrics"][f"extra_{number:02}"] = number
    charts = compare.metric_charts(loaded)
    assert len(charts["charts"]) == compare.MAX_METRIC_CHARTS and charts["left_out"] > 0
    for chart in charts["charts"]:
        assert len(chart["labels"]) == len(chart["values"]) == 3
        json.loads(json.dumps(chart, allow_nan=False))  # NaN would break JSON.parse


def test_scatter_plots_numeric_params_as_numbers_and_others_as_categories(trees):
    loaded = compare.load_runs(ids(trees))
    depth = compare.scatter(loaded, depth_key(loaded), "accuracy")
    assert depth["chart"]["numeric"] and [p["x"] for p in depth["chart"]["points"]] == [1, 3, 3]
    criterion = next(key for key in loaded[0]["params"] if key.endswith("criterion"))
    by_criterion = compare.scatter(loaded, criterion, "accuracy")
    assert not by_criterion["chart"]["numeric"]
    assert by_criterion["chart"]["categories"] == ["entropy", "gini"]
    # Without a choice: the first param that differs, the first metric.
    default = compare.scatter(loaded)
    assert default["param"] in (depth_key(loaded), criterion)
    assert default["metric"] == sorted(loaded[0]["metrics"])[0]


def test_definitions_diff_shows_the_changed_param(trees):
    loaded = compare.load_runs(ids(trees))
    diff = compare.definitions_diff(loaded)
    assert diff["a"]["id"] == trees[0].mlflow_run_id and diff["b"]["id"] == trees[1].mlflow_run_id
    assert any(line.startswith("-") and '"max_depth": 1' in line for line in diff["lines"])
    assert any(line.startswith("+") and '"max_depth": 3' in line for line in diff["lines"])
    picked = compare.definitions_diff(loaded, trees[1].mlflow_run_id, trees[2].mlflow_run_id)
    assert any('"criterion": "entropy"' in line for line in picked["lines"])
    assert not any("max_depth" in line for line in picked["lines"][2:] if line[0] in "+-")


def test_page_shows_runs_side_by_side_with_links_and_best(analyst, trees):
    response = analyst.get(URL, {"runs": ids(trees)})
    html = response.content.decode()
    assert response.status_code == 200
    for run in trees:
        assert f'href="/runs/{run.pk}/"' in html
    assert html.count('class="status succeeded">Finished') == 3
    assert "★" in html and "(best)" in html
    assert 'id="metric-chart-1"' in html and 'data-chart="metric-chart-1"' in html
    assert 'id="scatter-chart"' in html
    assert "vendor/chartjs/chart.umd.min.js" in html and "cdn" not in html.lower()


def test_page_only_differences_is_a_get_parameter(analyst, trees):
    estimator = next(
        key
        for key in tracking.get_run(trees[0].mlflow_run_id)["params"]
        if key.endswith("estimator")
    )
    everything = analyst.get(URL, {"runs": ids(trees)}).content.decode()
    differences = analyst.get(URL, {"runs": ids(trees), "diff": "1"}).content.decode()
    assert f'class="compare-key">{estimator}</th>' in everything
    assert f'class="compare-key">{estimator}</th>' not in differences
    assert "5 rows with the same value in every run are hidden" in differences
    assert re.search(r'name="diff" value="1" form="compare-controls" checked', differences)


def test_htmx_request_gets_only_the_part_it_targets(analyst, trees):
    headers = {"HX-Request": "true", "HX-Target": "compare-table"}
    html = analyst.get(URL, {"runs": ids(trees), "diff": "1"}, headers=headers).content.decode()
    assert html.lstrip().startswith('<div class="table-wrap">') and "<html" not in html
    headers["HX-Target"] = "compare-diff"
    a, b = ids(trees)[1:]
    html = analyst.get(URL, {"runs": ids(trees), "a": a, "b": b}, headers=headers).content.decode()
    assert "entropy" in html and "<table" not in html


def test_page_says_when_a_run_has_no_pipeline_run(analyst, trees):
    PipelineRun.objects.filter(pk=trees[0].pk).delete()
    html = analyst.get(URL, {"runs": ids(trees)}).content.decode()
    assert "has no pipeline run on this platform" in html
    assert "no pipeline run</span>" in html


@pytest.mark.parametrize(
    "picked, status, message",
    [
        (1, 400, "Pick at least 2 runs to compare; only 1 selected."),
        (0, 400, "Pick at least 2 runs to compare; none selected."),
        (21, 400, "Pick at most 20 runs to compare; 21 selected."),
    ],
)
def test_page_explains_a_selection_of_the_wrong_size(analyst, db, picked, status, message):
    response = analyst.get(URL, {"runs": [f"{n:032x}" for n in range(picked)]})
    assert response.status_code == status
    assert message in response.content.decode()


def test_page_names_an_unknown_run(analyst, trees):
    unknown = "0" * 32
    response = analyst.get(URL, {"runs": [trees[0].mlflow_run_id, unknown, "bad'id"]})
    assert response.status_code == 404
    assert f"No MLflow run has the id {unknown}, bad&#x27;id" in response.content.decode()


def test_page_shows_the_notice_when_mlflow_is_unreachable(
    analyst, db, settings, silent_port, monkeypatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    settings.MLFLOW_TRACKING_URI = f"http://127.0.0.1:{silent_port}"
    response = analyst.get(URL, {"runs": ["a" * 32, "b" * 32]})
    html = response.content.decode()
    assert response.status_code == 200
    assert f"http://127.0.0.1:{silent_port}" in html and "cannot be reached" in html


def test_page_needs_a_login(client, db):
    response = client.get(URL, {"runs": ["a", "b"]})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_runs_table_has_checkboxes_and_a_compare_form(analyst, trees):
    html = analyst.get(f"/experiments/{experiment_id(trees[0].pipeline)}/").content.decode()
    assert f'<form method="get" action="{URL}"' in html
    for run in trees:
        assert f'name="runs" value="{run.mlflow_run_id}"' in html
    assert "Compare selected</button>" in html
    assert len(rows(html)) == 3


def test_runs_table_pages_back_with_previous(analyst, trees, monkeypatch):
    monkeypatch.setattr("experiments.services.RUNS_PER_PAGE", 1)
    url = f"/experiments/{experiment_id(trees[0].pipeline)}/"
    seen = []
    html = analyst.get(url).content.decode()
    for _ in range(2):
        seen.append(re.search(r'name="runs" value="(\w+)"', html)[1])
        link = re.search(r'href="(\?[^"]*)" [^>]*rel="next"', html)[1].replace("&amp;", "&")
        html = analyst.get(url + link).content.decode()
    assert "Page 3" in html and "‹ Previous" in html
    for expected in reversed(seen):
        link = re.search(r'href="(\?[^"]*)" [^>]*rel="prev"', html)
        html = analyst.get(url + (link[1].replace("&amp;", "&") if link else "")).content.decode()
        assert re.search(r'name="runs" value="(\w+)"', html)[1] == expected
    assert "Page 1" in html and "‹ Previous" not in html


@pytest.mark.django_db(transaction=True)
def test_page_through_a_real_server(trees, live_server, django_user_model, client):
    django_user_model.objects.create_user("reader", password="pw")
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    login = opener.open(f"{live_server.url}/accounts/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login)[1]
    form = f"csrfmiddlewaretoken={token}&username=reader&password=pw".encode()
    opener.open(urllib.request.Request(f"{live_server.url}/accounts/login/", form))
    query = "&".join(f"runs={run_id}" for run_id in ids(trees))
    page = opener.open(f"{live_server.url}{URL}?{query}&diff=1")
    html = page.read().decode()
    assert page.status == 200 and "Compare runs" in html and "accuracy" in html
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(f"{live_server.url}{URL}?runs={ids(trees)[0]}")
    assert refused.value.code == 400
    assert "Pick at least 2 runs" in refused.value.read().decode()


@pytest.mark.screenshots
@pytest.mark.django_db(transaction=True)
def test_screenshot_of_the_compare_page(trees, live_server, django_user_model, monkeypatch):
    from pipelines.tests.browser import PASSWORD, chromium_page, log_in

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    user = django_user_model.objects.create_user("viewer", password=PASSWORD)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="pipelines"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        log_in(page, live_server.url, "viewer", next_path="/experiments/")
        page.get_by_role("link", name="pipeline/trees").click()
        for box in page.locator("input[name=runs]").all():
            box.check()
        page.get_by_role("button", name="Compare selected").click()
        page.wait_for_selector("table.compare-table")
        page.get_by_label("Only differences").check()
        page.get_by_text("rows with the same value in every run are hidden").wait_for()
        # HTMX swaps the scatter for a numeric param; compare.js draws the new canvas.
        page.get_by_label("Param (x axis)").select_option("2.train_sklearn.hyperparams.max_depth")
        page.wait_for_function(
            "() => Chart.getChart(document.querySelector('[data-scatter]'))?.options.scales.x.type"
            " === 'linear'"
        )
        page.screenshot(path=str(SCREENSHOTS / "experiment-compare.png"), full_page=True)
