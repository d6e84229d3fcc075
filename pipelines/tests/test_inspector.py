"""The step inspector: sidecars written with the cache, pages of rows, filters, CSV,
model summaries, the difference with the step before, and refusing what fails a check."""

import json
import re
import urllib.request
from unittest.mock import patch

import joblib
import numpy as np
import pandas as pd
import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from pipelines import inspector, runs
from pipelines.engine.cache import StepCache

FORMULA = "=cmd|' /C calc'!A0"


def run_now(pipeline, **kwargs):
    run = runs.start_run(pipeline, wait=True, **kwargs)
    assert run.status == "succeeded", run.error_message
    return run


def numbered(size: int) -> pd.DataFrame:
    """`size` rows: n = 1..size, a number with gaps, a text column with a formula."""
    n = np.arange(1, size + 1)
    amount = (n % 7).astype(float)
    amount[::10] = np.nan
    name = np.where(n % 3 == 0, FORMULA, np.where(n % 3 == 1, "alpha", "beta"))
    return pd.DataFrame({"n": n, "amount": amount, "name": name})


@pytest.fixture
def data_pipeline(make_dataset, make_pipeline):
    make_dataset(numbered(200), "numbered")
    pipeline = make_pipeline(
        [
            {"type": "csv", "name": "Extract", "params": {"dataset": "numbered"}},
            {"type": "drop_na", "name": "Clean", "params": {"columns": ["amount"]}},
        ],
        name="numbers",
    )
    run_now(pipeline)
    return pipeline


@pytest.fixture
def trained(classifier_pipeline):
    run_now(classifier_pipeline)
    return classifier_pipeline


@pytest.fixture
def analyst(client, django_user_model):
    user = django_user_model.objects.create_user("analyst", password="pw")
    user.user_permissions.add(Permission.objects.get(codename="add_pipelinerun"))
    client.force_login(user)
    return user


def url(pipeline, order, **query):
    base = reverse("pipelines:step", args=[pipeline.pk, order])
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{base}?{params}" if params else base


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# -- Sidecars written with the cache ----------------------------------------------------------


def test_the_profile_and_parquet_copy_are_written_with_the_cache(data_pipeline):
    cache = StepCache(data_pipeline.pk)
    meta = cache.read_meta(2)
    record = meta["inspect"]
    assert record["keys"]["data"]["rows"] == 180
    assert cache.sidecar_path(2, record["keys"]["data"]["file"]).exists()
    profile = json.loads(cache.sidecar_path(2, "profile.json").read_text())["data"]
    amount = next(c for c in profile["columns"] if c["name"] == "amount")
    assert amount["nulls"] == 0 and amount["kind"] == "number"
    assert sum(amount["histogram"]["counts"]) == 180
    name = next(c for c in profile["columns"] if c["name"] == "name")
    assert {t["value"] for t in name["top"]} == {FORMULA, "alpha", "beta"}


def test_opening_the_inspector_never_profiles_again(data_pipeline, client, analyst, monkeypatch):
    def no_profiling(*args, **kwargs):
        raise AssertionError("the inspector profiled the frame again")

    monkeypatch.setattr(inspector, "profile_frame", no_profiling)
    monkeypatch.setattr(inspector, "profile_column", no_profiling)
    response = client.get(url(data_pipeline, 2))
    assert response.status_code == 200
    page = text(response)
    assert "amount" in page and "Rows 1–50 of 180" in page
    assert "<svg" in page  # the histogram, from the stored profile


def test_login_is_required(data_pipeline, client):
    response = client.get(url(data_pipeline, 2))
    assert response.status_code == 302 and "login" in response["Location"]


def test_an_unknown_step_is_not_found(data_pipeline, client, analyst):
    assert client.get(url(data_pipeline, 9)).status_code == 404


# -- Pages, sort and filters ------------------------------------------------------------------


def test_page_two_shows_rows_51_to_100(data_pipeline, client, analyst):
    page = inspector.data_page(data_pipeline, 1, page=2)
    assert [number for number, _ in page.rows] == list(range(51, 101))
    assert [cells[0] for _, cells in page.rows] == [str(n) for n in range(51, 101)]
    response = text(client.get(url(data_pipeline, 1, page=2)))
    assert "Rows 51–100 of 200" in response and "Page 2 of 4" in response


