"""/api/v1/pipelines/{reference}/steps/{order}/output/: a step's cached output, its
profile and model summary, and pages of its rows sorted and filtered."""

import numpy as np
import pandas as pd
import pytest
import schemathesis
from rest_framework.test import APIClient

from mlops_site.wsgi import application
from pipelines import runs
from pipelines.api.tokens import issue_token
from pipelines.models import PipelineStep
from pipelines.tests.test_api_schemathesis import CHECKS

OUTPUT = "/api/v1/pipelines/{}/steps/{}/output/"


def error(code: str, message: str, *errors: dict) -> dict:
    return {"code": code, "message": message, "errors": list(errors)}


def invalid(field: str, message: str) -> dict:
    return error("invalid", f"{field}: {message}", {"field": field, "message": message})


def run_now(pipeline):
    run = runs.start_run(pipeline, wait=True)
    assert run.status == "succeeded", run.error_message


@pytest.fixture
def numbers(make_dataset, make_pipeline):
    """120 rows (n = 1..120, amount = n % 7 with every tenth missing), cleaned to 108."""
    n = np.arange(1, 121)
    amount = (n % 7).astype(float)
    amount[::10] = np.nan
    make_dataset(pd.DataFrame({"n": n, "amount": amount, "city": "Oslo"}), "numbered")
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
def api(api_as):
    return api_as(username="reader")


def rows(api, query: str = "", pipeline: str = "numbers", order: int = 2):
    return api.get(f"{OUTPUT.format(pipeline, order)}rows/{query}")


# -- The output --------------------------------------------------------------------------------


def test_a_frame_output_has_its_shape_profile_and_freshness(api, numbers):
    response = api.get(OUTPUT.format("numbers", 2))

    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("pipeline", "order", "name", "type", "previous_step")} == {
        "pipeline": "numbers",
        "order": 2,
        "name": "Clean",
        "type": "drop_na",
        "previous_step": 1,
    }
    assert body["freshness"]["state"] == "fresh"
    assert (body["available"], body["problem"], body["model"]) == (True, "", None)
    assert body["keys"] == [
        {
            "name": "data",
            "kind": "frame",
            "rows": 108,
            "columns": 3,
            "detail": body["keys"][0]["detail"],
        }
    ]
    assert set(body["keys"][0]["detail"]) == {"memory"}  # no server file names
    profile = body["profiles"]["data"]
    assert profile["rows"] == 108 and profile["schema"] == {
        "n": "number",
        "amount": "number",
        "city": "text",
    }
    amount = next(c for c in profile["columns"] if c["name"] == "amount")
    assert (amount["nulls"], amount["min"], amount["max"]) == (0, 0.0, 6.0)
    assert sum(amount["histogram"]["counts"]) == 108
    city = next(c for c in profile["columns"] if c["name"] == "city")
    assert city["top"] == [{"value": "Oslo", "count": 108, "pct": 100.0}]


def test_a_training_step_output_has_its_model_summary(api, classifier_pipeline):
    run_now(classifier_pipeline)

    body = api.get(OUTPUT.format("classifier", 3)).json()

    kinds = {key["name"]: key["kind"] for key in body["keys"]}
    assert kinds["model"] == "model" and kinds["data"] == "frame"
    model = body["model"]
    assert (model["estimator"], model["task"]) == ("LogisticRegression", "classification")
    assert 0.5 < model["metrics"]["accuracy"] <= 1
    assert model["facts"] == [
        {"label": "Task", "value": "classification"},
        {"label": "Training rows", "value": 160},
        {"label": "Held-out rows", "value": 40},
        {"label": "Features", "value": 3},
    ]
    assert model["confusion"]["labels"] == [0, 1]
    assert model["importance"]["labels"][0] == "numeric__x1"
    model_key = next(key for key in body["keys"] if key["kind"] == "model")
    assert model_key["detail"]["estimator"] == "LogisticRegression"


@pytest.mark.django_db(transaction=True)
def test_a_metric_that_is_not_a_number_is_null(api, make_dataset, make_pipeline):
    # One held-out row: r2 is undefined (NaN), which JSON cannot carry.
    make_dataset(pd.DataFrame({"x": [1.0, 2, 3, 4, 5], "y": [2.0, 4, 6, 8, 10]}), "tiny")
    train = {"task": "regression", "estimator": "linear_regression", "target": "y"}
    pipeline = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "tiny"}},
            {"type": "train_sklearn", "params": {**train, "test_size": 0.2}},
        ],
        name="tiny",
    )
    runs.start_run(pipeline, wait=True)

    response = api.get(OUTPUT.format("tiny", 2))

    assert response.status_code == 200
    assert response.json()["model"]["metrics"]["r2"] is None


