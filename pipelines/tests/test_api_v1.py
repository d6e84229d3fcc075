"""What /api/v1/ adds: tokens, the step-type catalog, filters, pagination and ETags."""

import json
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from experiments.models import ThrottleCounter
from experiments.throttling import ApiRateThrottle
from pipelines import runs
from pipelines.api.tokens import issue_token
from pipelines.choices import RunStatus
from pipelines.engine.registry import STEP_TYPES
from pipelines.models import ApiToken, Pipeline, PipelineRun

STEPS = [{"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}}]


def client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def user(django_user_model):
    user = django_user_model.objects.create_user("integrator", password="pw")
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_pipelinerun", "change_pipelinerun"])
    )
    return user


@pytest.fixture
def api(user):
    return client_for(issue_token(user, "tests")[1])


# Tokens


def test_a_new_token_is_shown_once_stored_as_a_digest_and_expires(api, user, settings):
    response = api.post("/api/v1/tokens/", {"name": "ci-deploy"}, format="json")

    assert response.status_code == 201
    token = response.data["token"]
    stored = ApiToken.objects.get(pk=response.data["id"])
    assert token.startswith("mlops_") and token not in {stored.digest, stored.token_key}
    assert response.data["prefix"] == token[:15] == stored.token_key
    assert stored.expiry - timezone.now() > timedelta(days=settings.MLOPS_API_TOKEN_TTL_DAYS - 1)
    listed = api.get("/api/v1/tokens/").data["results"]
    assert [t["name"] for t in listed] == ["ci-deploy", "tests"]
    assert all("token" not in t for t in listed)
    assert client_for(token).get("/api/v1/runs/").status_code == 200


def test_a_token_needs_a_name(api):
    response = api.post("/api/v1/tokens/", {}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid",
        "message": "name: This field is required.",
        "errors": [{"field": "name", "message": "This field is required."}],
    }
    assert ApiToken.objects.count() == 1


def test_a_revoked_or_expired_token_is_refused(api, user):
    other = api.post("/api/v1/tokens/", {"name": "old"}, format="json").data
    expired_row, expired = issue_token(user, "expired")
    ApiToken.objects.filter(pk=expired_row.pk).update(expiry=timezone.now() - timedelta(1))

    assert api.delete(f"/api/v1/tokens/{other['id']}/").status_code == 204

    revoked = client_for(other["token"]).get("/api/v1/runs/")
    assert revoked.status_code == 401 and revoked.json()["code"] == "authentication_failed"
    assert client_for(expired).get("/api/v1/runs/").status_code == 401
    assert set(ApiToken.objects.values_list("name", flat=True)) == {"tests"}


def test_another_users_token_cannot_be_seen_or_revoked(api, django_user_model):
    theirs, _ = issue_token(django_user_model.objects.create_user("them"), "theirs")

    assert api.get(f"/api/v1/tokens/{theirs.pk}/").status_code == 404
    assert api.delete(f"/api/v1/tokens/{theirs.pk}/").json()["code"] == "not_found"
    assert ApiToken.objects.filter(pk=theirs.pk).exists()


def test_a_legacy_drf_key_still_signs_in(user):
    key = Token.objects.create(user=user).key

    assert client_for(key).get("/api/v1/runs/").status_code == 200


def test_a_session_must_send_its_csrf_token_for_unsafe_requests(user, make_pipeline):
    make_pipeline(STEPS, name="iris")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)

    refused = browser.post("/api/v1/pipelines/iris/runs/", {}, content_type="application/json")

    assert refused.status_code == 403
    assert refused.json()["code"] == "permission_denied"
    assert "CSRF" in refused.json()["message"]
    assert browser.get("/api/v1/runs/").status_code == 200
    assert not PipelineRun.objects.exists()


# Throttling


def test_each_user_has_an_api_rate_across_endpoints_and_predictions_have_their_own(
    api, monkeypatch
):
    # DRF reads the rates once at import; this is the table MLOPS_API_RATE fills.
    monkeypatch.setattr(ApiRateThrottle, "THROTTLE_RATES", {"api": "2/minute"})

    codes = [api.get(path).status_code for path in ["/api/v1/runs/", "/api/v1/pipelines/"]]
    refused = api.get("/api/v1/step-types/")

    assert codes == [200, 200]
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert int(refused["Retry-After"]) > 0
    assert ThrottleCounter.objects.get(scope="api").current == 2
    # Another user's requests are counted apart.
    other = User.objects.create_user("other")
    assert client_for(issue_token(other, "t")[1]).get("/api/v1/runs/").status_code == 200


# Step types


def test_step_type_catalog_lists_every_type_with_its_params_schema(api):
    catalog = api.get("/api/v1/step-types/")
    csv = api.get("/api/v1/step-types/csv/")

    assert catalog.status_code == csv.status_code == 200
    assert [t["slug"] for t in catalog.data] == sorted(STEP_TYPES)
    assert csv.data["kind"] == "extraction"
    assert csv.data["label"] == "Uploaded CSV dataset"
    assert csv.data["description"] == "Read an uploaded CSV dataset."
    assert csv.data["params_schema"] == STEP_TYPES["csv"].Params.model_json_schema()
    assert csv.data["params_schema"]["required"] == ["dataset"]
    missing = api.get("/api/v1/step-types/nope/")
    assert missing.status_code == 404
    assert missing.json() == {"code": "not_found", "message": "No step type 'nope'.", "errors": []}


