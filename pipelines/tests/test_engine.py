import json
import socket
import time

import pandas as pd
import pytest

from experiments import tracking
from pipelines import runs, services
from pipelines.choices import RunStatus, StepRunStatus
from pipelines.engine.cache import StepCache
from pipelines.models import PipelineStep


def run_now(pipeline, **kwargs):
    return runs.start_run(pipeline, wait=True, **kwargs)


def statuses(run):
    return [(s.order, s.status) for s in run.step_runs.order_by("order")]


def test_run_succeeds_and_records_every_step(classifier_pipeline, isolated_storage):
    run = run_now(classifier_pipeline)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert statuses(run) == [(i, StepRunStatus.SUCCEEDED) for i in (1, 2, 3, 4)]
    assert run.metrics["accuracy"] > 0.8
    assert set(run.metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    steps = list(run.step_runs.order_by("order"))
    assert (steps[0].rows_out, steps[0].columns_out) == (200, 4)
    assert (steps[3].rows_out, steps[3].columns_out) == (200, 7)  # + prediction, 2 probabilities
    assert "Run succeeded" in run.logs
    assert run.started_at <= run.finished_at
    for order in (1, 2, 3, 4):
        assert (
            isolated_storage / "cache" / f"pipeline_{classifier_pipeline.pk}_step_{order}.joblib"
        ).exists()


def test_run_is_tracked_in_mlflow(classifier_pipeline):
    run = run_now(classifier_pipeline)

    tracked = tracking.get_run(run.mlflow_run_id)
    assert tracked["status"] == "FINISHED"
    assert tracked["metrics"]["accuracy"] == pytest.approx(run.metrics["accuracy"])
    assert tracked["params"]["3.train_sklearn.estimator"] == "logistic_regression"
    assert tracked["params"]["1.csv.dataset"] == "data"
    assert tracked["tags"]["mlops.run_id"] == str(run.pk)
    assert tracked["tags"]["mlops.pipeline"] == "classifier"
    model = tracking.load_model(tracked["tags"]["mlops.model_uri"])
    predictions = run.step_runs.get(order=4)
    assert predictions.rows_out == 200
    assert list(model.feature_names_in_) == ["x1", "x2", "colour"]


def test_params_naming_columns_mlflow_refuses_in_keys_are_tracked(make_pipeline, make_dataset):
    make_dataset(pd.DataFrame({"energy (kwh)": [1.0, 2.0], "x<y": [3, 4]}), "data")
    pipeline = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "data"}},
            {"type": "rename_columns", "params": {"mapping": {"energy (kwh)": "e", "x<y": "x"}}},
        ]
    )

    run = run_now(pipeline)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    params = tracking.get_run(run.mlflow_run_id)["params"]
    mapping = json.loads(params["2.rename_columns.mapping"])
    assert mapping == {"energy (kwh)": "e", "x<y": "x"}


def test_warnings_of_a_step_are_shown_in_the_log_and_its_summary(make_pipeline):
    pipeline = make_pipeline(
        [
            {"type": "sklearn_dataset", "params": {"name": "iris"}},
            {
                "type": "train_sklearn",
                "params": {
                    "task": "classification",
                    "estimator": "mlp",
                    "target": "target",
                    "hyperparams": {"max_iter": 3},
                },
            },
        ]
    )

    run = run_now(pipeline)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    [warning] = run.step_runs.get(order=2).summary["warnings"]
    assert "Maximum iterations (3) reached and the optimization hasn't converged" in warning
    assert f"step 2 (train_sklearn): warning: {warning}" in run.logs


