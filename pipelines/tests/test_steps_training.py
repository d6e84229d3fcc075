import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn import datasets
from sklearn.pipeline import Pipeline

from pipelines import runs
from pipelines.choices import RunStatus
from pipelines.engine.registry import get_step_type
from pipelines.steps.estimators import ESTIMATORS

CLASSIFICATION_KEYS = {"accuracy", "precision", "recall", "f1", "roc_auc"}
REGRESSION_KEYS = {"rmse", "mae", "r2"}


def bundled(name):
    return getattr(datasets, f"load_{name}")(as_frame=True).frame


def train(data, **params):
    step, log = get_step_type("train_sklearn"), []
    context = step.run({"data": data}, step.Params.model_validate(params), log.append)
    return context, log


def rejected(**params):
    with pytest.raises(ValidationError) as caught:
        get_step_type("train_sklearn").Params.model_validate(params)
    return caught.value.errors()


@pytest.mark.parametrize("estimator", list(ESTIMATORS["classification"]))
def test_classifier_scores_well_on_breast_cancer(estimator):
    context, log = train(
        bundled("breast_cancer"), task="classification", estimator=estimator, target="target"
    )

    metrics = context["metrics"]
    assert set(metrics) == CLASSIFICATION_KEYS
    assert all(0 <= value <= 1 for value in metrics.values())
    assert metrics["accuracy"] > 0.9
    assert metrics["roc_auc"] > 0.95
    assert isinstance(context["model"], Pipeline)
    assert context["_summary"]["train_rows"] + context["_summary"]["test_rows"] == 569
    assert "accuracy=" in log[0]


@pytest.mark.parametrize("estimator", list(ESTIMATORS["regression"]))
def test_regressor_scores_plausibly_on_diabetes(estimator):
    context, _ = train(bundled("diabetes"), task="regression", estimator=estimator, target="target")

    metrics = context["metrics"]
    assert set(metrics) == REGRESSION_KEYS
    assert metrics["r2"] > 0.3
    assert 0 < metrics["mae"] <= metrics["rmse"] < 80  # target spans 25..346


def test_multiclass_classifier_reports_weighted_scores_on_iris():
    context, _ = train(
        bundled("iris"), task="classification", estimator="logistic_regression", target="target"
    )

    assert set(context["metrics"]) == CLASSIFICATION_KEYS
    assert context["metrics"]["accuracy"] > 0.85
    assert list(context["model"].classes_) == [0, 1, 2]


def test_test_size_sets_the_held_out_share():
    context, _ = train(
        bundled("iris"),
        task="classification",
        estimator="logistic_regression",
        target="target",
        test_size=0.4,
    )

    assert (context["_summary"]["train_rows"], context["_summary"]["test_rows"]) == (90, 60)


def test_same_random_state_gives_same_metrics():
    params = {"task": "classification", "estimator": "random_forest", "target": "target"}
    params["hyperparams"] = {"n_estimators": 10}

    first, _ = train(bundled("wine"), **params)
    second, _ = train(bundled("wine"), **params)

    assert first["metrics"] == second["metrics"]


def test_hyperparams_reach_the_estimator():
    context, _ = train(
        bundled("iris"),
        task="classification",
        estimator="random_forest",
        target="target",
        hyperparams={"n_estimators": 7, "max_depth": 2},
    )

    estimator = context["model"].named_steps["estimator"]
    assert (estimator.n_estimators, estimator.max_depth, estimator.random_state) == (7, 2, 42)


def test_categorical_and_missing_values_are_handled_inside_the_model(classification_frame):
    context, _ = train(
        classification_frame, task="classification", estimator="logistic_regression", target="label"
    )

    model = context["model"]
    assert list(model.feature_names_in_) == ["x1", "x2", "colour"]
    assert context["metrics"]["accuracy"] > 0.8
    raw = pd.DataFrame({"x1": [0.5, np.nan], "x2": [np.nan, 1.0], "colour": [None, "purple"]})
    assert model.predict(raw).tolist() in ([0, 0], [0, 1], [1, 0], [1, 1])
    encoded = model.named_steps["prepare"].get_feature_names_out().tolist()
    assert {"categorical__colour_red", "categorical__colour_blue"} <= set(encoded)


@pytest.mark.parametrize("dtype", ["str", "category", "object"])
def test_categorical_feature_with_missing_values_trains_whatever_its_dtype(
    classification_frame, dtype
):
    data = classification_frame.astype({"colour": dtype})
    data.loc[:9, "colour"] = None

    context, _ = train(data, task="classification", estimator="random_forest", target="label")

    assert context["metrics"]["accuracy"] > 0.7
    predictions = context["model"].predict(data.drop(columns="label").head(12))
    assert len(predictions) == 12