def test_a_stale_output_says_why_and_shows_nothing(api, numbers):
    PipelineStep.objects.filter(pipeline=numbers, order=2).update(params={"columns": ["n"]})

    body = api.get(OUTPUT.format("numbers", 2)).json()

    assert body["freshness"]["state"] == "stale"
    assert (body["available"], body["problem_kind"]) == (False, "stale")
    assert body["problem"].startswith("Its cached output is stale: ")
    assert (body["keys"], body["profiles"], body["model"]) == ([], {}, None)


def test_a_step_never_run_or_missing_is_404(api, numbers, make_pipeline):
    make_pipeline([{"type": "sklearn_dataset", "params": {"name": "iris"}}], name="fresh")

    never = api.get(OUTPUT.format("fresh", 1))
    missing = api.get(OUTPUT.format("numbers", 9))

    assert never.status_code == 404
    assert never.json() == error(
        "not_found",
        "Step 1 has no cached output yet: it has not been run since it was defined. "
        "Run the pipeline up to it first.",
    )
    assert missing.json() == error("not_found", "The pipeline has no enabled step 9.")
    assert api.get(OUTPUT.format("nothing", 1)).json() == error(
        "not_found", "no pipeline named or numbered 'nothing'"
    )


def test_the_output_needs_a_login_only(api_as, numbers):
    anonymous = APIClient().get(OUTPUT.format("numbers", 2))

    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    assert api_as(username="no-permissions").get(OUTPUT.format(numbers.pk, 2)).status_code == 200
    assert rows(APIClient()).status_code == 401


# -- Rows --------------------------------------------------------------------------------------


def test_rows_come_a_page_at_a_time_in_their_order(api, numbers):
    first = rows(api).json()
    last = rows(api, "?page=3").json()

    assert first["key"] == "data" and first["columns"] == ["n", "amount", "city"]
    assert first["kinds"] == {"n": "number", "amount": "number", "city": "text"}
    assert (first["page"], first["pages"], first["page_size"]) == (1, 3, 50)
    assert (first["total"], first["all_rows"]) == (108, 108)
    assert first["rows"][0] == {"number": 1, "cells": ["2", "2", "Oslo"]}
    assert len(first["rows"]) == 50
    assert len(last["rows"]) == 8 and last["rows"][-1]["cells"][0] == "120"
    assert (first["sort"], first["desc"], first["filter"]) == (None, False, [])


def test_rows_come_in_pages_of_the_size_asked(api, numbers):
    first = rows(api, "?page_size=7").json()
    last = rows(api, "?page_size=7&page=16").json()
    past = rows(api, "?page_size=7&page=17")

    assert (first["page"], first["pages"], first["page_size"]) == (1, 16, 7)
    assert [row["number"] for row in first["rows"]] == [1, 2, 3, 4, 5, 6, 7]
    assert [row["number"] for row in last["rows"]] == [106, 107, 108]
    assert last["rows"][-1]["cells"][0] == "120" and last["page_size"] == 7
    assert past.json() == error("not_found", "There is no page 17: the last page is 16.")


def test_the_page_size_is_50_unless_asked_and_at_most_1000(api, numbers):
    whole = rows(api, "?page_size=1000").json()

    assert rows(api, "?page_size=50").json() == rows(api).json()
    assert (whole["pages"], whole["page_size"], len(whole["rows"])) == (1, 1000, 108)


def test_rows_sorted_and_filtered_as_the_inspector_does(api, numbers):
    body = rows(api, "?sort=n&desc=true&filter=amount>=5&filter=n<100").json()

    assert body["filter"] == ["amount>=5", "n<100"]
    assert (body["sort"], body["desc"]) == ("n", True)
    numbers_shown = [int(row["cells"][0]) for row in body["rows"]]
    expected = [n for n in range(99, 0, -1) if n % 7 >= 5 and n % 10 != 1]
    assert numbers_shown == expected and body["total"] == len(expected)
    assert body["all_rows"] == 108


