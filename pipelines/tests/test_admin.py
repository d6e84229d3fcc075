import json
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from pipelines import runs, schedules, services
from pipelines.choices import RunStatus
from pipelines.engine.cache import StepCache
from pipelines.models import Pipeline, PipelineRun, PipelineSchedule, PipelineStep, ScheduleTick

# Django 6.0 removes what these warn about (e.g. format_html() without arguments).
pytestmark = [
    pytest.mark.filterwarnings("error::django.utils.deprecation.RemovedInDjango60Warning"),
    pytest.mark.filterwarnings("error::django.utils.deprecation.RemovedInDjango61Warning"),
]


def step_form(prefix_index, step, pk=""):
    prefix = f"steps-{prefix_index}"
    return {
        f"{prefix}-id": pk,
        f"{prefix}-order": step["order"],
        f"{prefix}-step_type": step["type"],
        f"{prefix}-name": step.get("name", ""),
        f"{prefix}-params": json.dumps(step.get("params", {})),
        f"{prefix}-enabled": "on",
    }


def pipeline_form(name, steps):
    data = {
        "name": name,
        "description": "",
        "mlflow_experiment": "",
        "max_active_runs": 1,
        "concurrency_policy": "queue",
        "timeout_seconds": "",
        "max_retries": 0,
        "retry_backoff_seconds": 30,
        "steps-TOTAL_FORMS": len(steps),
        "steps-INITIAL_FORMS": 0,
        "steps-MIN_NUM_FORMS": 0,
        "steps-MAX_NUM_FORMS": 1000,
    }
    for index, step in enumerate(steps):
        data.update(step_form(index, step))
    return data


def test_admin_creates_valid_pipeline_with_steps(admin_client):
    steps = [
        {"order": 1, "type": "sklearn_dataset", "params": {"name": "iris"}},
        {
            "order": 2,
            "type": "train_sklearn",
            "params": {"task": "classification", "estimator": "random_forest", "target": "target"},
        },
    ]

    response = admin_client.post(
        reverse("admin:pipelines_pipeline_add"), pipeline_form("iris", steps)
    )

    assert response.status_code == 302
    assert list(Pipeline.objects.get(name="iris").steps.values_list("step_type", flat=True)) == [
        "sklearn_dataset",
        "train_sklearn",
    ]


def test_admin_refuses_invalid_steps_and_saves_nothing(admin_client):
    steps = [
        {"order": 1, "type": "sklearn_dataset", "params": {"name": "iris"}},
        {"order": 2, "type": "predict", "params": {}},
        {
            "order": 3,
            "type": "train_sklearn",
            "params": {
                "task": "classification",
                "estimator": "random_forest",
                "target": "target",
                "test_size": 2,
            },
        },
    ]

    response = admin_client.post(
        reverse("admin:pipelines_pipeline_add"), pipeline_form("bad", steps)
    )

    assert response.status_code == 200
    content = response.content.decode()
    assert "predict needs &#x27;model&#x27;, which no earlier step produces" in content
    assert "params.test_size: Input should be less than 1" in content
    assert not Pipeline.objects.exists()


