"""The integration API, called the way an integration calls it: with a real token."""

import json

import pytest
from django.contrib.auth.models import Permission
from django.contrib.staticfiles import finders
from django.core.management import call_command
from rest_framework.test import APIClient

from datasources.sources import save_source
from pipelines import runs
from pipelines.api.tokens import issue_token
from pipelines.choices import RunStatus, RunTrigger, StepRunStatus
from pipelines.models import PipelineRun, PipelineStep

IRIS_STEPS = [
    {"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}},
    {"type": "drop_na", "name": "Clean", "params": {"columns": ["target"]}},
]


def token_client(user) -> APIClient:
    """A client holding a new API token of `user`."""
    _, token = issue_token(user, "tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def error(code: str, message: str, *errors: dict) -> dict:
    """The body of every 4xx answer."""
    return {"code": code, "message": message, "errors": list(errors)}


@pytest.fixture
def integrator(django_user_model):
    user = django_user_model.objects.create_user("integrator")
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_pipelinerun", "change_pipelinerun"])
    )
    return user


@pytest.fixture
def api(integrator):
    return token_client(integrator)


@pytest.fixture
def viewer_api(django_user_model):
    return token_client(django_user_model.objects.create_user("viewer"))


@pytest.fixture
def api_with(django_user_model):
    """A token client for a new user holding only the given permissions."""

    def make(*codenames: str) -> APIClient:
        user = django_user_model.objects.create_user("-".join(codenames))
        user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
        return token_client(user)

    return make


@pytest.fixture
def iris(make_pipeline):
    return make_pipeline(IRIS_STEPS, name="iris")


def trigger_url(pipeline) -> str:
    return f"/api/v1/pipelines/{pipeline.pk}/runs/"


def test_requests_without_a_valid_token_get_401(iris):
    anonymous = APIClient()
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    assert anonymous.get("/api/v1/pipelines/").status_code == 401
    assert anonymous.post(trigger_url(iris)).status_code == 401
    assert forged.get("/api/v1/runs/").status_code == 401
    assert anonymous.get("/api/v1/pipelines/")["WWW-Authenticate"] == "Token"
    assert anonymous.get("/api/v1/pipelines/").json() == error(
        "not_authenticated", "Authentication credentials were not provided."
    )
    assert forged.get("/api/v1/runs/").json() == error("authentication_failed", "Invalid token.")
    assert not PipelineRun.objects.exists()


def test_pipeline_list_shows_steps_experiment_and_last_run_in_one_page_query(
    api, iris, make_pipeline, django_assert_num_queries
):
    make_pipeline(IRIS_STEPS[:1], name="another")
    runs.start_run(iris)

    api.get("/api/v1/step-types/")  # a user's first request makes their throttle row
    # The token lookup, the throttle's count, the page count and the page itself.
    with django_assert_num_queries(4):
        response = api.get("/api/v1/pipelines/")

    assert response.status_code == 200
    assert response.data["count"] == 2
    by_name = {p["name"]: p for p in response.data["results"]}
    assert by_name["iris"]["step_count"] == 2
    assert by_name["iris"]["last_run_status"] == "queued"
    assert by_name["iris"]["experiment"] == "pipeline/iris"
    assert by_name["another"]["last_run_status"] is None


def test_pipeline_detail_by_name_or_id_lists_its_steps(api, iris):
    by_name = api.get("/api/v1/pipelines/iris/")
    by_id = api.get(f"/api/v1/pipelines/{iris.pk}/")

    assert by_name.status_code == by_id.status_code == 200
    assert by_name.data == by_id.data
    assert by_name.data["steps"][0] == {
        "order": 1,
        "type": "sklearn_dataset",
        "name": "Load",
        "params": {"name": "iris"},
        "enabled": True,
    }
    assert [s["order"] for s in by_name.data["steps"]] == [1, 2]


def test_unknown_pipeline_is_404(api):
    response = api.get("/api/v1/pipelines/nothing/")

    assert response.status_code == 404
    assert response.json() == error("not_found", "no pipeline named or numbered 'nothing'")


def test_trigger_queues_an_api_run_for_a_worker_started_by_the_token_user(
    api, iris, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as enqueued:
        response = api.post(trigger_url(iris), {}, format="json")

    assert response.status_code == 202
    run = PipelineRun.objects.get()
    assert response.data["id"] == run.pk
    assert response.data["status"] == "queued"
    assert response.data["trigger"] == "api"
    assert response.data["started_by"] == "integrator"
    assert response.data["url"] == f"http://testserver/api/v1/runs/{run.pk}/"
    assert response["Location"] == response.data["url"]
    assert (run.trigger, run.started_by.username) == (RunTrigger.API, "integrator")
    assert len(enqueued) == 1 and not run.step_runs.exists()  # handed to a worker, not run


def test_trigger_by_name_from_a_step(api, iris):
    response = api.post("/api/v1/pipelines/iris/runs/", {"from_step": 2}, format="json")

    assert response.status_code == 202
    assert PipelineRun.objects.get().start_step == 2


def test_trigger_while_a_run_is_active_with_the_refuse_policy_is_409_naming_it(api, make_pipeline):
    pipeline = make_pipeline(IRIS_STEPS, name="strict", concurrency_policy="refuse")
    first = api.post(trigger_url(pipeline))

    second = api.post(trigger_url(pipeline))

    assert second.status_code == 409
    assert second.data["code"] == "conflict" and second.data["errors"] == []
    assert f"run #{first.data['id']} is queued" in second.data["message"]
    assert PipelineRun.objects.count() == 1


def test_trigger_while_a_run_is_active_with_the_queue_policy_waits(api, iris):
    api.post(trigger_url(iris))

    second = api.post(trigger_url(iris))

    assert second.status_code == 202
    assert second.data["status"] == "queued"
    assert PipelineRun.objects.get(pk=second.data["id"]).dispatched_at is None


def test_trigger_without_the_add_permission_is_403(viewer_api, iris):
    response = viewer_api.post(trigger_url(iris))

    assert response.status_code == 403
    assert response.json() == error(
        "permission_denied", "This needs the pipelines.add_pipelinerun permission."
    )
    assert not PipelineRun.objects.exists()


def test_trigger_needs_the_add_permission_not_the_change_one(api_with, iris):
    change_only = api_with("change_pipelinerun").post(trigger_url(iris))
    add_only = api_with("add_pipelinerun").post(trigger_url(iris))

    assert change_only.status_code == 403
    assert change_only.data["code"] == "permission_denied"
    assert "pipelines.add_pipelinerun" in change_only.data["message"]
    assert add_only.status_code == 202
    assert PipelineRun.objects.count() == 1


def test_trigger_again_with_its_idempotency_key_returns_the_first_run_with_200(api, iris):
    first = api.post(trigger_url(iris), {}, format="json", HTTP_IDEMPOTENCY_KEY="order-17")

    again = api.post(trigger_url(iris), {}, format="json", HTTP_IDEMPOTENCY_KEY="order-17")
    other = api.post(trigger_url(iris), {}, format="json", HTTP_IDEMPOTENCY_KEY="order-18")

    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.data == first.data
    assert again["Location"] == first["Location"]
    assert other.data["id"] != first.data["id"]
    assert PipelineRun.objects.count() == 2


def test_trigger_retried_with_its_idempotency_key_is_not_refused_by_its_own_run(api, make_pipeline):
    pipeline = make_pipeline(IRIS_STEPS, name="strict", concurrency_policy="refuse")
    first = api.post(trigger_url(pipeline), HTTP_IDEMPOTENCY_KEY="retry-me")

    retry = api.post(trigger_url(pipeline), HTTP_IDEMPOTENCY_KEY="retry-me")

    assert retry.status_code == 200
    assert retry.data["id"] == first.data["id"]


def test_another_users_idempotency_key_starts_its_own_run(api, api_with, iris):
    mine = api.post(trigger_url(iris), HTTP_IDEMPOTENCY_KEY="shared")

    theirs = api_with("add_pipelinerun").post(trigger_url(iris), HTTP_IDEMPOTENCY_KEY="shared")

    assert theirs.status_code == 202
    assert theirs.data["id"] != mine.data["id"]


def test_an_idempotency_key_over_255_characters_is_400_naming_the_header(api, iris):
    response = api.post(trigger_url(iris), HTTP_IDEMPOTENCY_KEY="k" * 256)

    assert response.status_code == 400
    message = "Ensure this header has no more than 255 characters."
    assert response.json() == error(
        "invalid",
        f"Idempotency-Key: {message}",
        {"field": "Idempotency-Key", "message": message},
    )
    assert not PipelineRun.objects.exists()
    assert api.post(trigger_url(iris), HTTP_IDEMPOTENCY_KEY="k" * 255).status_code == 202


def test_trigger_with_an_unknown_field_is_400_naming_it(api, iris):
    response = api.post(trigger_url(iris), {"from_stepp": 2}, format="json")

    assert response.status_code == 400
    message = "Unknown field; a trigger accepts: from_step, to_step, only_step."
    assert response.json() == error(
        "invalid", f"from_stepp: {message}", {"field": "from_stepp", "message": message}
    )
    assert not PipelineRun.objects.exists()


def test_trigger_from_the_browsable_api_form_is_not_refused_for_its_csrf_token(
    client, integrator, iris
):
    client.force_login(integrator)

    response = client.post(trigger_url(iris), {"from_step": 2, "csrfmiddlewaretoken": "t"})

    assert response.status_code == 202


def test_trigger_from_a_disabled_step_is_400_naming_step_and_field(api, iris):
    PipelineStep.objects.filter(pipeline=iris, order=2).update(enabled=False)

    response = api.post(trigger_url(iris), {"from_step": 2}, format="json")

    assert response.status_code == 400
    assert response.data["code"] == "pipeline_invalid"
    assert response.data["errors"] == [
        {"step": 2, "field": "from_step", "message": "this step is disabled"}
    ]
    assert not PipelineRun.objects.exists()


def test_trigger_from_a_missing_step_is_400_naming_step_and_field(api, iris):
    response = api.post(trigger_url(iris), {"from_step": 9}, format="json")

    assert response.status_code == 400
    assert response.json() == error(
        "pipeline_invalid",
        "step 9, from_step: no step has this order",
        {"step": 9, "field": "from_step", "message": "no step has this order"},
    )
    assert not PipelineRun.objects.exists()


def test_trigger_with_a_malformed_from_step_is_400(api, iris):
    response = api.post(trigger_url(iris), {"from_step": "second"}, format="json")

    assert response.status_code == 400
    assert response.json() == error(
        "invalid",
        "from_step: A valid integer is required.",
        {"field": "from_step", "message": "A valid integer is required."},
    )


def test_trigger_of_an_invalid_pipeline_is_400_naming_step_and_field(api, iris):
    PipelineStep.objects.filter(pipeline=iris, order=2).update(params={"colour": "red"})

    response = api.post(trigger_url(iris))

    assert response.status_code == 400
    assert response.data["code"] == "pipeline_invalid"
    assert {
        "step": 2,
        "field": "params.colour",
        "message": "is not a parameter of this step type",
    } in (response.data["errors"])
    assert not PipelineRun.objects.exists()


def test_run_detail_shows_step_runs_after_the_run_executes(api, iris):
    queued = api.post(trigger_url(iris)).data
    runs.execute_run(queued["id"], isolated=False)

    response = api.get(queued["url"])

    assert response.status_code == 200
    run = response.data
    assert (run["status"], run["trigger"], run["started_by"]) == ("succeeded", "api", "integrator")
    assert run["started_at"] and run["finished_at"] and run["mlflow_run_id"]
    assert run["error_message"] == "" and "error_traceback" not in run
    assert [(s["order"], s["type"], s["status"]) for s in run["step_runs"]] == [
        (1, "sklearn_dataset", StepRunStatus.SUCCEEDED),
        (2, "drop_na", StepRunStatus.SUCCEEDED),
    ]
    assert (run["step_runs"][1]["rows_out"], run["step_runs"][1]["columns_out"]) == (150, 5)


def test_run_detail_shows_the_traceback_to_staff_only(api, iris, admin_user):
    run = runs.start_run(iris)
    run.claim()
    run.mark_failed("Step 2 failed: boom", traceback="Traceback (most recent call last): ...")

    mine = api.get(f"/api/v1/runs/{run.pk}/").data
    staff = token_client(admin_user).get(f"/api/v1/runs/{run.pk}/").data

    assert mine["error_message"] == staff["error_message"] == "Step 2 failed: boom"
    assert "error_traceback" not in mine
    assert staff["error_traceback"].startswith("Traceback")


def test_run_list_filters_by_pipeline_and_status_newest_first(
    api, iris, make_pipeline, django_assert_num_queries
):
    other = make_pipeline(IRIS_STEPS, name="other", max_active_runs=3)
    older, newer = runs.start_run(other), runs.start_run(other)
    runs.cancel_run(runs.start_run(iris))

    api.get("/api/v1/step-types/")  # a user's first request makes their throttle row
    # The token lookup, the throttle's count, the pipeline named in the filter and the
    # page (a cursor: no count).
    with django_assert_num_queries(4):
        response = api.get("/api/v1/runs/", {"pipeline": "other", "status": "queued"})

    assert [r["id"] for r in response.data["results"]] == [newer.pk, older.pk]
    assert len(api.get("/api/v1/runs/", {"status": "cancelled"}).data["results"]) == 1
    assert len(api.get("/api/v1/runs/", {"pipeline": iris.pk}).data["results"]) == 1


def test_run_list_rejects_unknown_filters_values(api):
    paused = api.get("/api/v1/runs/", {"status": "paused"})
    response = api.get("/api/v1/runs/", {"pipeline": "nothing"})

    choice = "Select a valid choice. paused is not one of the available choices."
    assert paused.status_code == 400
    assert paused.json() == error(
        "invalid", f"status: {choice}", {"field": "status", "message": choice}
    )
    assert response.status_code == 400
    message = "no pipeline named or numbered 'nothing'"
    assert response.json() == error(
        "invalid", f"pipeline: {message}", {"field": "pipeline", "message": message}
    )


def test_cancel_a_queued_run(api, iris):
    run = runs.start_run(iris)

    response = api.post(f"/api/v1/runs/{run.pk}/cancel/")

    assert response.status_code == 200
    assert response.data["status"] == RunStatus.CANCELLED
    assert response.data["error_message"] == "Cancelled before it started."


def test_cancel_a_finished_run_is_409(api, iris):
    run = runs.start_run(iris)
    run.claim()
    run.mark_succeeded({})

    response = api.post(f"/api/v1/runs/{run.pk}/cancel/")

    assert response.status_code == 409
    assert response.json() == error("conflict", f"Run #{run.pk} has already finished (succeeded).")


def test_cancel_without_the_change_permission_is_403(viewer_api, iris):
    run = runs.start_run(iris)

    response = viewer_api.post(f"/api/v1/runs/{run.pk}/cancel/")

    assert response.status_code == 403
    assert response.data["code"] == "permission_denied"
    assert "pipelines.change_pipelinerun" in response.data["message"]
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


def test_cancel_with_only_the_add_permission_is_403(api_with, iris):
    run = runs.start_run(iris)

    response = api_with("add_pipelinerun").post(f"/api/v1/runs/{run.pk}/cancel/")

    assert response.status_code == 403
    assert response.data["code"] == "permission_denied"
    assert "pipelines.change_pipelinerun" in response.data["message"]
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


def test_data_source_secret_is_in_no_response_nor_run_snapshot(api, make_pipeline):
    secret = "correct-horse-battery-staple"
    source = save_source(
        {"name": "warehouse", "kind": "postgresql", "host": "db.internal", "user": "reader"}, secret
    )
    make_pipeline(
        [{"type": "sql", "params": {"datasource": "warehouse", "table": "sales"}}], name="sales"
    )

    responses = [
        api.post("/api/v1/pipelines/sales/runs/"),
        api.get("/api/v1/pipelines/sales/"),
        api.get("/api/v1/pipelines/"),
    ]
    responses.append(api.get(responses[0].data["url"]))

    snapshot = json.dumps(PipelineRun.objects.get().definition)
    for text in [snapshot, *(r.content.decode() for r in responses)]:
        assert secret not in text
        assert source.encrypted_secret not in text


def test_schema_validates_and_documents_the_run_trigger(api, tmp_path, client, admin_user):
    path = tmp_path / "schema.json"
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", "--file", path
    )

    schema = json.loads(path.read_text())
    assert all(path.startswith("/api/v1/") for path in schema["paths"])
    trigger = schema["paths"]["/api/v1/pipelines/{reference}/runs/"]["post"]
    assert set(trigger["responses"]) == {"200", "202", "400", "401", "403", "404", "409", "429"}
    error_body = {"$ref": "#/components/schemas/Error"}
    for code in ["400", "401", "403", "404", "409", "429"]:
        assert trigger["responses"][code]["content"]["application/json"]["schema"] == error_body
    header = next(p for p in trigger["parameters"] if p["in"] == "header")
    assert (header["name"], header["schema"]["maxLength"]) == ("Idempotency-Key", 255)
    assert api.get("/api/v1/schema/").status_code == 200
    client.force_login(admin_user)
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    # Swagger UI comes from this site's static files, so the page works offline.
    page = docs.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn.jsdelivr" not in page
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
