"""/api/v1/pipelines/ as a resource: create, replace, update, delete, validate, export and
import, duplicate, freshness, versions, and the run trigger's step range."""

import pytest
from rest_framework.test import APIClient

from pipelines import runs, services
from pipelines.choices import RunStatus
from pipelines.models import Pipeline, PipelineRun, PipelineStep, PipelineVersion
from pipelines.tests.test_api_wsgi import serve, token_for

pytestmark = pytest.mark.django_db

LOAD = {"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}}
CLEAN = {"type": "drop_na", "name": "Clean", "params": {"columns": ["target"]}}
ADD = "pipelines.add_pipeline"
CHANGE = "pipelines.change_pipeline"
DELETE = "pipelines.delete_pipeline"


def error(code: str, message: str, *errors: dict) -> dict:
    return {"code": code, "message": message, "errors": list(errors)}


def denied(perm: str) -> dict:
    return error("permission_denied", f"This needs the {perm} permission.")


def unauthenticated() -> dict:
    return error("not_authenticated", "Authentication credentials were not provided.")


def definition_of(name: str) -> dict:
    return services.export_pipeline(Pipeline.objects.get(name=name))


@pytest.fixture
def iris(make_pipeline):
    return make_pipeline([LOAD, CLEAN], name="iris")


# -- Create ---------------------------------------------------------------------------------


def test_create_saves_steps_in_list_order_and_settings_owned_by_the_caller(api_as):
    api = api_as(ADD)
    body = {
        "name": "iris",
        "description": "Flowers",
        "max_active_runs": 2,
        "concurrency_policy": "refuse",
        "steps": [LOAD, {"type": "drop_na", "params": {"columns": ["target"]}, "enabled": False}],
    }

    response = api.post("/api/v1/pipelines/", body, format="json")

    assert response.status_code == 201
    pipeline = Pipeline.objects.get(name="iris")
    assert response["Location"] == f"http://testserver/api/v1/pipelines/{pipeline.pk}/"
    assert response.json()["url"] == response["Location"]
    assert (pipeline.owner, pipeline.description) == (api.user, "Flowers")
    assert (pipeline.max_active_runs, pipeline.concurrency_policy) == (2, "refuse")
    assert response.json()["steps"] == [
        {"order": 1, **LOAD, "enabled": True},
        {
            "order": 2,
            "type": "drop_na",
            "name": "",
            "params": {"columns": ["target"]},
            "enabled": False,
        },
    ]
    assert response.json()["owner"] == "integrator"
    version = pipeline.versions.get()
    assert (version.number, version.summary, version.changed_by) == (1, "created", api.user)


def test_create_sorts_steps_by_their_order_when_given(api_as):
    body = {"name": "iris", "steps": [{**CLEAN, "order": 20}, {**LOAD, "order": 10}]}

    response = api_as(ADD).post("/api/v1/pipelines/", body, format="json")

    assert response.status_code == 201
    assert [(s["order"], s["type"]) for s in response.json()["steps"]] == [
        (1, "sklearn_dataset"),
        (2, "drop_na"),
    ]


def test_create_of_an_invalid_definition_is_400_naming_each_step_and_field(api_as):
    body = {
        "name": "iris",
        "max_active_runs": 0,
        "steps": [
            {"type": "drop_na", "params": {"columns": ["target"]}},
            {"type": "sklearn_dataset", "params": {"name": "iris", "colour": "red"}},
            {"type": "no_such_type"},
        ],
    }

    response = api_as(ADD).post("/api/v1/pipelines/", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "pipeline_invalid"
    errors = response.json()["errors"]
    assert {
        "step": None,
        "field": "max_active_runs",
        "message": "At least one run must be allowed.",
    } in errors
    assert {
        "step": 1,
        "field": "type",
        "message": "drop_na needs 'data', which no earlier step produces",
    } in errors
    assert {
        "step": 2,
        "field": "params.colour",
        "message": "is not a parameter of this step type",
    } in errors
    assert [e["field"] for e in errors if e["step"] == 3] == ["type"]
    assert errors[-1]["message"].startswith("unknown step type 'no_such_type' (known: ")
    assert not Pipeline.objects.exists()


def test_create_with_a_malformed_body_is_400_naming_each_field(api_as):
    body = {
        "name": "x" * 101,
        "max_active_runs": "many",
        "concurrency_policy": "wait",
        "colour": "red",
        "steps": [{"name": "no type", "params": [1]}, "csv"],
    }

    response = api_as(ADD).post("/api/v1/pipelines/", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    accepted = (
        "name, description, mlflow_experiment, max_active_runs, concurrency_policy, "
        "timeout_seconds, max_retries, retry_backoff_seconds, steps"
    )
    assert response.json()["errors"] == [
        {"field": "colour", "message": f"Unknown field; a pipeline accepts: {accepted}."}
    ]
    del body["colour"]

    response = api_as(ADD, username="other").post("/api/v1/pipelines/", body, format="json")

    assert response.json()["errors"] == [
        {"field": "name", "message": "Ensure this field has no more than 100 characters."},
        {"field": "max_active_runs", "message": "A valid integer is required."},
        {"field": "concurrency_policy", "message": '"wait" is not a valid choice.'},
        {"field": "steps.0.type", "message": "This field is required."},
        {
            "field": "steps.0.params",
            "message": 'Expected a dictionary of items but got type "list".',
        },
        {"field": "steps.1", "message": "Invalid data. Expected a dictionary, but got str."},
    ]
    assert not Pipeline.objects.exists()


def test_create_with_a_taken_name_is_400_naming_it(api_as, iris):
    response = api_as(ADD).post("/api/v1/pipelines/", {"name": "iris", "steps": []}, format="json")

    assert response.status_code == 400
    assert response.json() == error(
        "pipeline_invalid",
        "pipeline, name: a pipeline named 'iris' exists",
        {"step": None, "field": "name", "message": "a pipeline named 'iris' exists"},
    )
    assert Pipeline.objects.count() == 1


def test_the_collections_action_names_are_refused_and_their_paths_take_only_post(api_as):
    api = api_as(ADD)

    response = api.post("/api/v1/pipelines/", {"name": "import", "steps": []}, format="json")
    read = api.get("/api/v1/pipelines/import/")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "step": None,
            "field": "name",
            "message": "'import' is reserved by the API; choose another",
        }
    ]
    assert (read.status_code, read.json()["code"]) == (405, "method_not_allowed")
    assert not Pipeline.objects.exists()


def test_create_needs_a_login_and_the_add_permission(api_as):
    body = {"name": "iris", "steps": [LOAD]}

    anonymous = APIClient().post("/api/v1/pipelines/", body, format="json")
    viewer = api_as(CHANGE).post("/api/v1/pipelines/", body, format="json")

    assert (anonymous.status_code, anonymous.json()) == (401, unauthenticated())
    assert (viewer.status_code, viewer.json()) == (403, denied(ADD))
    assert not Pipeline.objects.exists()


def test_a_pipeline_read_can_be_sent_back_as_it_is(api_as, iris):
    api = api_as(CHANGE)
    read = api.get("/api/v1/pipelines/iris/").json()

    response = api.put("/api/v1/pipelines/iris/", read, format="json")

    assert response.status_code == 200
    assert response.json() == read
    assert iris.versions.count() == 1  # nothing changed, so no version


# -- Replace and update -----------------------------------------------------------------------


def test_put_replaces_steps_and_settings_and_records_a_version(api_as, make_pipeline):
    services.update_pipeline(
        make_pipeline([LOAD, CLEAN], name="iris", max_retries=3), settings={"description": "old"}
    )
    api = api_as(CHANGE)

    response = api.put(
        "/api/v1/pipelines/iris/",
        {"name": "iris", "steps": [LOAD], "max_active_runs": 4},
        format="json",
    )

    assert response.status_code == 200
    pipeline = Pipeline.objects.get(name="iris")
    assert list(pipeline.steps.values_list("order", "step_type")) == [(1, "sklearn_dataset")]
    # Left out of a replacement, a setting takes its default.
    assert (pipeline.max_active_runs, pipeline.max_retries, pipeline.description) == (4, 0, "")
    latest = pipeline.versions.first()
    assert latest.number == 3 and latest.changed_by == api.user
    assert (
        latest.summary
        == "changed the description; changed max_active_runs, max_retries; removed step 2"
    )
    assert response.json()["max_retries"] == 0


def test_put_of_an_invalid_definition_changes_nothing(api_as, iris):
    before = definition_of("iris")
    body = {"name": "renamed", "description": "new", "steps": [CLEAN]}

    response = api_as(CHANGE).put("/api/v1/pipelines/iris/", body, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "step": 1,
            "field": "type",
            "message": "drop_na needs 'data', which no earlier step produces",
        }
    ]
    assert definition_of("iris") == before
    assert iris.versions.count() == 1


