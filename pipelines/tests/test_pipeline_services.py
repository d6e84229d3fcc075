"""Pipeline services: create, update, duplicate, delete, import and their version history."""

import json

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from pipelines import services
from pipelines.choices import RunStatus
from pipelines.engine.cache import StepCache
from pipelines.models import (
    Pipeline,
    PipelineRun,
    PipelineSchedule,
    PipelineStep,
    PipelineVersion,
)
from pipelines.validation import PipelineInvalid

LOAD = {"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}}
CLEAN = {"type": "drop_na", "name": "Clean", "params": {"columns": ["target"]}}
TRAIN = {
    "type": "train_sklearn",
    "name": "Train",
    "params": {"task": "classification", "estimator": "random_forest", "target": "target"},
}
PREDICT = {"type": "predict", "name": "Predict", "params": {}}


@pytest.fixture
def analyst(django_user_model):
    return django_user_model.objects.create_user("analyst")


@pytest.fixture
def iris(analyst):
    return services.create_pipeline(
        "iris", "Iris flowers", owner=analyst, steps=[LOAD, CLEAN, TRAIN], user=analyst
    )


def snapshot() -> tuple:
    """Everything a refused action must leave as it was."""
    return (
        list(Pipeline.objects.values()),
        list(PipelineStep.objects.values()),
        list(PipelineVersion.objects.values()),
        list(PipelineRun.objects.values_list("pk", "status")),
    )


def fields(exc) -> list[tuple]:
    return [(error.order, error.field) for error in exc.errors]


def step_types(pipeline) -> list[tuple]:
    return list(pipeline.steps.values_list("order", "step_type"))


# create_pipeline


def test_create_saves_steps_numbered_and_records_version_1(iris, analyst):
    version = iris.versions.get()

    assert step_types(iris) == [(1, "sklearn_dataset"), (2, "drop_na"), (3, "train_sklearn")]
    assert (iris.description, iris.owner) == ("Iris flowers", analyst)
    assert (version.number, version.summary, version.changed_by) == (1, "created", analyst)
    assert version.definition == services.export_pipeline(iris)


def test_create_without_steps_saves_a_draft(db):
    pipeline = services.create_pipeline("draft")

    assert pipeline.steps.count() == 0
    assert pipeline.versions.get().definition["steps"] == []


def test_create_applies_and_validates_run_settings(db):
    pipeline = services.create_pipeline(
        "tuned", steps=[LOAD], settings={"max_retries": "2", "mlflow_experiment": "team/iris"}
    )

    pipeline.refresh_from_db()
    assert (pipeline.max_retries, pipeline.experiment_name) == (2, "team/iris")


def test_create_refuses_a_name_taken_and_changes_nothing(iris):
    before = snapshot()

    with pytest.raises(PipelineInvalid) as caught:
        services.create_pipeline("iris", steps=[LOAD])

    assert fields(caught.value) == [(None, "name")]
    assert "a pipeline named 'iris' exists" in str(caught.value)
    assert snapshot() == before


@pytest.mark.parametrize(
    "name, message",
    [
        ("  ", "cannot be blank"),
        ("x" * 101, "at most 100 characters"),
        # /api/v1/pipelines/import/ is the import action, not this pipeline.
        ("import", "'import' is reserved by the API; choose another"),
        ("validate", "'validate' is reserved by the API; choose another"),
    ],
)
def test_create_refuses_a_bad_name(db, name, message):
    with pytest.raises(PipelineInvalid) as caught:
        services.create_pipeline(name)

    assert fields(caught.value) == [(None, "name")]
    assert message in str(caught.value)
    assert not Pipeline.objects.exists()


def test_create_reports_every_problem_at_once_and_saves_nothing(iris):
    before = snapshot()
    steps = [{**LOAD, "order": 1}, {**CLEAN, "order": 1}, {**TRAIN, "order": 2}]

    with pytest.raises(PipelineInvalid) as caught:
        services.create_pipeline("iris", steps=steps, settings={"max_active_runs": 0})

    assert fields(caught.value) == [(None, "max_active_runs"), (None, "name"), (1, "order")]
    assert "step 1, order: is used by more than one step" in str(caught.value)
    assert snapshot() == before


@pytest.mark.parametrize(
    "steps, expected",
    [
        ([{**TRAIN, "params": {"task": "classification"}}], (1, "params.estimator")),
        ([PREDICT], (1, "type")),
        ([{**LOAD, "colour": "red"}], (1, "step")),
        ("not a list", (None, "steps")),
    ],
)
def test_create_with_invalid_steps_saves_nothing(db, steps, expected):
    with pytest.raises(PipelineInvalid) as caught:
        services.create_pipeline("broken", steps=steps)

    assert expected in fields(caught.value)
    assert not Pipeline.objects.exists() and not PipelineVersion.objects.exists()


def test_create_refuses_unknown_settings(db):
    with pytest.raises(PipelineInvalid, match=r"settings: unknown key\(s\) \['colour'\]"):
        services.create_pipeline("p", settings={"colour": "red"})
    assert not Pipeline.objects.exists()


# update_pipeline


def test_update_replaces_steps_in_their_order_without_gaps(iris, analyst, django_user_model):
    editor = django_user_model.objects.create_user("editor")
    steps = [{**TRAIN, "order": 20}, {**LOAD, "order": 5}, {**PREDICT, "order": 30}]

    services.update_pipeline(iris, steps=steps, user=editor)

    assert step_types(iris) == [(1, "sklearn_dataset"), (2, "train_sklearn"), (3, "predict")]
    latest = iris.versions.first()
    assert (latest.number, latest.changed_by) == (2, editor)
    assert latest.summary == "removed step 2; added step 3"


def test_update_takes_list_position_when_steps_have_no_order(iris):
    services.update_pipeline(iris, steps=[LOAD, TRAIN, PREDICT])

    assert step_types(iris) == [(1, "sklearn_dataset"), (2, "train_sklearn"), (3, "predict")]


def test_update_changes_settings_and_says_which(iris, analyst):
    pipeline = services.update_pipeline(
        iris, settings={"description": "Irises", "max_retries": 3}, user=analyst
    )

    assert (pipeline.description, pipeline.max_retries) == ("Irises", 3)
    assert iris.versions.first().summary == "changed the description; changed max_retries"


def test_update_summary_names_the_changed_and_added_steps(iris):
    steps = [LOAD, CLEAN, {**TRAIN, "params": {**TRAIN["params"], "test_size": 0.3}}, PREDICT]

    services.update_pipeline(iris, steps=steps)

    assert iris.versions.first().summary == "changed step 3 params; added step 4"


@pytest.mark.parametrize(
    "steps, run_settings",
    [
        ([LOAD, CLEAN, PREDICT], None),  # predict needs a model
        ([{**LOAD, "order": 2}, {**CLEAN, "order": 2}], None),
        (None, {"max_active_runs": 0}),
        (None, {"timeout_seconds": 10**9}),
        (None, {"concurrency_policy": "maybe"}),
        ([LOAD], {"name": "renamed"}),
    ],
)
def test_invalid_update_changes_nothing(iris, steps, run_settings):
    before = snapshot()

    with pytest.raises(PipelineInvalid):
        services.update_pipeline(iris, steps=steps, settings=run_settings)

    assert snapshot() == before
    assert (iris.max_active_runs, iris.concurrency_policy) == (1, "queue")


def test_duplicate_orders_name_the_step(iris):
    with pytest.raises(PipelineInvalid) as caught:
        services.update_pipeline(iris, steps=[{**LOAD, "order": 1}, {**CLEAN, "order": 1}])

    assert fields(caught.value) == [(1, "order")]


def test_update_that_changes_nothing_records_no_version(iris):
    services.update_pipeline(iris, steps=[LOAD, CLEAN, TRAIN], settings={"max_retries": 0})

    assert list(iris.versions.values_list("number", flat=True)) == [1]


def test_first_update_of_a_pipeline_without_history_records_its_earlier_state(db, analyst):
    pipeline = Pipeline.objects.create(name="legacy")
    PipelineStep.objects.create(pipeline=pipeline, order=1, step_type="sklearn_dataset")

    services.update_pipeline(pipeline, steps=[LOAD], user=analyst)

    versions = list(pipeline.versions.order_by("number"))
    assert [(v.number, v.changed_by) for v in versions] == [(1, None), (2, analyst)]
    assert versions[0].definition["steps"][0]["params"] == {}
    assert versions[1].summary == "changed step 1 name, params"


# describe_changes


@pytest.mark.parametrize(
    "new_steps, summary",
    [
        ([LOAD, PREDICT, CLEAN, TRAIN], "added step 2"),
        ([LOAD, TRAIN], "removed step 2"),
        ([CLEAN, TRAIN, LOAD], "moved step 1 to 3"),
        ([LOAD, {**CLEAN, "enabled": False}, TRAIN], "disabled step 2"),
        ([LOAD, {**CLEAN, "name": "Tidy"}, TRAIN], "changed step 2 name"),
        ([LOAD, CLEAN, TRAIN], "no changes"),
    ],
)
def test_summary_matches_steps_by_content_not_position(new_steps, summary):
    def definition(steps):
        numbered = [{"order": i, "enabled": True, **s} for i, s in enumerate(steps, start=1)]
        return {"name": "p", "description": "", "run_settings": {}, "steps": numbered}

    old = definition([LOAD, CLEAN, TRAIN])

    assert services.describe_changes(old, definition(new_steps)) == summary


# version_diff


def test_version_diff_shows_the_changed_lines(iris):
    services.update_pipeline(iris, steps=[LOAD, {**CLEAN, "params": {"columns": ["sepal"]}}, TRAIN])

    lines = services.version_diff(iris, 1, 2)

    assert lines[:2] == ["--- version 1", "+++ version 2"]
    assert any(line.startswith("@@") for line in lines)
    removed = [line for line in lines if line.startswith("-") and not line.startswith("---")]
    added = [line for line in lines if line.startswith("+") and not line.startswith("+++")]
    assert [line[1:].strip() for line in removed] == ['"target"']
    assert [line[1:].strip() for line in added] == ['"sepal"']
    assert services.version_diff(iris, 2, 2) == []


def test_version_diff_of_a_missing_version_says_which(iris):
    with pytest.raises(PipelineVersion.DoesNotExist, match="iris has no version 7"):
        services.version_diff(iris, 1, 7)


# duplicate_pipeline


def test_duplicate_copies_steps_and_settings_under_a_derived_name(iris, django_user_model):
    copier = django_user_model.objects.create_user("copier")
    services.update_pipeline(iris, settings={"max_retries": 2})

    copy = services.duplicate_pipeline(iris, None, copier)

    assert copy.name == "iris-copy"
    assert step_types(copy) == step_types(iris)
    assert (copy.max_retries, copy.description, copy.owner) == (2, "Iris flowers", copier)
    version = copy.versions.get()
    assert (version.number, version.changed_by) == (1, copier)
    assert version.summary == "duplicated from iris version 2"


def test_duplicate_numbers_the_copy_when_the_name_is_taken(iris):
    first = services.duplicate_pipeline(iris, None, None)
    second = services.duplicate_pipeline(iris, "", None)

    assert (first.name, second.name) == ("iris-copy", "iris-copy-2")


def test_duplicate_under_a_taken_name_names_the_field_and_changes_nothing(iris):
    services.create_pipeline("other", steps=[LOAD])
    before = snapshot()

    with pytest.raises(PipelineInvalid) as caught:
        services.duplicate_pipeline(iris, "other", None)

    assert fields(caught.value) == [(None, "name")]
    assert snapshot() == before


def test_copy_name_of_a_long_name_stays_within_the_limit(db):
    name = "n" * 100

    assert services.copy_name(name) == "n" * 95 + "-copy"


# delete_pipeline


def test_delete_removes_the_pipeline_its_rows_and_cached_files(
    iris, analyst, django_capture_on_commit_callbacks, isolated_storage
):
    PipelineRun.objects.create(pipeline=iris, status=RunStatus.SUCCEEDED)
    PipelineSchedule.objects.create(pipeline=iris, interval_seconds=3600)
    cache = StepCache(iris.pk)
    cache.directory.mkdir(parents=True, exist_ok=True)
    cached = cache.path(1)
    cached.write_bytes(b"cached")

    with django_capture_on_commit_callbacks(execute=True):
        services.delete_pipeline(iris, analyst)

    assert not Pipeline.objects.exists()
    assert not PipelineStep.objects.exists() and not PipelineVersion.objects.exists()
    assert not PipelineRun.objects.exists() and not PipelineSchedule.objects.exists()
    assert not cached.exists()


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RUNNING])
def test_delete_is_refused_while_a_run_is_active(iris, status):
    PipelineRun.objects.create(pipeline=iris, status=RunStatus.FAILED)
    active = PipelineRun.objects.create(pipeline=iris, status=status)
    before = snapshot()

    with pytest.raises(services.PipelineInUse) as caught:
        services.delete_pipeline(iris, None)

    assert str(caught.value) == (
        f"iris has an active run (#{active.pk}, {status}); cancel it or wait before deleting."
    )
    assert snapshot() == before


