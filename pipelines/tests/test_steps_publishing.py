import numpy as np
import pandas as pd
import pytest

from datasources.models import Dataset
from datasources.services import read_dataset
from experiments import tracking
from pipelines import runs, services
from pipelines.choices import RunStatus, StepRunStatus
from pipelines.tests.helpers import bundled, logged_model, rejected, run_step, step_errors


@pytest.fixture
def frame():
    return pd.DataFrame({"id": [1, 2, 3], "score": [0.5, 1.5, 2.5], "kind": ["a", "b", "a"]})


def test_model_trained_registered_then_used_by_later_pipelines(make_dataset, make_pipeline):
    cancer = bundled("breast_cancer")
    new_rows = cancer.drop(columns="target").tail(40).reset_index(drop=True)
    make_dataset(cancer.head(500), "bc-train")
    make_dataset(new_rows, "bc-new")
    train = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "bc-train"}},
            {
                "type": "train_sklearn",
                "params": {
                    "task": "classification",
                    "estimator": "logistic_regression",
                    "target": "target",
                },
            },
            {
                "type": "register_model",
                "params": {"name": "bc", "alias": "champion", "description": "Baseline."},
            },
        ],
        name="train",
    )
    score = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "bc-new"}},
            {"type": "predict", "params": {"model_uri": "models:/bc@champion"}},
            {"type": "save_dataset", "params": {"name": "bc-scored", "source": "predictions"}},
        ],
        name="score",
    )

    trained = runs.start_run(train, wait=True)
    scored = runs.start_run(score, wait=True)
    read_back = make_pipeline([{"type": "csv", "params": {"dataset": "bc-scored"}}], name="read")
    read = runs.start_run(read_back, wait=True)

    assert [trained.status, scored.status, read.status] == [RunStatus.SUCCEEDED] * 3
    assert trained.step_runs.get(order=3).summary == {
        "rows": 500,
        "columns": 31,
        "name": "bc",
        "version": 1,
        "alias": "champion",
    }
    version = tracking.model_version("bc", 1)
    assert version["aliases"] == ["champion"]
    assert version["description"] == "Baseline."
    assert version["run_id"] == trained.mlflow_run_id
    assert version["tags"]["mlops.run_id"] == str(trained.pk)
    assert version["tags"]["mlops.pipeline"] == "train"

    predicting = scored.step_runs.get(order=2)
    assert predicting.summary["resolved_uri"] == "models:/bc/1"
    assert "predicting with models:/bc@champion (models:/bc/1)" in scored.logs
    model = logged_model(trained)
    saved = Dataset.objects.get(name="bc-scored")
    # 30 features, the prediction, two probabilities and the two lineage columns.
    assert (saved.version, saved.row_count, saved.column_count) == (1, 40, 35)
    assert scored.step_runs.get(order=3).summary["dataset"] == "bc-scored v1"
    stored = read_dataset(saved)
    assert list(stored.columns[-5:-2]) == ["prediction", "probability_0", "probability_1"]
    assert set(stored["mlops_model_uri"]) == {"models:/bc/1"}
    assert (stored["prediction"] == model.predict(new_rows)).all()
    assert np.allclose(stored[["probability_0", "probability_1"]], model.predict_proba(new_rows))
    assert (read.step_runs.get().rows_out, read.step_runs.get().columns_out) == (40, 35)

    # Training again moves the alias: the predictions cached under version 1 go stale.
    assert runs.start_run(train, wait=True).status == RunStatus.SUCCEEDED
    assert tracking.model_version("bc", 1)["aliases"] == []
    freshness = services.step_freshness(score)
    assert [f.state for f in freshness] == ["fresh", "stale", "stale"]
    assert freshness[1].reason == "its source data changed"

    rescored = runs.start_run(score, from_step=3, wait=True)

    assert [s.status for s in rescored.step_runs.order_by("order")] == [
        StepRunStatus.REUSED,
        StepRunStatus.SUCCEEDED,
        StepRunStatus.SUCCEEDED,
    ]
    assert rescored.step_runs.get(order=2).summary["resolved_uri"] == "models:/bc/2"
    assert Dataset.objects.resolve("bc-scored").version == 2


