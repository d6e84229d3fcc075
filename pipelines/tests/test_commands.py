import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from datasources.models import Dataset
from experiments import tracking
from pipelines.choices import RunStatus, StepRunStatus
from pipelines.models import ApiToken, Pipeline, PipelineRun


def call(*args):
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_run_pipeline_prints_progress_status_and_metrics(classifier_pipeline):
    output = call("run_pipeline", "classifier")

    run = PipelineRun.objects.get()
    assert run.status == RunStatus.SUCCEEDED
    assert run.trigger == "command"
    assert "Running step 3 (Train)." in output
    assert f"Run #{run.pk}: succeeded" in output
    assert "accuracy:" in output
    assert f"MLflow run: {run.mlflow_run_id}" in output


def test_run_pipeline_accepts_id_and_from_step(classifier_pipeline):
    call("run_pipeline", str(classifier_pipeline.pk))
    output = call("run_pipeline", str(classifier_pipeline.pk), "--from-step", "3")

    replay = PipelineRun.objects.first()
    assert [s.status for s in replay.step_runs.all()][:2] == [StepRunStatus.REUSED] * 2
    assert "step 1 csv: Reused from cache" in output


def test_run_pipeline_fails_with_nonzero_exit_when_run_fails(classifier_pipeline):
    classifier_pipeline.steps.filter(order=3).update(
        params={"task": "classification", "estimator": "logistic_regression", "target": "nope"}
    )

    with pytest.raises(CommandError, match="step 3 \\(Train\\) failed: target"):
        call("run_pipeline", "classifier")
    assert PipelineRun.objects.get().status == RunStatus.FAILED


def test_run_pipeline_unknown_name_and_bad_step(classifier_pipeline):
    with pytest.raises(CommandError, match="no pipeline named or numbered 'missing'"):
        call("run_pipeline", "missing")
    with pytest.raises(CommandError, match="from_step: no step has this order"):
        call("run_pipeline", "classifier", "--from-step", "9")
    assert not PipelineRun.objects.exists()


def test_add_dataset_stores_csv_with_counts(tmp_path, db):
    path = tmp_path / "sales.csv"
    path.write_text("region,amount\nnorth,10\nsouth,\n")

    output = call("add_dataset", str(path))

    dataset = Dataset.objects.get(name="sales")
    assert (dataset.row_count, dataset.column_count) == (2, 2)
    assert dataset.schema == {"region": "str", "amount": "float64"}
    assert "Added dataset sales v1" in output
    call("add_dataset", str(path), "--name", "sales")
    assert Dataset.objects.get(name="sales", version=2).checksum == dataset.checksum


def test_add_dataset_rejects_empty_file_and_stores_nothing(tmp_path, db):
    path = tmp_path / "empty.csv"
    path.write_text("")

    with pytest.raises(CommandError, match="The file is empty"):
        call("add_dataset", str(path))
    assert not Dataset.objects.exists()


def test_export_import_round_trips_exactly(classifier_pipeline, tmp_path):
    exported = call("export_pipeline", "classifier")
    data = json.loads(exported)
    assert [step["type"] for step in data["steps"]] == [
        "csv",
        "drop_na",
        "train_sklearn",
        "predict",
    ]
    data["name"] = "copy"
    path = tmp_path / "copy.json"
    path.write_text(json.dumps(data))

    output = call("import_pipeline", str(path))

    assert "Imported pipeline copy" in output
    assert json.loads(call("export_pipeline", "copy")) == data


def test_import_refuses_invalid_pipeline_and_saves_nothing(db, tmp_path):
    path = tmp_path / "bad.json"
    bad_steps = [
        {
            "order": 1,
            "type": "sklearn_dataset",
            "name": "",
            "params": {"name": "iris"},
            "enabled": True,
        },
        {"order": 2, "type": "predict", "name": "", "params": {}, "enabled": True},
        {"order": 3, "type": "drop_na", "name": "", "params": {"how": "some"}, "enabled": True},
    ]
    path.write_text(json.dumps({"name": "bad", "description": "", "steps": bad_steps}))

    with pytest.raises(CommandError) as error:
        call("import_pipeline", str(path))

    message = str(error.value)
    assert "step 2, type: predict needs 'model', which no earlier step produces" in message
    assert "step 3, params.how" in message
    assert not Pipeline.objects.exists()