def test_put_needs_the_name_and_the_steps(api_as, iris):
    response = api_as(CHANGE).put("/api/v1/pipelines/iris/", {"description": "x"}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "name", "message": "This field is required."},
        {"field": "steps", "message": "This field is required."},
    ]


def test_patch_renames_and_changes_only_the_fields_given(api_as, make_pipeline):
    make_pipeline([LOAD, CLEAN], name="iris", max_retries=3)

    response = api_as(CHANGE).patch(
        "/api/v1/pipelines/iris/", {"name": "flowers", "description": "Irises"}, format="json"
    )

    assert response.status_code == 200
    pipeline = Pipeline.objects.get()
    assert (pipeline.name, pipeline.description, pipeline.max_retries) == ("flowers", "Irises", 3)
    assert pipeline.steps.count() == 2
    assert response.json()["url"] == f"http://testserver/api/v1/pipelines/{pipeline.pk}/"
    assert pipeline.versions.first().summary == "renamed to flowers; changed the description"


def test_patch_with_steps_replaces_the_whole_list(api_as, iris):
    response = api_as(CHANGE).patch("/api/v1/pipelines/iris/", {"steps": [LOAD]}, format="json")

    assert response.status_code == 200
    assert [s["type"] for s in response.json()["steps"]] == ["sklearn_dataset"]


