"""The online prediction endpoint, called as an integration calls it: with a token."""

import io
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from experiments import serving, throttling, tracking
from experiments.models import (
    LATENCY_BUCKETS_MS,
    ModelPolicy,
    ServingStat,
    ThrottleCounter,
    latency_bucket,
)
from experiments.throttling import PredictRateThrottle
from pipelines import runs
from pipelines.choices import RunStatus

FEATURES = ["x1", "x2", "colour", "visits"]
ROW = {"x1": 0.5, "x2": -1.0, "colour": "red", "visits": 3}


def frame(size: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    x1, x2 = rng.normal(size=size), rng.normal(size=size)
    colour = rng.choice(["red", "green", "blue"], size=size)
    visits = rng.integers(0, 10, size=size)
    label = ((x1 + 0.5 * x2 + (colour == "red")) > 0.3).astype(int)
    x2[:5] = np.nan  # the model imputes missing readings, so the API accepts null
    data = {"x1": x1, "x2": x2, "colour": colour, "visits": visits}
    return pd.DataFrame({**data, "label": label, "amount": 3 * x1 - x2 + visits})


def register(make_pipeline, training: dict, name: str, alias: str = "champion") -> str:
    """Train with a real pipeline whose last step registers the model; its run's model URI."""
    steps = [
        {"type": "csv", "params": {"dataset": "data"}},
        training,
        {"type": "register_model", "params": {"name": name, "alias": alias}},
    ]
    run = runs.start_run(make_pipeline(steps, name=f"train-{name}"), wait=True)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    return tracking.get_run(run.mlflow_run_id)["tags"]["mlops.model_uri"]


def train(task: str, estimator: str, target: str) -> dict:
    params = {"task": task, "estimator": estimator, "target": target, "features": FEATURES}
    return {"type": "train_sklearn", "params": params}


@pytest.fixture(autouse=True)
def fresh_model_cache():
    serving.forget_models()


@pytest.fixture
def data(make_dataset):
    return make_dataset(frame(), "data")


@pytest.fixture
def classifier(data, make_pipeline):
    return register(make_pipeline, train("classification", "logistic_regression", "label"), "churn")


def token_client(user) -> APIClient:
    call_command("drf_create_token", user.username, stdout=io.StringIO())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=user).key}")
    return client


@pytest.fixture
def predictor(django_user_model):
    user = django_user_model.objects.create_user("predictor")
    user.user_permissions.add(Permission.objects.get(codename="predict"))
    return user


@pytest.fixture
def api(predictor):
    return token_client(predictor)


def post(client, path: str, body) -> object:
    return client.post(f"/api/models/{path}/predict", body, format="json")


def test_classifier_answers_class_and_probabilities_by_alias_and_by_version(api, classifier):
    records = [ROW, {**ROW, "x1": -2.0, "x2": None, "colour": "blue"}]

    by_alias = post(api, "churn@champion", {"records": records})
    by_version = post(api, "churn/1", {"columns": {c: [r[c] for r in records] for c in FEATURES}})
    split = {"columns": FEATURES, "data": [[r[c] for c in FEATURES] for r in records]}
    as_mlflow = post(api, "churn/1", {"dataframe_split": split})

    assert by_alias.status_code == 200, by_alias.json()
    answer = by_alias.json()
    assert {k: answer[k] for k in ("model", "version", "model_uri")} == {
        "model": "churn",
        "version": 1,
        "model_uri": "models:/churn/1",
    }
    model = tracking.load_model(classifier)
    X = pd.DataFrame(records, columns=FEATURES).astype({"x2": float})
    expected = [
        {"prediction": int(p), "probability_0": float(a), "probability_1": float(b)}
        for p, (a, b) in zip(model.predict(X), model.predict_proba(X), strict=True)
    ]
    assert answer["predictions"] == expected
    assert by_version.json()["predictions"] == answer["predictions"]
    assert as_mlflow.json()["predictions"] == answer["predictions"]
    assert by_alias["Content-Type"] == "application/json"