def test_import_refuses_existing_name_unless_replace(classifier_pipeline, tmp_path):
    data = json.loads(call("export_pipeline", "classifier"))
    data["description"] = "changed"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))

    with pytest.raises(CommandError, match="a pipeline named 'classifier' exists"):
        call("import_pipeline", str(path))
    call("import_pipeline", str(path), "--replace")
    assert Pipeline.objects.get(name="classifier").description == "changed"


def test_import_reports_unreadable_json(db, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")

    with pytest.raises(CommandError, match="is not valid JSON"):
        call("import_pipeline", str(path))


def test_seed_demo_creates_pipelines_that_run(db):
    output = call("seed_demo")

    assert "Created pipeline breast-cancer-classifier." in output
    assert set(Pipeline.objects.values_list("name", flat=True)) == {
        "breast-cancer-classifier",
        "diabetes-regressor",
    }
    assert call("seed_demo") == "Demo data already present.\n"
    call("run_pipeline", "breast-cancer-classifier")
    run = PipelineRun.objects.get()
    assert run.metrics["accuracy"] > 0.9
    assert tracking.get_run(run.mlflow_run_id)["metrics"]["accuracy"] > 0.9
    assert run.step_runs.get(order=2).rows_out < run.step_runs.get(order=1).rows_out
    assert tracking.resolve_model_version("models:/breast-cancer-classifier@champion") == (
        "models:/breast-cancer-classifier/1"
    )


def test_seed_demo_run_queues_each_demo_pipeline_once(db):
    output = call("seed_demo", "--run")

    queued = PipelineRun.objects.filter(status=RunStatus.QUEUED)
    assert sorted(queued.values_list("pipeline__name", flat=True)) == [
        "breast-cancer-classifier",
        "diabetes-regressor",
    ]
    assert "Queued run #" in output
    assert "Queued" not in call("seed_demo", "--run")  # they have a run now
    assert PipelineRun.objects.count() == 2


def test_create_integration_user_prints_a_token_that_can_start_runs(classifier_pipeline):
    from rest_framework.test import APIClient

    token = call("create_integration_user", "ci-bot").strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    response = client.post("/api/v1/pipelines/classifier/runs/", {}, format="json")

    assert response.status_code == 202, response.content
    assert PipelineRun.objects.get().started_by.username == "ci-bot"
    user = get_user_model().objects.get(username="ci-bot")
    assert not user.has_usable_password()
    # Stored as a digest only, expiring: a second call issues another token, by name.
    stored = ApiToken.objects.get(user=user)
    assert token.startswith("mlops_") and token not in {stored.digest, stored.token_key}
    assert stored.name == "integration" and stored.expiry > timezone.now() + timedelta(days=89)
    second = call("create_integration_user", "ci-bot", "--token-name", "nightly").strip()
    assert second != token
    assert sorted(ApiToken.objects.filter(user=user).values_list("name", flat=True)) == [
        "integration",
        "nightly",
    ]
    client.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert client.get("/api/v1/runs/").status_code == 200


@pytest.mark.slow
def test_seeded_regressor_runs(db):
    call("seed_demo")
    call("run_pipeline", "diabetes-regressor")
    run = PipelineRun.objects.get()
    assert run.metrics["r2"] > 0.3
    assert run.step_runs.get(order=2).rows_out == 442  # the 15 repeated rows are gone


def test_create_local_admin_prints_password_once(db):
    output = call("create_local_admin")
    password = output.strip().rsplit(" / ", 1)[1]

    assert get_user_model().objects.get(username="admin").check_password(password)
    assert "changepassword admin" in call("create_local_admin")