def test_patch_to_a_taken_name_or_a_bad_setting_is_400_and_changes_nothing(
    api_as, iris, make_pipeline
):
    make_pipeline([LOAD], name="other")
    api = api_as(CHANGE)

    taken = api.patch("/api/v1/pipelines/iris/", {"name": "other"}, format="json")
    timeout = api.patch("/api/v1/pipelines/iris/", {"timeout_seconds": 10**9}, format="json")

    assert taken.status_code == timeout.status_code == 400
    assert taken.json()["errors"] == [
        {"step": None, "field": "name", "message": "a pipeline named 'other' exists"}
    ]
    [problem] = timeout.json()["errors"]
    assert problem["field"] == "timeout_seconds"
    assert "must stay under the worker task limit Q_TIMEOUT" in problem["message"]
    iris.refresh_from_db()
    assert (iris.name, iris.timeout_seconds) == ("iris", None)


def test_put_and_patch_need_the_change_permission(api_as, iris):
    api = api_as(ADD, DELETE)

    put = api.put("/api/v1/pipelines/iris/", {"name": "x", "steps": []}, format="json")
    patch = api.patch("/api/v1/pipelines/iris/", {"name": "x"}, format="json")
    anonymous = APIClient().patch("/api/v1/pipelines/iris/", {"name": "x"}, format="json")

    assert (put.status_code, put.json()) == (403, denied(CHANGE))
    assert (patch.status_code, patch.json()) == (403, denied(CHANGE))
    assert anonymous.status_code == 401
    assert list(Pipeline.objects.values_list("name", flat=True)) == ["iris"]
    assert iris.steps.count() == 2


# -- Delete ---------------------------------------------------------------------------------


def test_delete_removes_the_pipeline_its_runs_and_cached_files(
    api_as, iris, settings, django_capture_on_commit_callbacks
):
    runs.start_run(iris, wait=True)
    cached = sorted(settings.MLOPS_CACHE_DIR.glob(f"pipeline_{iris.pk}_step_*.joblib"))
    assert len(cached) == 2

    with django_capture_on_commit_callbacks(execute=True):
        response = api_as(DELETE).delete("/api/v1/pipelines/iris/")

    assert response.status_code == 204
    assert not Pipeline.objects.exists() and not PipelineRun.objects.exists()
    assert not any(path.exists() for path in cached)