def test_regressor_answers_a_value_and_clustering_a_cluster(api, data, make_pipeline):
    regressor = register(
        make_pipeline, train("regression", "linear_regression", "amount"), "amounts"
    )
    clustering = {
        "type": "cluster",
        "params": {"estimator": "k_means", "exclude": ["label", "amount"], "hyperparams": {}},
    }
    clusterer = register(make_pipeline, clustering, "segments")

    value = post(api, "amounts@champion", {"records": [ROW]}).json()
    cluster = post(api, "segments/1", {"records": [ROW, {**ROW, "x1": 9.0}]}).json()

    X = pd.DataFrame([ROW])
    assert value["predictions"] == [
        {"prediction": pytest.approx(tracking.load_model(regressor).predict(X)[0])}
    ]
    clusters = tracking.load_model(clusterer).predict(pd.DataFrame([ROW, {**ROW, "x1": 9.0}]))
    assert cluster["predictions"] == [{"prediction": int(c)} for c in clusters]
    assert cluster["model_uri"] == "models:/segments/1"


def test_bad_input_is_refused_naming_the_record_and_the_column(api, classifier, settings):
    settings.MLOPS_PREDICT_MAX_ROWS = 3
    without_x2 = {k: v for k, v in ROW.items() if k != "x2"}
    cases = [
        (
            {"records": [ROW, without_x2]},
            "record 1, column 'x2': missing",
        ),
        (
            {"records": [{**ROW, "age": 40}]},
            "record 0, column 'age': unknown column; the model takes x1, x2, colour, visits",
        ),
        (
            {"records": [ROW, ROW, {**ROW, "x1": "high"}]},
            "record 2, column 'x1': expected a number (double), got a string ('high')",
        ),
        (
            {"records": [{**ROW, "visits": 2.5}]},
            "record 0, column 'visits': expected an integer (long), got a number (2.5)",
        ),
        (
            {"records": [{**ROW, "colour": 3}]},
            "record 0, column 'colour': expected a string (string), got a number (3)",
        ),
        (
            {"records": [{**ROW, "x1": True}]},
            "record 0, column 'x1': expected a number (double), got a boolean (True)",
        ),
        (
            {"columns": {"x1": [1.0], "x2": [1.0], "colour": ["red"]}},
            "column 'visits': missing: the model needs this column",
        ),
        ({"records": []}, '"records" is empty: send at least one record'),
        (
            {"records": [ROW] * 4},
            "too many records: 4 sent, at most 3 per request (MLOPS_PREDICT_MAX_ROWS); "
            "split them into several requests",
        ),
        ([ROW], "the body must be a JSON object, got a list"),
        ({"records": [ROW, "x"]}, "record 1: must be an object, got a string"),
        ({"rows": [ROW]}, 'the body must be one of {"records": [{column: value}, ...]}, '),
    ]
    for body, message in cases:
        answer = post(api, "churn@champion", body)

        assert answer.status_code == 400, (body, answer.json())
        assert answer.json()["code"] == "invalid_input", (body, answer.json())
        assert answer.json()["message"].startswith(message), (body, answer.json())

    two_wrong = post(api, "churn/1", {"records": [{**ROW, "x1": "a"}, {**ROW, "visits": "b"}]})
    assert two_wrong.json() == {
        "code": "invalid_input",
        "message": "record 0, column 'x1': expected a number (double), got a string ('a') "
        "(and 1 more, listed in errors)",
        "errors": [
            {
                "record": 0,
                "field": "x1",
                "message": "expected a number (double), got a string ('a')",
            },
            {
                "record": 1,
                "field": "visits",
                "message": "expected an integer (long), got a string ('b')",
            },
        ],
    }
    stat = ServingStat.objects.get(model_name="churn", version=1)
    assert (stat.requests, stat.errors, stat.rows) == (len(cases) + 1, len(cases) + 1, 0)


def test_unknown_model_alias_or_version_is_a_404_naming_it(api, classifier):
    cases = {
        "nope@champion": "No model nope@champion: ",
        "churn@staging": "No model churn@staging: Registered model alias staging not found.",
        "churn/7": "No model churn version 7: Model Version (name=churn, version=7) not found",
    }
    for path, message in cases.items():
        answer = post(api, path, {"records": [ROW]})

        assert answer.status_code == 404
        assert answer.json()["code"] == "not_found"
        assert answer.json()["message"].startswith(message)
    assert not ServingStat.objects.exists()


def test_paths_no_model_can_have_are_json_404s(api, classifier):
    for path in ("churn/99999999999999999999", "churn@not%20an%20alias", "churn/-1"):
        answer = post(api, path, {"records": [ROW]})

        assert answer.status_code == 404, path
        assert answer["Content-Type"] == "application/json"
        assert answer.json()["code"] == "not_found"
    assert not ServingStat.objects.exists()