def test_admin_run_action_queues_a_run(
    admin_client, classifier_pipeline, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(
            reverse("admin:pipelines_pipeline_changelist"),
            {"action": "run_pipelines", "_selected_action": [classifier_pipeline.pk]},
            follow=True,
        )

    run = PipelineRun.objects.get()
    assert run.status == RunStatus.QUEUED
    assert run.trigger == "manual"
    assert run.started_by.username == "admin"
    assert f"Run #{run.pk} of classifier queued." in response.content.decode()
    assert len(callbacks) == 1


def test_admin_clear_cache_action_removes_files(
    admin_client, classifier_pipeline, isolated_storage
):
    runs.start_run(classifier_pipeline, wait=True)
    assert len(list((isolated_storage / "cache").glob("*.joblib"))) == 4

    response = admin_client.post(
        reverse("admin:pipelines_pipeline_changelist"),
        {"action": "clear_caches", "_selected_action": [classifier_pipeline.pk]},
        follow=True,
    )

    assert "Removed 4 cached step file(s)." in response.content.decode()
    assert not list((isolated_storage / "cache").iterdir())


def test_admin_pipeline_page_shows_step_freshness(admin_client, classifier_pipeline):
    runs.start_run(classifier_pipeline, wait=True)
    classifier_pipeline.steps.filter(order=4).update(params={"probabilities": False})

    response = admin_client.get(
        reverse("admin:pipelines_pipeline_change", args=[classifier_pipeline.pk])
    )

    content = response.content.decode()
    assert "step 3: fresh" in content
    assert "step 4: stale (its parameters changed)" in content


def test_admin_freshness_shows_the_last_recorded_source_read(
    admin_client, classifier_pipeline, monkeypatch
):
    # What a database extraction's cache recorded, without a database source to run here.
    read_at = datetime(2026, 5, 1, 6, 30, tzinfo=UTC)
    recorded = services.StepFreshness(1, "sql", "fresh", "", "2026-04-30", read_at)
    monkeypatch.setattr(services, "step_freshness", lambda pipeline: [recorded])

    response = admin_client.get(
        reverse("admin:pipelines_pipeline_change", args=[classifier_pipeline.pk])
    )

    assert "step 1: fresh; source last read 2026-05-01 06:30 UTC at version 2026-04-30" in (
        response.content.decode()
    )


def test_admin_run_page_is_read_only_with_logs_and_step_runs(admin_client, classifier_pipeline):
    run = runs.start_run(classifier_pipeline, wait=True)

    response = admin_client.get(reverse("admin:pipelines_pipelinerun_change", args=[run.pk]))

    content = response.content.decode()
    assert response.status_code == 200
    assert "Run succeeded" in content
    assert "train_sklearn" in content
    assert 'name="_save"' not in content
    assert (
        admin_client.post(
            reverse("admin:pipelines_pipelinerun_change", args=[run.pk]), {}
        ).status_code
        == 403
    )


def test_admin_changelists_render_with_bounded_queries(
    admin_client, classifier_pipeline, django_assert_max_num_queries
):
    for _ in range(3):
        runs.start_run(classifier_pipeline, wait=True)
    for name in ("pipelines_pipeline", "pipelines_pipelinerun", "datasources_dataset"):
        with django_assert_max_num_queries(12):
            response = admin_client.get(reverse(f"admin:{name}_changelist"))
        assert response.status_code == 200


def test_admin_pipeline_page_lists_step_types_and_their_params(admin_client, classifier_pipeline):
    response = admin_client.get(
        reverse("admin:pipelines_pipeline_change", args=[classifier_pipeline.pk])
    )

    content = response.content.decode()
    assert "<code>filter_rows</code>" in content
    assert "how?: &#x27;any&#x27; | &#x27;all&#x27;" in content
    assert "task: &#x27;classification&#x27; | &#x27;regression&#x27;" in content


def test_admin_pipeline_form_shows_the_experiment_default_literally(admin_client, db):
    response = admin_client.get(reverse("admin:pipelines_pipeline_add"))

    assert "defaults to pipeline/&lt;name&gt;." in response.content.decode()


def test_admin_reports_only_the_json_error_of_malformed_params(admin_client, db):
    steps = [
        {"order": 1, "type": "sklearn_dataset", "params": {"name": "iris"}},
        {"order": 2, "type": "fill_na"},
    ]
    form = pipeline_form("bad-json", steps)
    form["steps-1-params"] = '{"strategy": "mean",'

    response = admin_client.post(reverse("admin:pipelines_pipeline_add"), form)

    content = response.content.decode()
    assert response.status_code == 200
    assert "Enter a valid JSON." in content
    assert "required when strategy" not in content
    assert not Pipeline.objects.exists()


def test_admin_step_type_is_a_choice_of_registered_types(admin_client, db):
    url = reverse("admin:pipelines_pipeline_add")
    page = admin_client.get(url).content.decode()
    assert '<optgroup label="Training">' in page
    assert (
        '<option value="train_sklearn">train_sklearn: Train a scikit-learn model</option>' in page
    )

    steps = [{"order": 1, "type": "sklearn_datset", "params": {"name": "iris"}}]
    response = admin_client.post(url, pipeline_form("typo", steps))

    content = response.content.decode()
    assert "Unknown step type “sklearn_datset”" in content
    assert "known:" not in content  # no second error from the check of the steps
    assert not Pipeline.objects.exists()


def schedule_form(pipeline, **fields):
    return {
        "pipeline": pipeline.pk,
        "cron": "0 6 * * *",
        "timezone": "UTC",
        "interval_seconds": "",
        "enabled": "on",
        "overlap_policy": "skip",
        "catch_up": "none",
        "ticks-TOTAL_FORMS": 0,
        "ticks-INITIAL_FORMS": 0,
        "ticks-MIN_NUM_FORMS": 0,
        "ticks-MAX_NUM_FORMS": 1000,
        **fields,
    }


def test_admin_schedule_time_zone_is_a_choice_of_known_zones(admin_client, classifier_pipeline):
    url = reverse("admin:pipelines_pipelineschedule_add")
    page = admin_client.get(url).content.decode()
    assert '<select name="timezone"' in page
    assert page.index('<option value="UTC" selected>') < page.index('value="Africa/Abidjan"')

    response = admin_client.post(url, schedule_form(classifier_pipeline, timezone="Europe/Pariss"))
    assert response.status_code == 200
    assert "Unknown time zone “Europe/Pariss”" in response.content.decode()
    assert not PipelineSchedule.objects.exists()

    response = admin_client.post(url, schedule_form(classifier_pipeline, timezone="Asia/Tokyo"))
    assert response.status_code == 302
    assert PipelineSchedule.objects.get().timezone == "Asia/Tokyo"


def test_admin_shows_schedule_times_in_the_schedule_time_zone(admin_client, classifier_pipeline):
    schedule = schedules.create_schedule(
        classifier_pipeline,
        cron="0 6 * * *",
        timezone="Europe/Paris",
        now=datetime(2026, 5, 1, tzinfo=UTC),
    )
    tick = ScheduleTick.objects.create(
        schedule=schedule, tick_at=datetime(2026, 4, 30, 4, tzinfo=UTC), outcome="skipped"
    )
    change_page = reverse("admin:pipelines_pipelineschedule_change", args=[schedule.pk])
    tick_page = reverse("admin:pipelines_scheduletick_change", args=[tick.pk])

    for url in (changelist("pipelineschedule"), change_page):
        assert "2026-05-01 06:00 CEST (Europe/Paris)" in admin_client.get(url).content.decode()
    for url in (change_page, changelist("scheduletick"), tick_page):
        assert "2026-04-30 06:00 CEST (Europe/Paris)" in admin_client.get(url).content.decode()


def add_pipelines_with_runs(count, start=0):
    for index in range(start, start + count):
        pipeline = Pipeline.objects.create(name=f"pipeline-{index:02}")
        PipelineStep.objects.create(
            pipeline=pipeline, order=1, step_type="sklearn_dataset", params={"name": "iris"}
        )
        PipelineRun.objects.create(pipeline=pipeline, status=RunStatus.SUCCEEDED)


def test_admin_pipeline_list_queries_do_not_grow_with_pipelines(
    admin_client, db, django_assert_max_num_queries
):
    add_pipelines_with_runs(3)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(changelist("pipeline"))
    add_pipelines_with_runs(27, start=3)

    with django_assert_max_num_queries(len(few)):
        response = admin_client.get(changelist("pipeline"))

    content = response.content.decode()
    assert content.count('class="field-last_run_status">Succeeded<') == 30
    assert content.count('class="field-step_count">1<') == 30


def test_admin_deletes_selected_pipelines_from_the_annotated_list(admin_client, db):
    add_pipelines_with_runs(2)
    doomed = Pipeline.objects.get(name="pipeline-00")
    data = {"action": "delete_selected", "_selected_action": [doomed.pk], "post": "yes"}

    response = admin_client.post(changelist("pipeline"), data, follow=True)

    assert "Successfully deleted 1 pipeline." in response.content.decode()
    assert list(Pipeline.objects.values_list("name", flat=True)) == ["pipeline-01"]


def test_admin_messages_show_names_as_typed(admin_client, db):
    pipeline = Pipeline.objects.create(name="diabetes-regressor")
    PipelineStep.objects.create(pipeline=pipeline, order=1, step_type="predict")

    response = post_action(admin_client, "pipeline", "run_pipelines", pipeline)

    content = response.content.decode()
    assert "diabetes-regressor: step 1, type: predict needs" in content
    assert "Diabetes-regressor" not in content


# -- who may use the actions ------------------------------------------------------------

VIEW_ONLY = ("view_pipeline", "view_pipelinerun", "view_pipelineschedule")
ACTIONS = {
    "pipeline": ("run_pipelines", "clear_caches"),
    "pipelinerun": ("cancel_runs",),
    "pipelineschedule": ("pause", "resume", "fire_now"),
}


@pytest.fixture
def staff_client(client, django_user_model):
    """Log the client in as staff user "analyst" holding only the given permissions."""

    def login(*codenames):
        user, _ = django_user_model.objects.get_or_create(username="analyst", is_staff=True)
        permissions = Permission.objects.filter(
            content_type__app_label="pipelines", codename__in=codenames
        )
        user.user_permissions.set(permissions)
        client.force_login(user)
        return client

    return login


def changelist(model):
    return reverse(f"admin:pipelines_{model}_changelist")


def post_action(client, model, action, obj):
    data = {"action": action, "_selected_action": [obj.pk]}
    return client.post(changelist(model), data, follow=True)


def offered_actions(client, model):
    response = client.get(changelist(model))
    assert response.status_code == 200
    content = response.content.decode()
    return {action for action in ACTIONS[model] if f'<option value="{action}"' in content}


@pytest.fixture
def cached_step(classifier_pipeline, isolated_storage):
    path = StepCache(classifier_pipeline.pk).path(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"cached")
    return path


def test_view_only_staff_is_offered_no_action(staff_client, classifier_pipeline):
    client = staff_client(*VIEW_ONLY)
    runs.start_run(classifier_pipeline)
    schedules.create_schedule(classifier_pipeline, interval_seconds=600)

    for model in ACTIONS:
        assert offered_actions(client, model) == set()


def test_view_only_staff_cannot_forge_actions(staff_client, classifier_pipeline, cached_step):
    client = staff_client(*VIEW_ONLY)
    run = runs.start_run(classifier_pipeline)
    active = schedules.create_schedule(classifier_pipeline, interval_seconds=600)
    paused = schedules.create_schedule(classifier_pipeline, interval_seconds=900)
    schedules.pause_schedule(paused)

    post_action(client, "pipeline", "run_pipelines", classifier_pipeline)
    post_action(client, "pipeline", "clear_caches", classifier_pipeline)
    post_action(client, "pipelinerun", "cancel_runs", run)
    post_action(client, "pipelineschedule", "pause", active)
    post_action(client, "pipelineschedule", "resume", paused)
    post_action(client, "pipelineschedule", "fire_now", active)

    assert list(PipelineRun.objects.all()) == [run]
    assert cached_step.exists()
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and not run.cancel_requested
    assert PipelineSchedule.objects.get(pk=active.pk).enabled
    assert not PipelineSchedule.objects.get(pk=paused.pk).enabled
    assert not ScheduleTick.objects.exists()


def test_staff_who_may_add_runs_can_start_them(staff_client, classifier_pipeline):
    client = staff_client("view_pipeline", "add_pipelinerun")
    assert offered_actions(client, "pipeline") == {"run_pipelines"}

    response = post_action(client, "pipeline", "run_pipelines", classifier_pipeline)

    run = PipelineRun.objects.get()
    assert run.started_by.username == "analyst"
    assert f"Run #{run.pk} of classifier queued." in response.content.decode()


def test_staff_who_may_change_pipelines_can_clear_caches(
    staff_client, classifier_pipeline, cached_step
):
    client = staff_client("view_pipeline", "change_pipeline")
    assert offered_actions(client, "pipeline") == {"clear_caches"}

    response = post_action(client, "pipeline", "clear_caches", classifier_pipeline)

    assert "Removed 1 cached step file(s)." in response.content.decode()
    assert not cached_step.exists()


def test_staff_who_may_change_runs_can_cancel_them(staff_client, classifier_pipeline):
    client = staff_client("view_pipelinerun", "change_pipelinerun")
    run = runs.start_run(classifier_pipeline)
    assert offered_actions(client, "pipelinerun") == {"cancel_runs"}

    response = post_action(client, "pipelinerun", "cancel_runs", run)

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert f"Run #{run.pk}: cancelled." in response.content.decode()


def test_schedule_actions_need_change_and_firing_also_needs_add_run(
    staff_client, classifier_pipeline
):
    schedule = schedules.create_schedule(classifier_pipeline, interval_seconds=600)
    client = staff_client("view_pipelineschedule", "change_pipelineschedule")
    assert offered_actions(client, "pipelineschedule") == {"pause", "resume"}

    post_action(client, "pipelineschedule", "pause", schedule)
    post_action(client, "pipelineschedule", "fire_now", schedule)
    schedule.refresh_from_db()
    assert not schedule.enabled
    assert not PipelineRun.objects.exists()

    client = staff_client("view_pipelineschedule", "change_pipelineschedule", "add_pipelinerun")
    assert offered_actions(client, "pipelineschedule") == {"pause", "resume", "fire_now"}
    response = post_action(client, "pipelineschedule", "fire_now", schedule)
    run = PipelineRun.objects.get()
    assert f"classifier every 600s: started run #{run.pk}." in response.content.decode()