def test_an_undefined_metric_is_stored_as_null_and_the_run_succeeds(make_dataset, make_pipeline):
    # One held-out row: r2 is undefined (NaN), which the databases' JSON columns refuse.
    make_dataset(pd.DataFrame({"x": [1.0, 2, 3, 4, 5], "y": [2.0, 4, 6, 8, 10]}), "tiny")
    train = {"task": "regression", "estimator": "linear_regression", "target": "y"}
    pipeline = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "tiny"}},
            {"type": "train_sklearn", "params": {**train, "test_size": 0.2}},
        ]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED
    run.refresh_from_db()
    assert run.metrics["r2"] is None
    assert run.step_runs.get(order=2).status == StepRunStatus.SUCCEEDED


def test_run_freezes_the_definition_it_ran(classifier_pipeline):
    run = run_now(classifier_pipeline)
    PipelineStep.objects.filter(pipeline=classifier_pipeline, order=3).update(
        params={"task": "classification", "estimator": "random_forest", "target": "label"}
    )

    run.refresh_from_db()
    assert run.definition["steps"][2]["params"]["estimator"] == "logistic_regression"


def test_failure_in_the_middle_records_step_and_skips_the_rest(classifier_pipeline):
    PipelineStep.objects.filter(pipeline=classifier_pipeline, order=2).update(
        params={"columns": ["no_such_column"]}
    )

    run = run_now(classifier_pipeline)

    assert run.status == RunStatus.FAILED
    assert statuses(run) == [
        (1, StepRunStatus.SUCCEEDED),
        (2, StepRunStatus.FAILED),
        (3, StepRunStatus.SKIPPED),
        (4, StepRunStatus.SKIPPED),
    ]
    assert "step 2 (Clean) failed" in run.error_message
    assert "no_such_column" in run.error_message
    assert "Traceback" in run.error_traceback
    assert tracking.get_run(run.mlflow_run_id)["status"] == "FAILED"


def test_run_from_step_reuses_fresh_cache(classifier_pipeline):
    run_now(classifier_pipeline)

    replay = run_now(classifier_pipeline, from_step=3)

    assert replay.status == RunStatus.SUCCEEDED
    assert statuses(replay) == [
        (1, StepRunStatus.REUSED),
        (2, StepRunStatus.REUSED),
        (3, StepRunStatus.SUCCEEDED),
        (4, StepRunStatus.SUCCEEDED),
    ]
    assert replay.step_runs.get(order=2).rows_out == 200
    assert "Reused the cached output of step 2 (Clean)" in replay.logs


def test_run_from_step_reruns_from_first_stale_step(classifier_pipeline):
    run_now(classifier_pipeline)
    PipelineStep.objects.filter(pipeline=classifier_pipeline, order=2).update(params={"how": "all"})

    replay = run_now(classifier_pipeline, from_step=4)

    assert statuses(replay) == [
        (1, StepRunStatus.REUSED),
        (2, StepRunStatus.SUCCEEDED),
        (3, StepRunStatus.SUCCEEDED),
        (4, StepRunStatus.SUCCEEDED),
    ]
    assert "Cache of step 2 (Clean) is stale: its parameters changed." in replay.logs


def test_editing_params_marks_step_and_later_steps_stale(classifier_pipeline):
    run_now(classifier_pipeline)
    assert [f.state for f in services.step_freshness(classifier_pipeline)] == ["fresh"] * 4

    PipelineStep.objects.filter(pipeline=classifier_pipeline, order=3).update(
        params={"task": "classification", "estimator": "random_forest", "target": "label"}
    )

    freshness = services.step_freshness(classifier_pipeline)
    assert [f.state for f in freshness] == ["fresh", "fresh", "stale", "stale"]
    assert freshness[2].reason == "its parameters changed"
    assert freshness[3].reason == "an earlier step changed"


def test_new_dataset_version_marks_extraction_stale(
    classifier_pipeline, make_dataset, classification_frame
):
    run_now(classifier_pipeline)

    make_dataset(classification_frame.head(50), "data")

    freshness = services.step_freshness(classifier_pipeline)
    assert freshness[0].state == "stale"
    assert freshness[0].reason == "its source data changed"


