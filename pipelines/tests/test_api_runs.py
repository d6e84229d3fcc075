"""/api/v1/runs/{id}/rerun/ and /api/v1/runs/{id}/log/: run again, and tail a run's log."""

import json
import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from pipelines import runs
from pipelines.api.tokens import issue_token
from pipelines.choices import RunStatus, RunTrigger
from pipelines.models import PipelineRun, PipelineStep

STEPS = [
    {"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}},
    {"type": "drop_na", "name": "Clean", "params": {"columns": ["target"]}},
    {"type": "drop_columns", "name": "Trim", "params": {"columns": ["target"]}},
]
START = "pipelines.add_pipelinerun"


def error(code: str, message: str, *errors: dict) -> dict:
    return {"code": code, "message": message, "errors": list(errors)}


@pytest.fixture
def pipeline(make_pipeline):
    return make_pipeline(STEPS, name="iris")


@pytest.fixture
def finished_run(pipeline):
    """A run of steps 2 to 3 that has ended, so the pipeline has a free slot."""
    run = runs.start_run(pipeline, from_step=2, to_step=3)
    PipelineRun.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED, finished_at=timezone.now() - timedelta(minutes=1)
    )
    return run


def rerun(client, run, **headers):
    return client.post(f"/api/v1/runs/{run.pk}/rerun/", **headers)


# -- Rerun -------------------------------------------------------------------------------------


def test_rerun_starts_the_same_steps_again_as_the_api_user(api_as, finished_run):
    client = api_as(START)

    response = rerun(client, finished_run)

    assert response.status_code == 202
    new = PipelineRun.objects.exclude(pk=finished_run.pk).get()
    assert (new.start_step, new.stop_step) == (2, 3)
    assert (new.trigger, new.started_by, new.status) == (
        RunTrigger.API,
        client.user,
        RunStatus.QUEUED,
    )
    assert response["Location"] == f"http://testserver/api/v1/runs/{new.pk}/"
    assert response.json()["id"] == new.pk and response.json()["start_step"] == 2


def test_rerun_with_the_same_idempotency_key_returns_the_first_new_run(api_as, finished_run):
    client = api_as(START)

    first = rerun(client, finished_run, HTTP_IDEMPOTENCY_KEY="again-1")
    again = rerun(client, finished_run, HTTP_IDEMPOTENCY_KEY="again-1")

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again["Location"] == first["Location"]
    assert PipelineRun.objects.count() == 2


def test_rerun_refuses_an_idempotency_key_too_long(api_as, finished_run):
    response = rerun(api_as(START), finished_run, HTTP_IDEMPOTENCY_KEY="k" * 256)

    assert response.status_code == 400
    message = "Ensure this header has no more than 255 characters."
    assert response.json() == error(
        "invalid", f"Idempotency-Key: {message}", {"field": "Idempotency-Key", "message": message}
    )
    assert PipelineRun.objects.count() == 1


def test_rerun_of_a_busy_pipeline_that_refuses_new_runs_is_409(api_as, pipeline):
    pipeline.concurrency_policy = "refuse"
    pipeline.save()
    queued = runs.start_run(pipeline)

    response = rerun(api_as(START), queued)

    assert response.status_code == 409
    assert response.json() == error(
        "conflict", f"iris is at its limit of 1 active run(s): run #{queued.pk} is queued."
    )
    assert PipelineRun.objects.count() == 1


def test_rerun_of_a_busy_pipeline_that_queues_waits_for_the_slot(api_as, pipeline):
    queued = runs.start_run(pipeline)

    response = rerun(api_as(START), queued)

    assert response.status_code == 202
    waiting = PipelineRun.objects.get(pk=response.json()["id"])
    assert waiting.dispatched_at is None and "Waiting" in waiting.logs


def test_rerun_of_steps_now_disabled_is_pipeline_invalid(api_as, finished_run):
    PipelineStep.objects.filter(pipeline=finished_run.pipeline, order=2).update(enabled=False)

    response = rerun(api_as(START), finished_run)

    assert response.status_code == 400
    assert response.json() == error(
        "pipeline_invalid",
        "step 2, from_step: this step is disabled",
        {"step": 2, "field": "from_step", "message": "this step is disabled"},
    )
    assert PipelineRun.objects.count() == 1


def test_rerun_of_a_pipeline_now_invalid_names_the_step_and_field(api_as, finished_run):
    PipelineStep.objects.filter(pipeline=finished_run.pipeline, order=2).update(
        params={"columns": "target"}
    )

    response = rerun(api_as(START), finished_run)

    message = "Input should be a valid list"
    assert response.status_code == 400
    assert response.json() == error(
        "pipeline_invalid",
        f"step 2, params.columns: {message}",
        {"step": 2, "field": "params.columns", "message": message},
    )
    assert PipelineRun.objects.count() == 1


