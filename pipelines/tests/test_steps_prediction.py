import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from experiments import tracking
from pipelines import runs
from pipelines.choices import RunStatus, StepRunStatus
from pipelines.engine.registry import get_step_type
from pipelines.steps.estimators import ESTIMATORS
from pipelines.steps.prediction import PredictParams, model_outputs
from pipelines.tests.helpers import bundled, rejected, run_step, step_errors


def trained(data, **params):
    context, _ = run_step("train_sklearn", {"data": data}, **params)
    return context


@pytest.fixture
def classifier(classification_frame):
    return trained(
        classification_frame, task="classification", estimator="logistic_regression", target="label"
    )


@pytest.fixture
def regressor():
    rng = np.random.default_rng(1)
    x = rng.normal(size=60)
    data = pd.DataFrame({"x": x, "kind": rng.choice(["a", "b"], 60), "y": 3 * x + 1})
    return trained(data, task="regression", estimator="linear_regression", target="y")


def test_predict_adds_prediction_and_one_probability_column_per_class(classifier):
    context, log = run_step("predict", classifier)

    predictions = context["predictions"]
    assert list(predictions.columns) == [
        "x1",
        "x2",
        "colour",
        "label",
        "prediction",
        "probability_0",
        "probability_1",
    ]
    assert len(predictions) == 200
    assert set(predictions["prediction"]) == {0, 1}
    total = predictions["probability_0"] + predictions["probability_1"]
    assert np.allclose(total, 1)
    assert (predictions["prediction"] == (predictions["probability_1"] > 0.5)).all()
    assert log == ["predicted 200 rows: prediction, probability_0, probability_1"]


def test_predict_leaves_the_data_unchanged(classifier):
    context, _ = run_step("predict", classifier)

    assert list(context["data"].columns) == ["x1", "x2", "colour", "label"]


def test_predict_names_probability_columns_after_text_classes(classification_frame):
    data = classification_frame.assign(label=classification_frame["label"].map({0: "no", 1: "yes"}))
    context = trained(data, task="classification", estimator="random_forest", target="label")

    predictions, _ = run_step("predict", context)

    columns = predictions["predictions"].columns
    assert list(columns[-3:]) == ["prediction", "probability_no", "probability_yes"]
    assert set(predictions["predictions"]["prediction"]) <= {"no", "yes"}


def test_predict_multiclass_has_a_probability_per_class():
    iris = get_step_type("sklearn_dataset")
    context = iris.run({}, iris.Params(name="iris"), [].append)
    context = trained(
        context["data"], task="classification", estimator="logistic_regression", target="target"
    )

    context, _ = run_step("predict", context)

    probabilities = context["predictions"].filter(like="probability_")
    assert list(probabilities.columns) == ["probability_0", "probability_1", "probability_2"]
    assert np.allclose(probabilities.sum(axis=1), 1)


def test_regression_prediction_has_no_probabilities(regressor):
    context, _ = run_step("predict", regressor)

    predictions = context["predictions"]
    assert list(predictions.columns) == ["x", "kind", "y", "prediction"]
    assert np.allclose(predictions["prediction"], predictions["y"], atol=1e-6)


def test_predict_without_probabilities_adds_only_the_prediction(classifier):
    context, _ = run_step("predict", classifier, probabilities=False)

    assert list(context["predictions"].columns)[-2:] == ["label", "prediction"]


def test_predict_writes_to_the_named_column(classifier):
    context, _ = run_step("predict", classifier, prediction_column="predicted_label")

    assert "predicted_label" in context["predictions"]
    assert "prediction" not in context["predictions"]


def test_predict_ignores_extra_columns_and_their_order(classifier, classification_frame):
    new_rows = classification_frame[["colour", "x2", "x1"]].head(5).assign(note="new")

    context, _ = run_step("predict", {**classifier, "data": new_rows}, probabilities=False)

    assert list(context["predictions"].columns) == ["colour", "x2", "x1", "note", "prediction"]
    assert len(context["predictions"]) == 5