def test_register_model_needs_a_step_that_trains_a_model():
    errors = step_errors(
        [
            {"type": "sklearn_dataset", "params": {"name": "iris"}},
            {"type": "register_model", "params": {"name": "iris"}},
        ]
    )

    assert errors == ["step 2, type: register_model needs 'model', which no earlier step produces"]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"name": "team/model"}, "name", "String should match pattern"),
        ({"name": "bc", "alias": "latest"}, "alias", "'latest' is reserved by MLflow"),
        ({"name": "bc", "alias": "V2"}, "alias", "'V2' is reserved by MLflow"),
        ({"name": "bc", "alias": "best model"}, "alias", "String should match pattern"),
        ({"name": "bc", "stage": "Production"}, "stage", "Extra inputs are not permitted"),
    ],
)
def test_register_model_refuses_names_mlflow_cannot_use(params, field, message):
    [error] = rejected("register_model", **params)

    assert error["loc"] == (field,)
    assert message in error["msg"]


@pytest.mark.django_db
def test_save_dataset_stores_the_next_version_of_the_chosen_columns(frame, make_dataset):
    make_dataset(frame, "scores")

    context, log = run_step("save_dataset", {"data": frame}, name="scores", columns=["score", "id"])

    saved = Dataset.objects.resolve("scores")
    assert saved.version == 2
    assert read_dataset(saved).to_dict("list") == {"score": [0.5, 1.5, 2.5], "id": [1, 2, 3]}
    assert context["_summary"] == {
        "dataset": "scores v2",
        "version": 2,
        "checksum": saved.checksum,
        "rows": 3,
        "columns": 2,
    }
    assert log == ["saved 3 rows of data as dataset scores v2"]


@pytest.mark.django_db
def test_save_dataset_saves_predictions_when_asked(frame):
    predictions = frame.assign(prediction=[0, 1, 0])

    run_step(
        "save_dataset",
        {"data": frame, "predictions": predictions},
        name="out",
        source="predictions",
    )

    assert list(read_dataset(Dataset.objects.get(name="out")).columns)[-1] == "prediction"


@pytest.mark.django_db
def test_save_dataset_names_missing_columns_and_stores_nothing(frame):
    with pytest.raises(ValueError, match=r"^columns: column\(s\) \['price'\] not found"):
        run_step("save_dataset", {"data": frame}, name="out", columns=["id", "price"])

    assert not Dataset.objects.exists()


@pytest.mark.django_db
def test_save_dataset_refuses_duplicate_columns_and_writes_no_file(frame, isolated_storage):
    predictions = pd.concat([frame, frame[["kind"]]], axis=1)

    with pytest.raises(ValueError, match=r"^predictions: Duplicate column names: 'kind'"):
        run_step("save_dataset", {"predictions": predictions}, name="out", source="predictions")

    assert not Dataset.objects.exists()
    assert not list((isolated_storage / "media").rglob("*.csv"))


def test_save_dataset_of_predictions_needs_a_predict_step():
    errors = step_errors(
        [
            {"type": "sklearn_dataset", "params": {"name": "iris"}},
            {"type": "save_dataset", "params": {"name": "iris", "source": "predictions"}},
        ]
    )

    assert errors == [
        "step 2, type: save_dataset needs 'predictions', which no earlier step produces"
    ]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"name": "  "}, "name", "a dataset needs a name"),
        ({"name": "x" * 101}, "name", "at most 100 characters"),
        ({"name": "out", "source": "model"}, "source", "Input should be 'data' or 'predictions'"),
        ({"name": "out", "columns": []}, "columns", "at least 1 item"),
    ],
)
def test_save_dataset_params_are_checked(params, field, message):
    [error] = rejected("save_dataset", **params)

    assert error["loc"] == (field,)
    assert message in error["msg"]