def test_htmx_paging_answers_the_table_only(data_pipeline, client, analyst):
    response = client.get(
        url(data_pipeline, 1, page=3), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="inspector-data"
    )
    body = text(response)
    assert body.lstrip().startswith('<div id="inspector-data"')
    assert "Rows 101–150 of 200" in body and "<html" not in body


def test_sort_by_a_column_descending(data_pipeline, client, analyst):
    page = inspector.data_page(data_pipeline, 1, sort="n", descending=True)
    assert [cells[0] for _, cells in page.rows][:3] == ["200", "199", "198"]
    body = text(client.get(url(data_pipeline, 1, sort="amount", desc=1)))
    assert 'aria-sort="descending"' in body and "sorted by <code>amount</code> descending" in body


def test_filters_use_the_filter_rows_conditions(data_pipeline):
    page = inspector.data_page(data_pipeline, 1, conditions=["amount>4", "n<=50"])
    assert page.notes == []
    values = [(int(c[0]), float(c[1])) for _, c in page.rows]
    assert values and all(a > 4 and n <= 50 for n, a in values)
    assert page.total == len(values)
    nulls = inspector.data_page(data_pipeline, 1, conditions=["amount is_null"])
    assert nulls.total == 20
    names = inspector.data_page(
        data_pipeline, 1, conditions=[{"column": "name", "op": "in", "value": ["alpha", "beta"]}]
    )
    assert names.total == 134


def test_filter_form_fields_and_chips(data_pipeline, client, analyst):
    body = text(client.get(url(data_pipeline, 1, column="n", op=">", value="190")))
    assert "Rows 1–10 of 10 matching, of 200" in body
    assert "<code>n&gt;190</code>" in body  # a chip that removes the filter


@pytest.mark.parametrize(
    "query, message",
    [
        ({"page": 99}, "There is no page 99: the last page is 4; showing it."),
        ({"page": "abc"}, "is not a number; showing page 1"),
        ({"sort": "nope"}, "There is no column &#x27;nope&#x27; to sort by"),
        ({"f": "amount~~3"}, "was not understood"),
        ({"f": "nope>3"}, "names no column"),
        ({"f": "amount>ten"}, "is not a value of column"),
        ({"key": "nope"}, "The output has no key &#x27;nope&#x27;"),
    ],
)
def test_bad_input_gets_a_message(data_pipeline, client, analyst, query, message):
    response = client.get(url(data_pipeline, 1, **query))
    assert response.status_code == 200
    assert message in text(response)


def test_an_empty_filter_result_says_so(data_pipeline, client, analyst):
    body = text(client.get(url(data_pipeline, 1, f="n>1000")))
    assert "No row matches these filters" in body


# -- CSV ----------------------------------------------------------------------------------------


def test_csv_rows_escape_formulas_and_follow_the_filter(data_pipeline):
    lines = "".join(inspector.csv_rows(data_pipeline, 1, conditions=["n<=3"])).splitlines()
    assert lines[0] == "n,amount,name"
    assert lines[1:] == ["1,,alpha", "2,2.0,beta", "3,3.0,'=cmd|' /C calc'!A0"]


@pytest.mark.django_db(transaction=True)
def test_csv_download_through_the_server(
    live_server, make_dataset, make_pipeline, client, django_user_model
):
    make_dataset(numbered(30), "numbered")
    pipeline = make_pipeline([{"type": "csv", "params": {"dataset": "numbered"}}], name="csv")
    run_now(pipeline)
    client.force_login(django_user_model.objects.create_user("csv-reader"))
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    path = reverse("pipelines:step_csv", args=[pipeline.pk, 1])
    request = urllib.request.Request(
        f"{live_server.url}{path}?f=name%20contains%20cmd&sort=n&desc=1",
        headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}"},
    )
    with urllib.request.urlopen(request) as response:
        disposition = response.headers["Content-Disposition"]
        assert response.headers["Content-Type"].startswith("text/csv")
        body = response.read().decode()
    assert disposition == 'attachment; filename="csv-step-1-data.csv"'
    lines = body.splitlines()
    assert lines[0] == "n,amount,name"
    assert lines[1] == "30,2.0,'=cmd|' /C calc'!A0"
    assert len(lines) == 11 and all(line.endswith("'=cmd|' /C calc'!A0") for line in lines[1:])
    assert "\n=" not in body and ",=" not in body