def test_a_moved_alias_is_served_on_the_next_request_and_models_load_once(
    api, classifier, monkeypatch
):
    loads = []
    real_load = tracking.load_model
    monkeypatch.setattr(tracking, "load_model", lambda uri: loads.append(uri) or real_load(uri))

    first = [post(api, "churn@champion", {"records": [ROW]}).json() for _ in range(3)]
    tracking.register_model(classifier, "churn", alias="champion")
    moved = post(api, "churn@champion", {"records": [ROW]}).json()
    pinned = post(api, "churn/1", {"records": [ROW]}).json()

    assert [answer["version"] for answer in first] == [1, 1, 1]
    assert moved["version"] == 2
    assert moved["model_uri"] == "models:/churn/2"
    assert pinned["version"] == 1
    assert loads == ["models:/churn/1", "models:/churn/2"]
    assert serving.loaded_versions() == [("churn", 2), ("churn", 1)]


def test_callers_need_a_token_and_the_predict_permission_or_the_models_group(
    classifier, django_user_model
):
    anonymous = post(APIClient(), "churn@champion", {"records": [ROW]})
    outsider = django_user_model.objects.create_user("outsider")
    refused = post(token_client(outsider), "churn@champion", {"records": [ROW]})
    group = Group.objects.create(name="churn-callers")
    ModelPolicy.objects.create(name="churn", predict_group=group)
    member = django_user_model.objects.create_user("member")
    member.groups.add(group)
    member_api = token_client(member)

    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == "Token"
    assert refused.status_code == 403
    assert "experiments.predict" in refused.json()["message"]
    assert post(member_api, "churn@champion", {"records": [ROW]}).status_code == 200
    # The group admits its model only.
    assert post(member_api, "other@champion", {"records": [ROW]}).status_code == 403


def test_too_many_requests_are_refused_with_429(api, classifier, monkeypatch):
    # DRF reads the rates once at import; this is the table MLOPS_PREDICT_RATE fills.
    monkeypatch.setattr(PredictRateThrottle, "THROTTLE_RATES", {"predict": "2/minute"})

    codes = [post(api, "churn@champion", {"records": [ROW]}).status_code for _ in range(3)]
    refused = post(api, "churn@champion", {"records": [ROW]})

    assert codes == [200, 200, 429]
    assert refused.json()["message"].startswith("Request was throttled.")
    assert int(refused["Retry-After"]) > 0
    # Refusals are not counted: the row holds the two requests allowed.
    assert ThrottleCounter.objects.get(scope="predict").current == 2


def test_the_permission_is_one_query_and_read_on_every_request(
    classifier, django_user_model, django_assert_num_queries
):
    predict = Permission.objects.get(codename="predict")
    own = django_user_model.objects.create_user("own")
    own.user_permissions.add(predict)
    holders = Group.objects.create(name="holders")
    holders.permissions.add(predict)
    by_group = django_user_model.objects.create_user("by-group")
    by_group.groups.add(holders)
    callers = Group.objects.create(name="churn-callers")
    ModelPolicy.objects.create(name="churn", predict_group=callers)
    member = django_user_model.objects.create_user("member")
    member.groups.add(callers)
    admin = django_user_model.objects.create_superuser("admin")
    inactive = django_user_model.objects.create_user("inactive", is_active=False)
    inactive.user_permissions.add(predict)
    nobody = django_user_model.objects.create_user("nobody")
    nobody.groups.add(Group.objects.create(name="unrelated"))
    ModelPolicy.objects.create(name="other")  # a policy without a group admits nobody

    expected = {
        own: (True, True),
        by_group: (True, True),
        member: (True, False),
        admin: (True, True),
        inactive: (False, False),
        nobody: (False, False),
    }
    for user, (churn, other) in expected.items():
        with django_assert_num_queries(0 if user in (admin, inactive) else 1):
            assert serving.may_predict(user, "churn") is churn, user
        assert serving.may_predict(user, "other") is other, user

    # Revoked in the admin: refused from the next request on, in every way it was given.
    clients = {user: token_client(user) for user in (own, by_group, member)}
    for client in clients.values():
        assert post(client, "churn@champion", {"records": [ROW]}).status_code == 200
    own.user_permissions.remove(predict)
    holders.permissions.remove(predict)
    member.groups.remove(callers)
    for client in clients.values():
        assert post(client, "churn@champion", {"records": [ROW]}).status_code == 403
    own.user_permissions.add(predict)
    assert post(clients[own], "churn@champion", {"records": [ROW]}).status_code == 200
    # An account deactivated is refused at the token already.
    own.is_active = False
    own.save()
    assert post(clients[own], "churn@champion", {"records": [ROW]}).status_code == 401