# Filters and pagination


def test_pipeline_list_filters_orders_and_pages_in_four_queries_whatever_the_page_size(
    api, user, make_pipeline, django_assert_num_queries
):
    for index in range(6):
        make_pipeline(STEPS, name=f"p{index}")
    mine = make_pipeline(STEPS, name="mine")
    Pipeline.objects.filter(pk=mine.pk).update(owner=user)
    runs.start_run(mine)

    api.get("/api/v1/step-types/")  # a user's first request makes their throttle row
    for size in (2, 7):
        # The token, the throttle's count, the page count and the page.
        with django_assert_num_queries(4):
            page = api.get("/api/v1/pipelines/", {"page_size": size, "ordering": "-name"})
        assert len(page.data["results"]) == size
    assert page.data["results"][0]["name"] == "p5"
    assert [p["name"] for p in api.get("/api/v1/pipelines/", {"name": "MIN"}).data["results"]] == [
        "mine"
    ]
    by_owner = api.get("/api/v1/pipelines/", {"owner": "integrator"}).data["results"]
    assert [(p["name"], p["owner"]) for p in by_owner] == [("mine", "integrator")]
    queued = api.get("/api/v1/pipelines/", {"last_status": "queued"}).data
    assert [p["name"] for p in queued["results"]] == ["mine"]
    bad = api.get("/api/v1/pipelines/", {"ordering": "secret"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "ordering"


def test_run_list_filters_and_cursor_pages_newest_first(
    api, user, make_pipeline, django_assert_num_queries
):
    pipeline = make_pipeline(STEPS, name="iris", max_active_runs=20)
    made = [runs.start_run(pipeline, user=user if i % 2 else None) for i in range(9)]
    PipelineRun.objects.filter(pk=made[0].pk).update(created_at=timezone.now() - timedelta(2))

    api.get("/api/v1/step-types/")  # a user's first request makes their throttle row
    for size in (2, 8):
        # The token, the throttle's count and the page: no page count, whatever the size.
        with django_assert_num_queries(3):
            page = api.get("/api/v1/runs/", {"page_size": size})
        assert len(page.data["results"]) == size
    first = api.get("/api/v1/runs/", {"page_size": 4}).data
    second = api.get(first["next"]).data
    ids = [r["id"] for r in first["results"] + second["results"]]
    assert ids == [run.pk for run in reversed(made[1:])]
    mine = api.get("/api/v1/runs/", {"started_by": "integrator"}).data["results"]
    assert {r["id"] for r in mine} == {run.pk for run in made[1::2]}
    old = api.get("/api/v1/runs/", {"created_before": timezone.now() - timedelta(1)})
    assert [r["id"] for r in old.data["results"]] == [made[0].pk]
    recent = api.get("/api/v1/runs/", {"created_after": timezone.now() - timedelta(1)})
    assert len(recent.data["results"]) == 8
    assert api.get("/api/v1/runs/", {"trigger": "api"}).data["results"] == []
    bad = api.get("/api/v1/runs/", {"created_after": "yesterday"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "created_after"


# ETag


def test_run_detail_answers_304_while_the_run_is_unchanged(
    api, make_pipeline, django_assert_num_queries
):
    run = runs.start_run(make_pipeline(STEPS, name="iris"))
    first = api.get(f"/api/v1/runs/{run.pk}/")
    etag = first["ETag"]

    # The token, the throttle's count and the ETag's one small query.
    with django_assert_num_queries(3):
        unchanged = api.get(f"/api/v1/runs/{run.pk}/", HTTP_IF_NONE_MATCH=etag)

    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged["ETag"] == etag
    run.claim()
    changed = api.get(f"/api/v1/runs/{run.pk}/", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed.data["status"] == RunStatus.RUNNING
    assert changed["ETag"] != etag


def test_run_detail_etag_through_a_real_server(live_server, user, make_pipeline):
    run = runs.start_run(make_pipeline(STEPS, name="iris"))
    token = issue_token(user, "poller")[1]
    url = f"{live_server.url}/api/v1/runs/{run.pk}/"

    def get(**headers):
        request = urllib.request.Request(
            url, headers={"Authorization": f"Token {token}", **headers}
        )
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    status, headers, body = get()
    assert status == 200 and json.loads(body)["id"] == run.pk
    status, again, body = get(**{"If-None-Match": headers["ETag"]})
    assert (status, body, again["ETag"]) == (304, b"", headers["ETag"])
    runs.cancel_run(run)
    status, _, body = get(**{"If-None-Match": headers["ETag"]})
    assert status == 200 and json.loads(body)["status"] == RunStatus.CANCELLED