# -- Refused and old caches ---------------------------------------------------------------------


def test_a_tampered_cache_is_refused_without_unpickling(
    data_pipeline, client, analyst, monkeypatch
):
    path = StepCache(data_pipeline.pk).path(2)
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))

    def never(*args, **kwargs):
        raise AssertionError("joblib.load was called")

    monkeypatch.setattr(joblib, "load", never)
    body = text(client.get(url(data_pipeline, 2)))
    assert "failed its integrity check" in body
    assert 'name="run" value="upto:2"' in body


def test_a_tampered_parquet_copy_is_refused(data_pipeline, client, analyst):
    cache = StepCache(data_pipeline.pk)
    path = cache.sidecar_path(2, "data.parquet")
    content = bytearray(path.read_bytes())
    content[100] ^= 0xFF
    path.write_bytes(bytes(content))
    response = client.get(url(data_pipeline, 2))
    assert response.status_code == 200
    assert "data.parquet failed its integrity check" in text(response)


def test_a_forged_inspector_record_is_refused(data_pipeline, client, analyst):
    cache = StepCache(data_pipeline.pk)
    meta = cache.read_meta(2)
    meta["inspect"]["keys"]["data"]["rows"] = 5
    cache.meta_path(2).write_text(json.dumps(meta))
    assert "inspector record of step 2 failed its integrity check" in text(
        client.get(url(data_pipeline, 2))
    )


def test_a_cache_without_its_profile_gets_one_on_first_view(data_pipeline, client, analyst):
    # A worker has not profiled it yet, or an older version wrote it: the page profiles
    # the HMAC-checked cache once, then reads what it wrote.
    cache = StepCache(data_pipeline.pk)
    meta = cache.read_meta(2)
    del meta["inspect"], meta["inspect_mac"]
    cache.meta_path(2).write_text(json.dumps(meta))

    response = client.get(url(data_pipeline, 2))

    assert response.status_code == 200
    assert "inspect" in cache.read_meta(2)
    with patch("pipelines.inspector.profile_frame", side_effect=AssertionError("re-profiled")):
        assert client.get(url(data_pipeline, 2)).status_code == 200


def test_the_worker_task_profiles_a_cache_written_in_the_background(
    data_pipeline, client, analyst, settings
):
    from pipelines.tasks import inspect_step_cache

    cache = StepCache(data_pipeline.pk)
    meta = cache.read_meta(2)
    del meta["inspect"], meta["inspect_mac"]
    cache.meta_path(2).write_text(json.dumps(meta))

    assert inspect_step_cache(data_pipeline.pk, 2, meta["fingerprint"]) is True
    assert inspect_step_cache(data_pipeline.pk, 2, "another fingerprint") is False
    with patch("pipelines.inspector.profile_frame", side_effect=AssertionError("re-profiled")):
        assert client.get(url(data_pipeline, 2)).status_code == 200


def test_a_removed_parquet_copy_gets_a_message(data_pipeline, client, analyst):
    StepCache(data_pipeline.pk).sidecar_path(2, "data.parquet").unlink()
    response = client.get(url(data_pipeline, 2))
    assert response.status_code == 200
    assert "data.parquet is missing" in text(response)


def test_a_stale_step_says_why_with_the_run_button(data_pipeline, client, analyst):
    step = data_pipeline.steps.get(order=2)
    step.params = {"columns": ["n"]}
    step.save()
    body = text(client.get(url(data_pipeline, 2)))
    assert "Its cached output is stale: its parameters changed." in body
    assert "Run up to this step" in body


def test_a_step_never_run(make_pipeline, make_dataset, client, analyst):
    make_dataset(numbered(5), "numbered")
    pipeline = make_pipeline([{"type": "csv", "params": {"dataset": "numbered"}}])
    body = text(client.get(url(pipeline, 1)))
    assert "This step has not been run since it was defined." in body