def test_delete_while_a_run_is_active_is_409_and_deletes_nothing(api_as, iris):
    run = runs.start_run(iris)

    response = api_as(DELETE).delete("/api/v1/pipelines/iris/")

    assert response.status_code == 409
    assert response.json() == error(
        "conflict",
        f"iris has an active run (#{run.pk}, queued); cancel it or wait before deleting.",
    )
    assert Pipeline.objects.filter(pk=iris.pk).exists() and PipelineRun.objects.exists()


def test_delete_needs_the_delete_permission(api_as, iris):
    response = api_as(ADD, CHANGE).delete("/api/v1/pipelines/iris/")

    assert (response.status_code, response.json()) == (403, denied(DELETE))
    assert APIClient().delete("/api/v1/pipelines/iris/").status_code == 401
    assert Pipeline.objects.exists()


# -- Validate -------------------------------------------------------------------------------


def test_validate_a_valid_definition_saves_nothing_and_needs_only_a_login(api_as):
    body = {"name": "iris", "steps": [LOAD, CLEAN]}

    response = api_as().post("/api/v1/pipelines/validate/", body, format="json")

    assert (response.status_code, response.json()) == (200, {"valid": True})
    assert not Pipeline.objects.exists() and not PipelineVersion.objects.exists()
    assert APIClient().post("/api/v1/pipelines/validate/", body, format="json").status_code == 401