@pytest.mark.parametrize("colour_type", ["str", "category"])
def test_columns_cast_by_cast_types_with_missing_values_train(classification_frame, colour_type):
    data = classification_frame.assign(flag=(classification_frame["x1"] > 0).astype(object))
    data.loc[:9, ["colour", "flag"]] = None
    cast = get_step_type("cast_types")
    params = cast.Params(types={"colour": colour_type, "flag": "bool"})
    cast_data = cast.run({"data": data}, params, [].append)["data"]

    context, _ = train(
        cast_data, task="classification", estimator="logistic_regression", target="label"
    )

    assert context["metrics"]["accuracy"] > 0.8
    assert len(context["model"].predict(cast_data.head(12))) == 12


def test_rows_with_missing_target_are_left_out(classification_frame):
    data = classification_frame.astype({"label": "float"})
    data.loc[:49, "label"] = np.nan

    context, _ = train(data, task="classification", estimator="logistic_regression", target="label")

    summary = context["_summary"]
    assert summary["train_rows"] + summary["test_rows"] == 150


def test_features_limit_the_columns_the_model_uses(classification_frame):
    context, _ = train(
        classification_frame,
        task="classification",
        estimator="logistic_regression",
        target="label",
        features=["x1", "colour"],
    )

    assert list(context["model"].feature_names_in_) == ["x1", "colour"]
    assert context["_summary"]["features"] == ["x1", "colour"]


def test_training_keeps_metrics_of_earlier_steps(classification_frame):
    step = get_step_type("train_sklearn")
    params = step.Params(task="classification", estimator="logistic_regression", target="label")

    context = step.run({"data": classification_frame, "metrics": {"rows": 200}}, params, [].append)

    assert context["metrics"]["rows"] == 200
    assert "accuracy" in context["metrics"]


def test_unknown_hyperparameter_is_rejected_by_name():
    errors = rejected(
        task="classification",
        estimator="random_forest",
        target="label",
        hyperparams={"n_trees": 10},
    )

    assert errors[0]["loc"] == ("hyperparams",)
    assert "'n_trees' is not a hyperparameter of RandomForestClassifier" in errors[0]["msg"]


@pytest.mark.parametrize("value", [0, "many", 2.5])
def test_bad_hyperparameter_value_is_rejected_by_name(value):
    errors = rejected(
        task="regression",
        estimator="gradient_boosting",
        target="y",
        hyperparams={"n_estimators": value},
    )

    assert errors[0]["loc"] == ("hyperparams",)
    assert "The 'n_estimators' parameter of GradientBoostingRegressor must be" in errors[0]["msg"]
    assert f"Got {value!r} instead" in errors[0]["msg"]


@pytest.mark.parametrize(
    "task, estimator, known",
    [
        ("classification", "linear_regression", "logistic_regression, random_forest"),
        ("regression", "logistic_regression", "linear_regression, random_forest"),
        ("regression", "svm", "gradient_boosting"),
    ],
)
def test_unknown_estimator_for_task_is_rejected(task, estimator, known):
    errors = rejected(task=task, estimator=estimator, target="y")

    assert errors[0]["loc"] == ("estimator",)
    assert f"unknown estimator {estimator!r} for {task}" in errors[0]["msg"]
    assert known in errors[0]["msg"]


@pytest.mark.parametrize("test_size", [0, 1, 1.5])
def test_test_size_must_be_between_zero_and_one(test_size):
    errors = rejected(task="regression", estimator="random_forest", target="y", test_size=test_size)

    assert [error["loc"] for error in errors] == [("test_size",)]


def test_missing_target_column_is_named(classification_frame):
    with pytest.raises(ValueError, match=r"^target: column\(s\) \['price'\] not found"):
        train(
            classification_frame,
            task="regression",
            estimator="linear_regression",
            target="price",
            features=["x1"],
        )


def test_missing_feature_columns_are_named(classification_frame):
    with pytest.raises(ValueError, match=r"^features: column\(s\) \['size', 'weight'\] not found"):
        train(
            classification_frame,
            task="classification",
            estimator="logistic_regression",
            target="label",
            features=["x1", "size", "weight"],
        )


def test_too_few_labelled_rows_is_an_error_about_the_target():
    data = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.0, None, None]})

    with pytest.raises(ValueError, match=r"^target: only 1 labelled row\(s\)"):
        train(data, task="regression", estimator="linear_regression", target="y")


def test_datetime_features_must_be_converted_first():
    data = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=10), "y": np.arange(10.0)})

    with pytest.raises(ValueError, match=r"^features: datetime column\(s\) \['when'\]"):
        train(data, task="regression", estimator="linear_regression", target="y")


@pytest.mark.django_db
def test_training_in_a_pipeline_run_records_metrics(make_pipeline):
    pipeline = make_pipeline(
        [
            {"type": "sklearn_dataset", "params": {"name": "wine"}},
            {
                "type": "train_sklearn",
                "params": {
                    "task": "classification",
                    "estimator": "random_forest",
                    "target": "target",
                    "hyperparams": {"n_estimators": 20},
                },
            },
        ]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert set(run.metrics) == CLASSIFICATION_KEYS
    assert run.metrics["accuracy"] > 0.85
    assert run.step_runs.get(order=2).summary["estimator"] == "RandomForestClassifier"