# import and export


def test_import_records_a_version_and_replacing_records_the_next(analyst):
    data = {"name": "imported", "steps": [{**LOAD, "order": 1}]}
    pipeline = services.import_pipeline(data, owner=analyst, user=analyst)

    data["steps"].append({**CLEAN, "order": 2})
    services.import_pipeline(data, replace=True, user=analyst)

    summaries = list(pipeline.versions.order_by("number").values_list("number", "summary"))
    assert summaries == [(1, "imported"), (2, "added step 2")]
    assert pipeline.owner == analyst


def test_import_names_run_setting_errors_by_their_place_in_the_file(db):
    data = {"name": "p", "steps": [{**LOAD, "order": 1}], "run_settings": {"max_retries": -1}}

    with pytest.raises(PipelineInvalid) as caught:
        services.import_pipeline(data)

    assert fields(caught.value) == [(None, "run_settings.max_retries")]
    assert not Pipeline.objects.exists()


def test_export_round_trips_through_import(iris):
    services.update_pipeline(iris, settings={"mlflow_experiment": "team/iris", "max_retries": 1})
    data = services.export_pipeline(iris)
    data["name"] = "iris-again"

    again = services.import_pipeline(json.loads(json.dumps(data)))

    assert services.export_pipeline(again) == data
    assert data["run_settings"]["mlflow_experiment"] == "team/iris"