def test_validate_an_invalid_definition_is_400_with_every_error(api_as, iris):
    body = {"name": "iris", "max_active_runs": 0, "steps": [CLEAN]}

    response = api_as().post("/api/v1/pipelines/validate/", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "pipeline_invalid"
    assert response.json()["errors"] == [
        {"step": None, "field": "max_active_runs", "message": "At least one run must be allowed."},
        {"step": None, "field": "name", "message": "a pipeline named 'iris' exists"},
        {
            "step": 1,
            "field": "type",
            "message": "drop_na needs 'data', which no earlier step produces",
        },
    ]
    assert Pipeline.objects.count() == 1


def test_validate_without_a_name_checks_steps_and_settings_only(api_as, iris):
    api = api_as()

    valid = api.post("/api/v1/pipelines/validate/", {"steps": [LOAD]}, format="json")
    invalid = api.post("/api/v1/pipelines/validate/", {"steps": [CLEAN]}, format="json")
    taken = api.post(
        "/api/v1/pipelines/validate/", {"name": "iris", "steps": [LOAD]}, format="json"
    )

    assert valid.json() == {"valid": True}
    assert invalid.json()["errors"] == [
        {
            "step": 1,
            "field": "type",
            "message": "drop_na needs 'data', which no earlier step produces",
        }
    ]
    assert taken.json()["errors"] == [
        {"step": None, "field": "name", "message": "a pipeline named 'iris' exists"}
    ]
    assert Pipeline.objects.count() == 1


# -- Export and import ------------------------------------------------------------------------


def test_export_is_the_json_the_pages_and_commands_write(api_as, iris):
    response = api_as().get("/api/v1/pipelines/iris/export/")

    assert response.status_code == 200
    assert response.json() == services.export_pipeline(iris)
    assert response.json()["steps"][0] == {"order": 1, **LOAD, "enabled": True}
    assert APIClient().get("/api/v1/pipelines/iris/export/").status_code == 401


def test_import_creates_the_pipeline_owned_by_the_caller(api_as, iris):
    data = {**definition_of("iris"), "name": "iris-2"}
    api = api_as(ADD)

    response = api.post("/api/v1/pipelines/import/", data, format="json")

    assert response.status_code == 201
    copy = Pipeline.objects.get(name="iris-2")
    assert response["Location"] == f"http://testserver/api/v1/pipelines/{copy.pk}/"
    assert copy.owner == api.user
    assert definition_of("iris-2") == data
    assert copy.versions.get().summary == "imported"


def test_import_of_a_taken_name_is_400_unless_replacing(api_as, iris):
    data = {**definition_of("iris"), "description": "replaced", "steps": [{"order": 1, **LOAD}]}
    api = api_as(ADD, CHANGE)

    refused = api.post("/api/v1/pipelines/import/", data, format="json")
    assert refused.status_code == 400
    assert refused.json()["errors"] == [
        {"step": None, "field": "name", "message": "a pipeline named 'iris' exists"}
    ]
    assert iris.steps.count() == 2

    replaced = api.post("/api/v1/pipelines/import/?replace=true", data, format="json")

    assert replaced.status_code == 200
    assert "Location" not in replaced
    assert Pipeline.objects.get().pk == iris.pk
    assert [s["type"] for s in replaced.json()["steps"]] == ["sklearn_dataset"]
    assert replaced.json()["description"] == "replaced"
    assert iris.versions.count() == 2


def test_import_with_replace_needs_the_change_permission(api_as, iris):
    data = {**definition_of("iris"), "steps": [{"order": 1, **LOAD}]}
    api = api_as(ADD)

    response = api.post("/api/v1/pipelines/import/?replace=true", data, format="json")

    assert response.status_code == 403
    assert response.json() == error(
        "permission_denied", "replace=true needs the pipelines.change_pipeline permission."
    )
    assert iris.steps.count() == 2
    no_add = api_as(CHANGE, username="changer").post(
        "/api/v1/pipelines/import/", data, format="json"
    )
    assert (no_add.status_code, no_add.json()) == (403, denied(ADD))


def test_import_of_malformed_json_is_400_naming_each_field(api_as):
    data = {
        "name": "",
        "run_settings": {"max_retries": -1, "colour": "red"},
        "steps": [{"type": "sklearn_dataset"}],
    }

    response = api_as(ADD).post("/api/v1/pipelines/import/?replace=maybe", data, format="json")
    assert response.json()["errors"] == [
        {"field": "replace", "message": "Must be a valid boolean."}
    ]

    response = api_as(ADD, username="other").post("/api/v1/pipelines/import/", data, format="json")

    assert response.status_code == 400
    accepted = "mlflow_experiment, max_active_runs, concurrency_policy, timeout_seconds, max_retries, retry_backoff_seconds"
    assert response.json()["errors"] == [
        {"field": "name", "message": "This field may not be blank."},
        {
            "field": "run_settings.colour",
            "message": f"Unknown field; run_settings accepts: {accepted}.",
        },
        {"field": "steps.0.order", "message": "This field is required."},
    ]
    assert not Pipeline.objects.exists()


def test_import_of_an_invalid_pipeline_is_400_naming_the_exported_field(api_as):
    data = {
        "name": "iris",
        "run_settings": {"max_active_runs": 0},
        "steps": [{"order": 1, **CLEAN}],
    }

    response = api_as(ADD).post("/api/v1/pipelines/import/", data, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "step": 1,
            "field": "type",
            "message": "drop_na needs 'data', which no earlier step produces",
        },
    ]
    data["steps"] = [{"order": 1, **LOAD}]
    response = api_as(ADD, username="other").post("/api/v1/pipelines/import/", data, format="json")
    assert response.json()["errors"] == [
        {
            "step": None,
            "field": "run_settings.max_active_runs",
            "message": "At least one run must be allowed.",
        },
    ]
    assert not Pipeline.objects.exists()


def test_a_pipeline_exported_and_imported_through_the_api_gives_the_same_metrics(
    api_as, classifier_pipeline
):
    api = api_as(ADD)
    exported = api.get("/api/v1/pipelines/classifier/export/").json()

    imported = api.post(
        "/api/v1/pipelines/import/", {**exported, "name": "classifier-2"}, format="json"
    )
    created = api.post(
        "/api/v1/pipelines/",
        {"name": "classifier-3", **exported["run_settings"], "steps": exported["steps"]},
        format="json",
    )

    assert imported.status_code == created.status_code == 201
    finished = [
        runs.start_run(Pipeline.objects.get(name=name), wait=True)
        for name in ["classifier", "classifier-2", "classifier-3"]
    ]
    assert [run.status for run in finished] == [RunStatus.SUCCEEDED] * 3
    assert finished[0].metrics  # something to compare
    assert finished[0].metrics == finished[1].metrics == finished[2].metrics