def test_without_the_run_permission_the_page_names_it(
    make_pipeline, make_dataset, client, django_user_model
):
    make_dataset(numbered(5), "numbered")
    pipeline = make_pipeline([{"type": "csv", "params": {"dataset": "numbered"}}])
    client.force_login(django_user_model.objects.create_user("viewer"))
    body = text(client.get(url(pipeline, 1)))
    assert "pipelines.add_pipelinerun" in body and 'value="upto:1"' not in body


# -- Models ---------------------------------------------------------------------------------------


def test_model_summary_of_a_classifier(trained, client, analyst):
    summary = inspector.model_summary(trained, 3)
    assert summary.estimator == "LogisticRegression"
    assert summary.params["max_iter"] == "100"
    assert set(summary.metrics) >= {"accuracy", "f1"}
    assert summary.importance["labels"] and len(summary.importance["values"]) > 0
    assert summary.confusion["labels"] == [0, 1]
    counts = sum(cell["count"] for row in summary.confusion["rows"] for cell in row["cells"])
    assert counts == 40  # the held-out rows
    assert {c["label"] for c in summary.confusion["per_class"]} == {0, 1}
    body = text(client.get(url(trained, 3, key="model")))
    assert 'id="confusion-matrix"' in body and 'data-chart="chart-importance"' in body
    assert "Per class" in body


def test_model_summary_of_a_regressor(make_dataset, make_pipeline):
    rng = np.random.default_rng(1)
    x = rng.normal(size=120)
    make_dataset(pd.DataFrame({"x": x, "y": 3 * x + rng.normal(size=120)}), "reg")
    pipeline = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "reg"}},
            {
                "type": "train_sklearn",
                "params": {"task": "regression", "estimator": "random_forest", "target": "y"},
            },
        ]
    )
    run_now(pipeline)
    summary = inspector.model_summary(pipeline, 2)
    assert summary.confusion is None
    assert set(summary.metrics) >= {"rmse", "r2"}
    assert len(summary.residuals["chart"]["values"]) == 5
    assert summary.importance["labels"] == ["numeric__x"]


def test_metrics_are_a_plain_table(trained, client, analyst):
    body = text(client.get(url(trained, 3, key="metrics")))
    assert "accuracy" in body and "value-table" in body


# -- The step before ------------------------------------------------------------------------------


def test_the_diff_shows_rows_drop_na_removed(data_pipeline, client, analyst):
    diff = inspector.output_diff(data_pipeline, 2)
    assert (diff.rows_before, diff.rows_after, diff.rows_removed) == (200, 180, 20)
    assert diff.added == diff.removed == []
    body = text(client.get(url(data_pipeline, 2)))
    assert "200 → 180" in body and "(20 rows removed)" in body


def test_the_diff_names_added_and_retyped_columns(make_dataset, make_pipeline):
    make_dataset(numbered(20), "numbered")
    pipeline = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "numbered"}},
            {"type": "cast_types", "params": {"types": {"n": "float"}}},
            {"type": "one_hot", "params": {"columns": ["name"]}},
        ]
    )
    run_now(pipeline)
    assert inspector.output_diff(pipeline, 2).retyped == [("n", "int64", "float64")]
    third = inspector.output_diff(pipeline, 3)
    assert "name" in third.removed and third.added
    assert inspector.output_diff(pipeline, 1).problem.startswith("This is the first step")


# -- Queries ----------------------------------------------------------------------------------------


def test_queries_do_not_grow_with_rows(make_dataset, make_pipeline, client, analyst):
    counts = []
    for size in (60, 6000):
        make_dataset(numbered(size), f"rows{size}")
        pipeline = make_pipeline(
            [{"type": "csv", "params": {"dataset": f"rows{size}"}}], name=f"rows{size}"
        )
        run_now(pipeline)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url(pipeline, 1, page=2, sort="amount")).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


# -- Links ----------------------------------------------------------------------------------------


def test_editor_and_run_page_link_to_the_inspector(data_pipeline, client, analyst):
    link = reverse("pipelines:step", args=[data_pipeline.pk, 2])
    assert link in client.get(reverse("pipelines:detail", args=[data_pipeline.pk])).content.decode()
    run = data_pipeline.runs.latest("pk")
    assert link in client.get(reverse("runs:detail", args=[run.pk])).content.decode()