# The admin


def test_an_admin_edit_is_recorded_in_the_history(client, iris, django_user_model):
    operator = django_user_model.objects.create_user("operator", is_staff=True)
    operator.user_permissions.add(*Permission.objects.filter(codename__endswith="_pipeline"))
    client.force_login(operator)
    steps = list(iris.steps.all())
    data = {
        "name": "iris",
        "description": "Iris flowers",
        "mlflow_experiment": "",
        "max_active_runs": 1,
        "concurrency_policy": "queue",
        "timeout_seconds": "",
        "max_retries": 4,
        "retry_backoff_seconds": 30,
        "steps-TOTAL_FORMS": len(steps),
        "steps-INITIAL_FORMS": len(steps),
        "steps-MIN_NUM_FORMS": 0,
        "steps-MAX_NUM_FORMS": 1000,
    }
    for index, step in enumerate(steps):
        prefix = f"steps-{index}"
        data.update(
            {
                f"{prefix}-id": step.pk,
                f"{prefix}-pipeline": iris.pk,
                f"{prefix}-order": step.order,
                f"{prefix}-step_type": step.step_type,
                f"{prefix}-name": step.name,
                f"{prefix}-params": json.dumps(step.params),
                f"{prefix}-enabled": "on",
            }
        )

    response = client.post(reverse("admin:pipelines_pipeline_change", args=[iris.pk]), data)

    assert response.status_code == 302
    latest = iris.versions.first()
    assert (latest.number, latest.changed_by, latest.summary) == (
        2,
        operator,
        "changed max_retries",
    )


def test_a_pipeline_added_in_the_admin_starts_its_history(admin_client, admin_user):
    data = {
        "name": "from-admin",
        "description": "",
        "mlflow_experiment": "",
        "max_active_runs": 1,
        "concurrency_policy": "queue",
        "timeout_seconds": "",
        "max_retries": 0,
        "retry_backoff_seconds": 30,
        "steps-TOTAL_FORMS": 1,
        "steps-INITIAL_FORMS": 0,
        "steps-MIN_NUM_FORMS": 0,
        "steps-MAX_NUM_FORMS": 1000,
        "steps-0-order": 1,
        "steps-0-step_type": "sklearn_dataset",
        "steps-0-name": "",
        "steps-0-params": json.dumps({"name": "iris"}),
        "steps-0-enabled": "on",
    }

    response = admin_client.post(reverse("admin:pipelines_pipeline_add"), data)

    assert response.status_code == 302
    version = Pipeline.objects.get(name="from-admin").versions.get()
    assert (version.number, version.changed_by, version.summary) == (
        1,
        admin_user,
        "created in the admin",
    )
    assert version.definition["steps"][0]["type"] == "sklearn_dataset"