def test_predict_names_missing_feature_columns(classifier, classification_frame):
    data = classification_frame.drop(columns=["x2", "colour"])

    with pytest.raises(ValueError, match=r"^data: column\(s\) \['x2', 'colour'\] not found"):
        run_step("predict", {**classifier, "data": data})


def test_prediction_column_must_not_be_blank():
    errors = rejected("predict", prediction_column="")

    assert errors[0]["loc"] == ("prediction_column",)


@pytest.mark.django_db
def test_predict_in_a_pipeline_run_outputs_predictions(make_pipeline):
    pipeline = make_pipeline(
        [
            {"type": "sklearn_dataset", "params": {"name": "diabetes"}},
            {
                "type": "train_sklearn",
                "params": {
                    "task": "regression",
                    "estimator": "linear_regression",
                    "target": "target",
                },
            },
            {"type": "predict", "params": {"prediction_column": "predicted"}},
        ]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    step = run.step_runs.get(order=3)
    assert (step.rows_out, step.columns_out) == (442, 12)  # 11 columns + predicted
    assert run.metrics["r2"] > 0.3


@pytest.mark.parametrize(
    "uri",
    [
        "models:/bc",
        "models:/bc@",
        "models:/m-123",
        "runs:/not-a-run-id/model",
        "runs:/" + "a" * 32,
        "s3://bucket/model.pkl",
        "",
    ],
)
def test_model_uri_must_be_a_run_logged_or_registered_model_uri(uri):
    errors = step_errors(
        [
            {"type": "sklearn_dataset", "params": {"name": "iris"}},
            {"type": "predict", "params": {"model_uri": uri}},
        ]
    )

    assert errors[0] == (
        f"step 2, params.model_uri: {uri!r} is not a model URI; expected runs:/<run id>/model, "
        "models:/<model id>, models:/<name>@<alias> or models:/<name>/<version>"
    )


def test_predict_needs_a_training_step_only_without_model_uri():
    data = {"type": "sklearn_dataset", "params": {"name": "iris"}}

    assert step_errors([data, {"type": "predict"}]) == [
        "step 2, type: predict needs 'model', which no earlier step produces"
    ]
    assert (
        step_errors([data, {"type": "predict", "params": {"model_uri": "models:/iris@best"}}]) == []
    )


@pytest.mark.django_db
def test_predict_loads_run_logged_and_registered_models_and_names_missing_ones(make_pipeline):
    iris = bundled("iris")
    pipeline = make_pipeline(
        [
            {"type": "sklearn_dataset", "params": {"name": "iris"}},
            {
                "type": "train_sklearn",
                "params": {
                    "task": "classification",
                    "estimator": "random_forest",
                    "target": "target",
                    "hyperparams": {"n_estimators": 5},
                },
            },
        ]
    )
    run = runs.start_run(pipeline, wait=True)
    logged_uri = tracking.get_run(run.mlflow_run_id)["tags"]["mlops.model_uri"]
    run_uri = f"runs:/{run.mlflow_run_id}/model"
    tracking.register_model(logged_uri, "iris")
    expected = tracking.load_model(logged_uri).predict(iris.drop(columns="target"))

    for uri, resolved in [
        (run_uri, logged_uri),
        (logged_uri, logged_uri),
        ("models:/iris/1", "models:/iris/1"),
    ]:
        context, log = run_step("predict", {"data": iris}, model_uri=uri)

        assert (context["predictions"]["prediction"] == expected).all()
        assert context["_summary"] == {"model_uri": uri, "resolved_uri": resolved}
        assert log[0] == f"predicting with {uri} ({resolved})"
        assert get_step_type("predict").source_version(PredictParams(model_uri=uri)) == resolved

    with pytest.raises(
        ValueError,
        match=r"^model_uri: no model at 'models:/iris@champion': .*alias champion not found",
    ):
        run_step("predict", {"data": iris}, model_uri="models:/iris@champion")
    missing_run = run_uri.replace(run.mlflow_run_id, "0" * 32)
    with pytest.raises(
        ValueError, match=rf"^model_uri: no model at '{missing_run}': Run .* not found"
    ):
        run_step("predict", {"data": iris}, model_uri=missing_run)
    with pytest.raises(ValueError, match=r"logged no model named 'forest'"):
        run_step("predict", {"data": iris}, model_uri=f"runs:/{run.mlflow_run_id}/forest")
    with pytest.raises(
        ValueError, match=r"^model_uri: no model at 'models:/m-0+': Logged model .* not found"
    ):
        run_step("predict", {"data": iris}, model_uri="models:/m-" + "0" * 32)


@pytest.mark.django_db
def test_predict_with_an_unknown_registered_model_fails_the_step(make_pipeline):
    pipeline = make_pipeline(
        [
            {"type": "sklearn_dataset", "params": {"name": "iris"}},
            {"type": "predict", "params": {"model_uri": "models:/churn@champion"}},
        ]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.FAILED
    assert [s.status for s in run.step_runs.order_by("order")] == [
        StepRunStatus.SUCCEEDED,
        StepRunStatus.FAILED,
    ]
    assert run.error_message.startswith(
        "step 2 (predict) failed: model_uri: no model at 'models:/churn@champion': "
        "Registered Model with name=churn not found"
    )


def _reference_outputs(model, X: pd.DataFrame) -> pd.DataFrame:
    """What the predict step answered before it shared one walk: predict, then
    predict_proba, each through the whole Pipeline."""
    outputs = pd.DataFrame({"prediction": model.predict(X)}, index=X.index)
    columns = [f"probability_{label}" for label in model.classes_]
    return outputs.join(pd.DataFrame(model.predict_proba(X), index=X.index, columns=columns))


@pytest.mark.parametrize("labels", [None, {0: "no", 1: "yes"}], ids=["int", "text"])
@pytest.mark.parametrize("estimator", sorted(ESTIMATORS["classification"]))
def test_outputs_equal_predict_and_predict_proba_for_every_classifier(
    classification_frame, estimator, labels
):
    data = classification_frame
    if labels:
        data = data.assign(label=data["label"].map(labels))
    hyperparams = {}
    if estimator == "threshold_rules":
        positive, negative = (labels or {0: 0, 1: 1})[1], (labels or {0: 0, 1: 1})[0]
        hyperparams = {"rules": {"x1": {">": 0.3, "label": positive}}, "default": negative}
    context = trained(
        data, task="classification", estimator=estimator, target="label", hyperparams=hyperparams
    )
    model, X = context["model"], data[["x1", "x2", "colour"]]

    outputs = model_outputs(model, X, PredictParams())

    pd.testing.assert_frame_equal(outputs, _reference_outputs(model, X))


def test_a_forest_predicts_with_one_walk_and_one_preparation(classification_frame, monkeypatch):
    context = trained(
        classification_frame, task="classification", estimator="random_forest", target="label"
    )
    model, X = context["model"], classification_frame[["x1", "x2", "colour"]]
    preparation, forest = model.steps[0][1], model.steps[-1][1]
    prepared = []
    real_transform = preparation.transform
    monkeypatch.setattr(preparation, "transform", lambda X: prepared.append(1) or real_transform(X))
    monkeypatch.setattr(forest, "predict", lambda X: pytest.fail("the trees were walked twice"))

    outputs = model_outputs(model, X, PredictParams())

    assert prepared == [1]
    assert (outputs["prediction"] == (outputs["probability_1"] > 0.5)).all()


def test_a_subclass_with_its_own_predict_is_asked_for_its_predictions(classification_frame):
    class Contrarian(RandomForestClassifier):
        def predict(self, X):
            return 1 - super().predict(X)

    X, y = classification_frame[["x1"]], classification_frame["label"]
    model = Contrarian(n_estimators=5, random_state=0).fit(X, y)

    outputs = model_outputs(model, X, PredictParams())

    assert (outputs["prediction"] == model.predict(X)).all()
    assert (outputs["prediction"] != model.predict_proba(X).argmax(axis=1)).all()