# -- Duplicate ------------------------------------------------------------------------------


def test_duplicate_copies_steps_and_settings_under_a_free_name(api_as, make_pipeline):
    original = make_pipeline([LOAD, CLEAN], name="iris", max_retries=2)
    api = api_as(ADD)

    first = api.post("/api/v1/pipelines/iris/duplicate/", {}, format="json")
    named = api.post(f"/api/v1/pipelines/{original.pk}/duplicate/", {"name": "mine"}, format="json")

    assert first.status_code == named.status_code == 201
    assert first.json()["name"] == "iris-copy"
    copy = Pipeline.objects.get(name="mine")
    assert named["Location"] == f"http://testserver/api/v1/pipelines/{copy.pk}/"
    assert (copy.owner, copy.max_retries) == (api.user, 2)
    assert definition_of("mine")["steps"] == definition_of("iris")["steps"]
    assert copy.versions.get().summary == "duplicated from iris version 1"


def test_duplicate_refusals_save_nothing(api_as, iris):
    taken = api_as(ADD).post("/api/v1/pipelines/iris/duplicate/", {"name": "iris"}, format="json")
    unknown = api_as(ADD, username="b").post(
        "/api/v1/pipelines/iris/duplicate/", {"nmae": "x"}, format="json"
    )
    denied_response = api_as(CHANGE, username="c").post(
        "/api/v1/pipelines/iris/duplicate/", {}, format="json"
    )
    missing = api_as(ADD, username="d").post(
        "/api/v1/pipelines/nothing/duplicate/", {}, format="json"
    )

    assert taken.status_code == 400
    assert taken.json()["errors"] == [
        {"step": None, "field": "name", "message": "a pipeline named 'iris' exists"}
    ]
    assert unknown.json()["errors"] == [
        {"field": "nmae", "message": "Unknown field; a duplicate accepts: name."}
    ]
    assert (denied_response.status_code, denied_response.json()) == (403, denied(ADD))
    assert missing.status_code == 404
    assert Pipeline.objects.count() == 1


# -- Freshness ------------------------------------------------------------------------------


def test_freshness_says_never_run_then_fresh_then_stale_after_a_change(api_as, iris):
    api = api_as(CHANGE)
    url = "/api/v1/pipelines/iris/freshness/"

    assert [s["state"] for s in api.get(url).json()] == ["never_run", "never_run"]
    runs.start_run(iris, wait=True)
    assert api.get(url).json() == [
        {
            "order": 1,
            "type": "sklearn_dataset",
            "state": "fresh",
            "reason": "",
            "last_version": None,
            "last_read_at": None,
        },
        {
            "order": 2,
            "type": "drop_na",
            "state": "fresh",
            "reason": "",
            "last_version": None,
            "last_read_at": None,
        },
    ]
    changed = {**CLEAN, "params": {"columns": ["target", "sepal length (cm)"]}}
    api.patch("/api/v1/pipelines/iris/", {"steps": [LOAD, changed]}, format="json")

    stale = api.get(url).json()[1]
    assert (stale["state"], stale["reason"]) == ("stale", "its parameters changed")
    assert APIClient().get(url).status_code == 401


# -- Versions -------------------------------------------------------------------------------


def test_versions_list_newest_first_with_who_and_what(api_as, iris):
    api = api_as(CHANGE)
    api.patch("/api/v1/pipelines/iris/", {"description": "Irises"}, format="json")

    response = api.get("/api/v1/pipelines/iris/versions/")

    assert response.status_code == 200
    assert response.json()["count"] == 2
    newest, first = response.json()["results"]
    assert (newest["number"], newest["user"], newest["summary"]) == (
        2,
        "integrator",
        "changed the description",
    )
    assert newest["definition"] == definition_of("iris")
    assert (first["number"], first["user"], first["summary"]) == (1, None, "imported")