def test_rows_of_a_key_by_name_and_the_first_frame_by_default(api, classifier_pipeline):
    run_now(classifier_pipeline)

    by_default = rows(api, pipeline="classifier", order=3)
    named = rows(api, "?key=data", pipeline="classifier", order=3)

    assert by_default.status_code == 200 and by_default.json()["key"] == "data"
    assert named.json() == by_default.json()


@pytest.mark.parametrize(
    "query, field, message",
    [
        ("?key=nope", "key", "The output has no key 'nope'; it has data."),
        ("?sort=nope", "sort", "The frame has no column 'nope'."),
        ("?page=0", "page", "Ensure this value is greater than or equal to 1."),
        ("?page=two", "page", "A valid integer is required."),
        ("?page_size=0", "page_size", "Ensure this value is greater than or equal to 1."),
        ("?page_size=1001", "page_size", "Ensure this value is less than or equal to 1000."),
        ("?page_size=x", "page_size", "A valid integer is required."),
        ("?desc=maybe", "desc", "Must be a valid boolean."),
        (
            "?filter=nope>1",
            "filter",
            "Filter 'nope>1' names no column of this table ('nope').",
        ),
        (
            "?filter=amount>abc",
            "filter",
            "Filter 'amount>abc': 'abc' is not a value of column 'amount' (number).",
        ),
        ("?filter=amount>", "filter", "Filter 'amount>' needs a value."),
    ],
)
def test_a_rejected_parameter_is_named(api, numbers, query, field, message):
    response = rows(api, query)

    assert response.status_code == 400
    assert response.json() == invalid(field, message)


def test_a_filter_not_understood_is_named_with_the_syntax(api, numbers):
    body = rows(api, "?filter=amount").json()

    assert body["errors"][0]["field"] == "filter"
    assert body["errors"][0]["message"].startswith("Filter 'amount' was not understood")


def test_a_filter_the_column_cannot_apply_is_named(api, make_dataset, make_pipeline):
    make_dataset(pd.DataFrame({"city": ["Oslo", "Paris", "Rome"]}), "cities")
    pipeline = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "cities"}},
            {"type": "cast_types", "params": {"types": {"city": "category"}}},
        ],
        name="cities",
    )
    run_now(pipeline)

    response = rows(api, "?filter=city>Oslo", pipeline="cities")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "filter",
            "message": "Filter city>Oslo was left out: conditions: cannot compare column "
            "'city' (category) with 'Oslo' using '>'",
        }
    ]


def test_a_model_key_is_not_a_frame(api, classifier_pipeline):
    run_now(classifier_pipeline)

    response = rows(api, "?key=model", pipeline="classifier", order=3)

    assert response.json() == invalid("key", "'model' is a model, not a frame.")


def test_rows_past_the_last_page_or_of_no_output_are_404(api, numbers):
    past = rows(api, "?page=4")
    PipelineStep.objects.filter(pipeline=numbers, order=2).update(params={"columns": ["n"]})
    stale = rows(api)

    assert past.json() == error("not_found", "There is no page 4: the last page is 3.")
    assert stale.status_code == 404
    assert stale.json()["message"].startswith("Step 2 has no rows to show: Its cached output")
    assert rows(api, order=9).json() == error("not_found", "The pipeline has no enabled step 9.")


@pytest.mark.django_db(transaction=True)
def test_real_outputs_and_rows_conform_to_the_schema(classifier_pipeline, django_user_model):
    # Generated requests rarely name a real pipeline and step: these do, for every step
    # of a trained pipeline (frames, a model summary, predictions).
    run_now(classifier_pipeline)
    token = issue_token(django_user_model.objects.create_user("conformance"), "tests")[1]
    headers = {"Authorization": f"Token {token}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application, headers=headers)
    output = schema["/api/v1/pipelines/{reference}/steps/{order}/output/"]["GET"]
    page = schema["/api/v1/pipelines/{reference}/steps/{order}/output/rows/"]["GET"]
    sorted_and_filtered = {"sort": "x1", "desc": "true", "filter": ["x1>0"]}

    for order in (1, 2, 3, 4):
        where = {"reference": "classifier", "order": order}
        answers = [
            output.Case(path_parameters=where).call_and_validate(headers=headers, checks=CHECKS),
            *(
                page.Case(path_parameters=where, query=query).call_and_validate(
                    headers=headers, checks=CHECKS
                )
                for query in ({}, {"page": 2}, {"page_size": 7}, sorted_and_filtered)
            ),
        ]
        assert [answer.status_code for answer in answers] == [200] * 5