def test_the_rate_is_per_user(api, predictor, classifier, django_user_model, monkeypatch):
    monkeypatch.setattr(PredictRateThrottle, "THROTTLE_RATES", {"predict": "1/hour"})
    other = django_user_model.objects.create_user("other")
    other.user_permissions.add(Permission.objects.get(codename="predict"))
    other_api = token_client(other)

    assert post(api, "churn@champion", {"records": [ROW]}).status_code == 200
    assert post(api, "churn@champion", {"records": [ROW]}).status_code == 429
    assert post(other_api, "churn@champion", {"records": [ROW]}).status_code == 200
    assert post(other_api, "churn/1", {"records": [ROW]}).status_code == 429


# The throttle's arithmetic at chosen times: a rate of 10 per minute, from 6000 s (the
# start of period 100). Marked `database` so it runs on MariaDB too, where the UPDATE's
# assignments see each other's new values.
START = 6000.0


@pytest.mark.database
@pytest.mark.django_db
def test_the_throttle_allows_the_rate_then_refuses_until_the_window_slides():
    take = throttling.take

    allowed = [take("user:1", "predict", 10, 60, START + i) for i in range(12)]

    assert allowed == [0.0] * 10 + [pytest.approx(50.0), pytest.approx(49.0)]  # next period
    row = ThrottleCounter.objects.get()
    assert (row.slot, row.current, row.previous) == (100, 10, 0)
    # In the next period the ten fade: 21 s in (f = 0.35) 6.5 of them count, so four
    # more pass (6.5 + 3 < 10); the fifth waits until 10 * (1 - f) + 4 < 10, f > 0.4.
    assert [take("user:1", "predict", 10, 60, START + 81) for _ in range(5)] == [0.0] * 4 + [
        pytest.approx(3.0)
    ]
    row.refresh_from_db()
    assert (row.slot, row.current, row.previous) == (101, 4, 10)
    # Two periods later nothing is left: a new window.
    assert take("user:1", "predict", 10, 60, START + 180) == 0.0
    row.refresh_from_db()
    assert (row.slot, row.current, row.previous) == (103, 1, 0)
    # Another user and another scope have their own rows.
    assert take("user:2", "predict", 10, 60, START + 180) == 0.0
    assert take("user:1", "other", 10, 60, START + 180) == 0.0
    assert ThrottleCounter.objects.count() == 3


def test_retry_after_is_when_the_estimate_falls_below_the_rate():
    until = throttling.seconds_until_allowed
    # Full in this period (f = 0.25): the next period, once 10 * (1 - g) < 10, g > 0.
    assert until(100, 10, 0, 10, 60, START + 15) == pytest.approx(45.0)
    # 20 in this period: half of them must fade in the next, g > 0.5.
    assert until(100, 20, 0, 10, 60, START + 15) == pytest.approx(75.0)
    # 4 now and 12 before, at f = 0.25 (4 + 9 = 13): 12 * (1 - f) < 6 from f = 0.5.
    assert until(100, 4, 12, 10, 60, START + 15) == pytest.approx(15.0)
    # Read in the next period: the row's 12 became the previous period's.
    assert until(99, 12, 0, 10, 60, START + 6) == pytest.approx(4.0)
    assert until(100, 3, 0, 10, 60, START + 15) == 0.0