def test_one_version_and_a_diff_between_two(api_as, iris):
    api = api_as(CHANGE)
    api.patch("/api/v1/pipelines/iris/", {"steps": [LOAD]}, format="json")

    one = api.get("/api/v1/pipelines/iris/versions/1/")
    diff = api.get("/api/v1/pipelines/iris/versions/diff/?a=1&b=2")

    assert one.status_code == 200
    assert len(one.json()["definition"]["steps"]) == 2
    assert diff.status_code == 200
    lines = diff.json()["lines"]
    assert lines[:2] == ["--- version 1", "+++ version 2"]
    assert any(line.startswith("-") and "drop_na" in line for line in lines[2:])
    assert api.get("/api/v1/pipelines/iris/versions/diff/?a=2&b=2").json() == {"lines": []}


def test_unknown_versions_are_404_and_malformed_diffs_400(api_as, iris):
    api = api_as()

    missing = api.get("/api/v1/pipelines/iris/versions/7/")
    missing_diff = api.get("/api/v1/pipelines/iris/versions/diff/?a=1&b=7")
    malformed = api.get("/api/v1/pipelines/iris/versions/diff/?a=one")

    assert (missing.status_code, missing.json()) == (
        404,
        error("not_found", "iris has no version 7."),
    )
    assert (missing_diff.status_code, missing_diff.json()) == (
        404,
        error("not_found", "iris has no version 7."),
    )
    assert malformed.status_code == 400
    assert malformed.json()["errors"] == [
        {"field": "a", "message": "A valid integer is required."},
        {"field": "b", "message": "This field is required."},
    ]
    assert api.get("/api/v1/pipelines/iris/versions/1234567890/").status_code == 404
    assert APIClient().get("/api/v1/pipelines/iris/versions/").status_code == 401


# -- The run trigger's step range -----------------------------------------------------------


def test_trigger_only_one_step_or_up_to_a_step(api_as, iris):
    api = api_as("pipelines.add_pipelinerun")

    only = api.post("/api/v1/pipelines/iris/runs/", {"only_step": 2}, format="json")
    upto = api.post("/api/v1/pipelines/iris/runs/", {"to_step": 1}, format="json")

    assert only.status_code == upto.status_code == 202
    first, second = PipelineRun.objects.order_by("pk")
    assert (first.start_step, first.stop_step) == (2, 2)
    assert (second.start_step, second.stop_step) == (None, 1)


def test_trigger_step_range_errors_name_the_field_sent(api_as, iris):
    PipelineStep.objects.filter(pipeline=iris, order=2).update(enabled=False)
    api = api_as("pipelines.add_pipelinerun")
    url = "/api/v1/pipelines/iris/runs/"

    disabled = api.post(url, {"only_step": 2}, format="json")
    combined = api.post(url, {"only_step": 1, "to_step": 1}, format="json")
    backwards = api.post(url, {"from_step": 2, "to_step": 1}, format="json")
    missing = api.post(url, {"to_step": 9}, format="json")

    assert disabled.json() == error(
        "pipeline_invalid",
        "step 2, only_step: this step is disabled",
        {"step": 2, "field": "only_step", "message": "this step is disabled"},
    )
    assert combined.json()["errors"] == [
        {"field": "only_step", "message": "Give only_step alone, or from_step and to_step instead."}
    ]
    assert backwards.json()["errors"] == [
        {"step": 2, "field": "from_step", "message": "this step is disabled"}
    ]
    assert missing.json()["errors"] == [
        {"step": 9, "field": "to_step", "message": "no step has this order"}
    ]
    assert not PipelineRun.objects.exists()


# -- Through the WSGI application ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_create_and_delete_through_the_wsgi_application(django_user_model):
    token = token_for(django_user_model, "editor", "add_pipeline", "delete_pipeline")
    body = {"name": "iris", "steps": [LOAD]}

    created = serve("POST", "/api/v1/pipelines/", token, body)
    invalid = serve("POST", "/api/v1/pipelines/", token, {"name": "x", "steps": [CLEAN]})
    deleted = serve("DELETE", "/api/v1/pipelines/iris/", token)

    assert created.status == 201
    assert type(created.headers["Location"]) is str
    assert created.headers["Location"] == created.json()["url"]
    assert invalid.status == 400 and invalid.json()["code"] == "pipeline_invalid"
    assert (deleted.status, deleted.body) == (204, b"")
    assert not Pipeline.objects.exists()