def test_tampered_cache_file_is_refused_and_steps_rerun(classifier_pipeline, isolated_storage):
    run_now(classifier_pipeline)
    cache_file = isolated_storage / "cache" / f"pipeline_{classifier_pipeline.pk}_step_2.joblib"
    cache_file.write_bytes(cache_file.read_bytes() + b"tampered")

    replay = run_now(classifier_pipeline, from_step=3)

    assert replay.status == RunStatus.SUCCEEDED
    assert "failed its integrity check" in replay.logs
    assert statuses(replay) == [(i, StepRunStatus.SUCCEEDED) for i in (1, 2, 3, 4)]


def test_cache_written_under_another_secret_key_is_refused_unread(
    classifier_pipeline, settings, monkeypatch
):
    run_now(classifier_pipeline)
    settings.SECRET_KEY = "another-" + settings.SECRET_KEY
    monkeypatch.setattr("pipelines.engine.cache.joblib.load", refuse_to_unpickle)

    replay = run_now(classifier_pipeline, from_step=3)

    assert replay.status == RunStatus.SUCCEEDED, replay.error_message
    assert "cache of step 2 failed its integrity check; running every step." in replay.logs
    assert statuses(replay) == [(i, StepRunStatus.SUCCEEDED) for i in (1, 2, 3, 4)]


def refuse_to_unpickle(*args, **kwargs):
    raise AssertionError("a cache file was unpickled")


def test_planted_cache_file_with_forged_record_is_refused(classifier_pipeline, isolated_storage):
    run_now(classifier_pipeline)
    cache = StepCache(classifier_pipeline.pk)
    meta_path = cache.meta_path(2)
    meta = json.loads(meta_path.read_text())
    meta["mac"] = "0" * 64
    meta_path.write_text(json.dumps(meta))

    replay = run_now(classifier_pipeline, from_step=3)

    assert "failed its integrity check" in replay.logs
    assert replay.step_runs.get(order=1).status == StepRunStatus.SUCCEEDED


def test_cache_write_leaves_no_temporary_files(classifier_pipeline, isolated_storage):
    run_now(classifier_pipeline)

    names = sorted(p.name for p in (isolated_storage / "cache").iterdir())
    assert not [name for name in names if name.endswith(".tmp")]
    assert len([name for name in names if name.endswith(".joblib")]) == 4
    # Beside each: its signed record and the inspector's profile and table copies.
    assert all(name.startswith("pipeline_") for name in names)


def test_disabled_step_is_not_run(classifier_pipeline):
    PipelineStep.objects.filter(pipeline=classifier_pipeline, order=2).update(enabled=False)

    run = run_now(classifier_pipeline)

    assert run.status == RunStatus.SUCCEEDED
    assert [s.order for s in run.step_runs.all()] == [1, 3, 4]


def test_queued_run_is_claimed_once(classifier_pipeline, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        run = runs.start_run(classifier_pipeline)
    assert run.status == RunStatus.QUEUED
    assert len(callbacks) == 1

    first = runs.execute_run(run.pk, isolated=False)
    second = runs.execute_run(run.pk, isolated=False)

    assert first.status == RunStatus.SUCCEEDED
    assert second is None
    assert run.step_runs.filter(order=1).count() == 1


def test_an_unreachable_tracking_store_fails_the_run_at_once_naming_it(
    classifier_pipeline, settings
):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now: connections are refused
    settings.MLFLOW_TRACKING_URI = f"http://ci:s3cret@127.0.0.1:{port}"

    started = time.monotonic()
    run = run_now(classifier_pipeline)

    assert time.monotonic() - started < 30
    assert run.status == RunStatus.FAILED
    assert f"the MLflow tracking store at http://127.0.0.1:{port} cannot be reached" in (
        run.error_message
    )
    assert "s3cret" not in run.error_message + run.logs + run.error_traceback
    assert not run.step_runs.exclude(status="skipped").exists()
    assert run.mlflow_run_id == ""