def test_rerun_needs_a_login_and_the_permission_to_start_runs(api_as, finished_run):
    anonymous = rerun(APIClient(), finished_run)
    viewer = rerun(api_as(username="viewer"), finished_run)

    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    assert viewer.status_code == 403
    assert viewer.json() == error(
        "permission_denied", "This needs the pipelines.add_pipelinerun permission."
    )
    assert PipelineRun.objects.count() == 1


def test_rerun_of_an_unknown_run_is_404(api_as, finished_run):
    response = api_as(START).post(f"/api/v1/runs/{finished_run.pk + 1}/rerun/")

    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert PipelineRun.objects.count() == 1


def test_the_run_page_runs_again_through_the_same_service(client, api_as, finished_run):
    client.force_login(api_as(START).user)

    response = client.post(f"/runs/{finished_run.pk}/again/")

    new = PipelineRun.objects.exclude(pk=finished_run.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{new.pk}/"
    assert (new.start_step, new.stop_step, new.trigger) == (2, 3, RunTrigger.MANUAL)


# -- Log ---------------------------------------------------------------------------------------


def log_of(client, run, offset=None):
    query = "" if offset is None else f"?offset={offset}"
    return client.get(f"/api/v1/runs/{run.pk}/log/{query}")


def test_the_log_of_a_finished_run_is_whole_and_finished(api_as, pipeline):
    run = runs.start_run(pipeline, wait=True)
    PipelineRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(1))
    run.refresh_from_db()

    response = log_of(api_as(), run)

    assert response.status_code == 200
    assert response.json() == {
        "offset": 0,
        "next_offset": len(run.logs),
        "text": run.logs,
        "status": "succeeded",
        "finished": True,
    }
    assert "Clean" in run.logs


def test_tailing_with_next_offset_gives_each_line_once(api_as, pipeline):
    run = runs.start_run(pipeline)
    client = api_as()
    run.append_log("Größe geprüft ✓")
    first = log_of(client, run).json()

    run.append_log("second line")
    second = log_of(client, run, first["next_offset"]).json()
    third = log_of(client, run, second["next_offset"]).json()

    assert first["text"].endswith("Größe geprüft ✓\n") and "second" not in first["text"]
    assert second["text"].endswith("] second line\n") and "Größe" not in second["text"]
    assert first["text"] + second["text"] == PipelineRun.objects.get(pk=run.pk).logs
    assert third == {**third, "text": "", "next_offset": second["next_offset"]}
    assert (third["status"], third["finished"]) == ("queued", False)


def test_an_offset_past_the_end_gives_no_text_and_the_end(api_as, pipeline):
    run = runs.start_run(pipeline)
    run.append_log("only line")

    body = log_of(api_as(), run, 10_000).json()

    assert body == {**body, "offset": 10_000, "text": "", "next_offset": len(run.logs)}


@pytest.mark.parametrize(
    "offset, message",
    [
        ("-1", "Ensure this value is greater than or equal to 0."),
        ("two", "A valid integer is required."),
        (str(2**31), "Ensure this value is less than or equal to 2147483647."),
    ],
)
def test_the_offset_must_be_a_non_negative_integer(api_as, pipeline, offset, message):
    run = runs.start_run(pipeline)

    response = log_of(api_as(), run, offset)

    assert response.status_code == 400
    assert response.json() == error(
        "invalid", f"offset: {message}", {"field": "offset", "message": message}
    )


def test_the_log_needs_a_login_only(api_as, pipeline):
    run = runs.start_run(pipeline)

    anonymous = log_of(APIClient(), run)

    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    assert log_of(api_as(username="viewer"), run).status_code == 200
    assert api_as(username="other").get("/api/v1/runs/999/log/").status_code == 404


def test_tailing_a_log_through_a_real_server(live_server, django_user_model, pipeline):
    run = runs.start_run(pipeline)
    token = issue_token(django_user_model.objects.create_user("tail"), "tail")[1]

    def tail(offset: int) -> dict:
        url = f"{live_server.url}/api/v1/runs/{run.pk}/log/?offset={offset}"
        request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
        with urllib.request.urlopen(request) as response:
            assert response.status == 200
            return json.loads(response.read())

    run.append_log("first ✓")
    first = tail(0)
    run.append_log("second")
    runs.cancel_run(run)
    second = tail(first["next_offset"])

    assert first["text"].endswith("first ✓\n")
    assert second["text"].splitlines()[0].endswith("] second")
    assert "Cancelled before it started." in second["text"]
    assert second["status"] == "cancelled"
    assert first["text"] + second["text"] == PipelineRun.objects.get(pk=run.pk).logs
