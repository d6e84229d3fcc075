import json

from django.urls import reverse

from pipelines import runs
from pipelines.choices import RunStatus
from pipelines.models import Pipeline, PipelineRun


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
    assert "step 4: stale its parameters changed" in content


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


def test_overview_lists_pipelines_and_runs(
    admin_client, classifier_pipeline, django_assert_max_num_queries
):
    run = runs.start_run(classifier_pipeline, wait=True)

    with django_assert_max_num_queries(6):
        response = admin_client.get(reverse("dashboards:overview"))

    content = response.content.decode()
    assert "classifier" in content
    assert f"#{run.pk}" in content
    assert "accuracy=" in content


def test_overview_requires_login(client, db):
    response = client.get(reverse("dashboards:overview"))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_admin_pipeline_page_lists_step_types_and_their_params(admin_client, classifier_pipeline):
    response = admin_client.get(
        reverse("admin:pipelines_pipeline_change", args=[classifier_pipeline.pk])
    )

    content = response.content.decode()
    assert "<code>filter_rows</code>" in content
    assert "how?: &#x27;any&#x27; | &#x27;all&#x27;" in content
    assert "task: &#x27;classification&#x27; | &#x27;regression&#x27;" in content