def test_each_request_is_counted_for_its_version_and_minute(api, classifier):
    for rows in (1, 2, 3):
        post(api, "churn@champion", {"records": [ROW] * rows})
    post(api, "churn/1", {"records": [{**ROW, "x1": "a"}]})

    stat = ServingStat.objects.get()
    assert (stat.model_name, stat.version) == ("churn", 1)
    assert (stat.requests, stat.errors, stat.rows) == (4, 1, 6)
    assert 0 < stat.latency_ms_max <= stat.latency_ms_total
    assert stat.minute.second == 0
    buckets = [f"latency_le_{b}ms" for b in LATENCY_BUCKETS_MS] + ["latency_over_2500ms"]
    assert sum(getattr(stat, b) for b in buckets) == 4
    assert getattr(stat, latency_bucket(stat.latency_ms_max)) >= 1


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_no_count_is_lost_under_eight_concurrent_clients(api, classifier):
    per_client = 5
    failures = []

    def client_thread():
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=api._credentials["HTTP_AUTHORIZATION"])
            for _ in range(per_client):
                answer = post(client, "churn@champion", {"records": [ROW, ROW]})
                if answer.status_code != 200:
                    failures.append(answer.content)
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            failures.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=client_thread) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    stats = ServingStat.objects.filter(model_name="churn", version=1)
    assert sum(s.requests for s in stats) == 8 * per_client
    assert sum(s.rows for s in stats) == 8 * per_client * 2
    assert sum(s.errors for s in stats) == 0
    buckets = [f"latency_le_{b}ms" for b in LATENCY_BUCKETS_MS] + ["latency_over_2500ms"]
    assert sum(getattr(s, b) for s in stats for b in buckets) == 8 * per_client


@pytest.mark.django_db(transaction=True)
def test_prediction_through_a_real_server(live_server, predictor, classifier):
    token = Token.objects.create(user=predictor).key
    body = json.dumps({"records": [ROW]}).encode()
    request = urllib.request.Request(
        f"{live_server.url}/api/models/churn@champion/predict",
        data=body,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["Allow"] == "POST, OPTIONS"
    assert answer["model_uri"] == "models:/churn/1"
    assert set(answer["predictions"][0]) == {"prediction", "probability_0", "probability_1"}

    text = urllib.request.Request(request.full_url, data=b"x1=1", headers=request.headers)
    text.add_header("Content-Type", "text/plain")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(text, timeout=30)
    assert refused.value.code == 415


def test_the_alias_read_answers_as_mlflow_does_and_falls_back_to_name_what_is_missing(
    classifier,
):
    tracking.register_model(classifier, "churn", alias="challenger")

    for alias in ("champion", "challenger"):
        found = tracking.find_model_version_by_alias("churn", alias)
        assert found == tracking.find_model_version("churn", alias)
    with pytest.raises(tracking.ModelNotFound, match="alias staging not found"):
        tracking.find_model_version_by_alias("churn", "staging")
    with pytest.raises(tracking.ModelNotFound):
        tracking.find_model_version_by_alias("nope", "champion")


def test_a_served_forest_predicts_in_the_request_thread_and_the_registry_copy_is_unchanged(
    api, data, make_pipeline
):
    training = train("classification", "random_forest", "label")
    training["params"]["hyperparams"] = {"n_estimators": 5, "n_jobs": -1}
    uri = register(make_pipeline, training, "forest")

    answer = post(api, "forest@champion", {"records": [ROW]})

    assert answer.status_code == 200, answer.json()
    served = serving.load("forest", 1, tracking.find_model_version("forest", "champion")["source"])
    assert served.model[-1].n_jobs is None
    registered = tracking.load_model(uri)
    assert registered[-1].n_jobs == -1
    X = pd.DataFrame([ROW])
    assert answer.json()["predictions"][0]["prediction"] == int(registered.predict(X)[0])


def test_a_split_of_numbers_builds_the_frame_the_checks_column_by_column_build():
    columns = {"a": "double", "b": "float"}
    rows = [[1, 2.5], [None, -3], [0.25, None]]
    split = {"dataframe_split": {"columns": ["b", "a"], "data": rows}}
    records = {"records": [{"b": b, "a": a} for b, a in rows]}

    pd.testing.assert_frame_equal(
        serving.records_frame(split, columns), serving.records_frame(records, columns)
    )
    wrong = {"dataframe_split": {"columns": ["b", "a"], "data": [[1, True]]}}
    with pytest.raises(serving.InvalidInput, match="column 'a': expected a number"):
        serving.records_frame(wrong, columns)


def test_a_prediction_costs_a_fixed_number_of_queries(api, classifier):
    post(api, "churn@champion", {"records": [ROW]})  # loads the model, creates the rows

    with CaptureQueriesContext(connection) as queries:
        answer = post(api, "churn@champion", {"records": [ROW] * 5})

    assert answer.status_code == 200
    # The token, the permission (one query), the throttle's UPDATE and the count's UPDATE:
    # none per record.
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    assert statements == ["SELECT", "SELECT", "UPDATE", "UPDATE"]
