import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from experiments import tracking
from pipelines import runs
from pipelines.choices import RunStatus
from pipelines.engine.registry import get_step_type
from pipelines.steps.estimators import ESTIMATORS
from pipelines.tests.helpers import bundled, rejected, run_step
from pipelines.validation import validate_steps

CLASSIFICATION_KEYS = {"accuracy", "precision", "recall", "f1", "roc_auc"}
REGRESSION_KEYS = {"rmse", "mae", "r2"}
IRIS_RULES = {
    "rules": {
        "petal length (cm)": {"<": 2.5, "label": 0},
        "petal width (cm)": {">=": 1.75, "label": 2},
    },
    "default": 1,
}
# Quick settings per family that suit the small bundled datasets.
CLASSIFIERS = {
    "logistic_regression": {},
    "k_nearest_neighbors": {},
    "decision_tree": {"max_depth": 4},
    "random_forest": {"n_estimators": 20},
    "extra_trees": {"n_estimators": 20},
    "gradient_boosting": {"n_estimators": 20},
    "hist_gradient_boosting": {"max_iter": 20},
    "naive_bayes": {},
    "svc": {},
    "mlp": {"max_iter": 1000},
    "threshold_rules": IRIS_RULES,
}
REGRESSORS = {
    "linear_regression": {},
    "ridge": {},
    "lasso": {},
    "elastic_net": {},
    "decision_tree": {"max_depth": 3, "min_samples_leaf": 10},
    "random_forest": {"n_estimators": 20, "min_samples_leaf": 5},
    "gradient_boosting": {"n_estimators": 50, "learning_rate": 0.05},
    "hist_gradient_boosting": {"max_iter": 30},
    "k_nearest_neighbors": {"n_neighbors": 15},
    "svr": {"C": 100},
    "mlp": {"hidden_layer_sizes": [16], "learning_rate_init": 0.05, "early_stopping": True},
}


def train(data, **params):
    return run_step("train_sklearn", {"data": data}, **params)


def run_training(make_pipeline, dataset, params, predict=True):
    steps = [
        {"type": "sklearn_dataset", "params": {"name": dataset}},
        {"type": "train_sklearn", "params": {"target": "target", **params}},
    ]
    if predict:
        steps.append({"type": "predict"})
    run = runs.start_run(make_pipeline(steps), wait=True)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    return run


def test_every_registered_family_has_test_settings():
    assert list(CLASSIFIERS) == list(ESTIMATORS["classification"])
    assert list(REGRESSORS) == list(ESTIMATORS["regression"])


@pytest.mark.django_db
@pytest.mark.parametrize("estimator", CLASSIFIERS)
def test_every_classifier_trains_predicts_and_logs_on_iris(make_pipeline, estimator):
    params = {"task": "classification", "estimator": estimator}
    run = run_training(make_pipeline, "iris", {**params, "hyperparams": CLASSIFIERS[estimator]})

    assert set(run.metrics) == CLASSIFICATION_KEYS
    assert run.metrics["accuracy"] > 0.9
    assert run.metrics["roc_auc"] > 0.95
    predicted = run.step_runs.get(order=3)
    assert (predicted.rows_out, predicted.columns_out) == (150, 5 + 1 + 3)  # + 3 probabilities
    tracked = tracking.get_run(run.mlflow_run_id)
    assert tracked["metrics"]["accuracy"] == pytest.approx(run.metrics["accuracy"])
    assert "step_2/confusion_matrix.csv" in tracking.artifact_paths(run.mlflow_run_id, "step_2")
    iris = bundled("iris")
    model = tracking.load_model(tracked["tags"]["mlops.model_uri"])
    assert (model.predict(iris.drop(columns="target")) == iris["target"]).mean() > 0.9


@pytest.mark.django_db
@pytest.mark.parametrize("estimator", REGRESSORS)
def test_every_regressor_trains_predicts_and_logs_on_diabetes(make_pipeline, estimator):
    params = {"task": "regression", "estimator": estimator}
    run = run_training(make_pipeline, "diabetes", {**params, "hyperparams": REGRESSORS[estimator]})

    assert set(run.metrics) == REGRESSION_KEYS
    assert run.metrics["r2"] > 0.3
    assert 0 < run.metrics["mae"] <= run.metrics["rmse"] < 80  # target spans 25..346
    predicted = run.step_runs.get(order=3)
    assert (predicted.rows_out, predicted.columns_out) == (442, 11 + 1)
    tracked = tracking.get_run(run.mlflow_run_id)
    assert tracked["metrics"]["r2"] == pytest.approx(run.metrics["r2"])
    assert "step_2/residuals.json" in tracking.artifact_paths(run.mlflow_run_id, "step_2")
    diabetes = bundled("diabetes")
    model = tracking.load_model(tracked["tags"]["mlops.model_uri"])
    assert r2_score(diabetes["target"], model.predict(diabetes.drop(columns="target"))) > 0.3


@pytest.mark.parametrize("estimator", [e for e in CLASSIFIERS if e != "threshold_rules"])
def test_classifier_scores_well_on_breast_cancer(estimator):
    context, log = train(
        bundled("breast_cancer"),
        task="classification",
        estimator=estimator,
        target="target",
        hyperparams=CLASSIFIERS[estimator],
    )

    metrics = context["metrics"]
    assert set(metrics) == CLASSIFICATION_KEYS
    assert all(0 <= value <= 1 for value in metrics.values())
    assert metrics["accuracy"] > 0.9
    assert metrics["roc_auc"] > 0.9
    assert isinstance(context["model"], Pipeline)
    assert context["_summary"]["train_rows"] + context["_summary"]["test_rows"] == 569
    assert "accuracy=" in log[0]


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
    assert context["_summary"]["hyperparams"] == {"n_estimators": 7, "max_depth": 2}


def test_svc_gives_probabilities_that_sum_to_one():
    context, _ = train(bundled("iris"), task="classification", estimator="svc", target="target")

    probabilities = context["model"].predict_proba(bundled("iris").drop(columns="target"))
    assert probabilities.shape == (150, 3)
    assert np.allclose(probabilities.sum(axis=1), 1)


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


# Artifacts


def test_tree_importances_name_the_prepared_features_largest_first(classification_frame):
    context, _ = train(
        classification_frame,
        task="classification",
        estimator="random_forest",
        target="label",
        hyperparams={"n_estimators": 20},
    )

    table = context["_artifacts"]["feature_importance.csv"]
    assert list(table.columns) == ["feature", "importance"]
    assert table["feature"].iloc[0] == "numeric__x1"  # the label is mostly x1
    assert set(table["feature"]) >= {"numeric__x2", "categorical__colour_red"}
    assert table["importance"].is_monotonic_decreasing
    assert table["importance"].sum() == pytest.approx(1)
    summary = context["_summary"]["feature_importance"]
    assert summary[0] == {"feature": "numeric__x1", "importance": table["importance"].iloc[0]}


def test_linear_models_report_absolute_coefficients_as_importance():
    context, _ = train(
        bundled("diabetes"), task="regression", estimator="linear_regression", target="target"
    )

    table = context["_artifacts"]["feature_importance.csv"]
    coefficients = context["model"].named_steps["estimator"].coef_
    assert table["importance"].max() == pytest.approx(np.abs(coefficients).max())
    assert (table["importance"] >= 0).all()
    assert len(context["_summary"]["feature_importance"]) == 10


def test_estimator_without_importances_logs_no_importance_file():
    context, _ = train(
        bundled("iris"), task="classification", estimator="k_nearest_neighbors", target="target"
    )

    assert list(context["_artifacts"]) == ["confusion_matrix.csv"]
    assert "feature_importance" not in context["_summary"]


def test_confusion_matrix_has_a_row_per_actual_and_a_column_per_predicted_class():
    context, _ = train(
        bundled("iris"), task="classification", estimator="logistic_regression", target="target"
    )

    table = context["_artifacts"]["confusion_matrix.csv"]
    assert list(table.columns) == ["actual", "0", "1", "2"]
    assert table["actual"].tolist() == [0, 1, 2]
    assert table[["0", "1", "2"]].to_numpy().sum(axis=1).tolist() == [10, 10, 10]
    correct = np.trace(table[["0", "1", "2"]].to_numpy())
    assert correct / 30 == pytest.approx(context["metrics"]["accuracy"])
    summary = context["_summary"]["confusion_matrix"]
    assert summary == {"labels": [0, 1, 2], "matrix": table[["0", "1", "2"]].values.tolist()}


def test_residuals_summarise_actual_minus_predicted():
    data = bundled("diabetes")
    context, _ = train(data, task="regression", estimator="ridge", target="target")

    residuals = context["_artifacts"]["residuals.json"]
    assert set(residuals) == {"mean", "std", "max_abs", "quantiles"}
    assert list(residuals["quantiles"]) == ["0.05", "0.25", "0.5", "0.75", "0.95"]
    assert residuals["std"] == pytest.approx(context["metrics"]["rmse"], rel=0.05)
    assert residuals["quantiles"]["0.05"] < 0 < residuals["quantiles"]["0.95"]
    assert residuals["max_abs"] >= max(-residuals["quantiles"]["0.05"], residuals["mean"])
    assert context["_summary"]["residuals"] == residuals


# Cross-validation and search


def test_cross_validation_reports_mean_and_std_of_each_metric():
    context, _ = train(
        bundled("iris"),
        task="classification",
        estimator="logistic_regression",
        target="target",
        cv_folds=5,
    )

    metrics = context["metrics"]
    for metric in CLASSIFICATION_KEYS:
        assert 0.85 < metrics[f"cv_{metric}_mean"] <= 1
        assert 0 <= metrics[f"cv_{metric}_std"] < 0.1
    assert metrics["accuracy"] == context["_summary"]["metrics"]["accuracy"]


def test_cross_validation_of_a_regressor():
    context, _ = train(
        bundled("diabetes"), task="regression", estimator="ridge", target="target", cv_folds=3
    )

    metrics = context["metrics"]
    assert set(metrics) == REGRESSION_KEYS | {
        f"cv_{metric}_{stat}" for metric in REGRESSION_KEYS for stat in ("mean", "std")
    }
    assert 0.3 < metrics["cv_r2_mean"] < 0.7
    assert 40 < metrics["cv_rmse_mean"] < 70


def test_more_folds_than_rows_is_an_error_about_cv_folds():
    data = pd.DataFrame({"x": np.arange(6.0), "y": np.arange(6.0)})

    with pytest.raises(ValueError, match=r"^cv_folds: 10 folds need at least 10 rows"):
        train(data, task="regression", estimator="ridge", target="y", cv_folds=10)


def test_grid_search_trains_the_best_candidate_and_reports_every_trial():
    context, log = train(
        bundled("wine"),
        task="classification",
        estimator="k_nearest_neighbors",
        target="target",
        hyperparams={"weights": "distance"},
        search={"grid": {"n_neighbors": [1, 5, 15], "p": [1, 2]}, "metric": "f1"},
    )

    trials = context["_trials"]
    assert len(trials) == 6
    assert [trial["best"] for trial in trials].count(True) == 1
    best = next(trial for trial in trials if trial["best"])
    assert best["metrics"]["cv_f1_mean"] == max(t["metrics"]["cv_f1_mean"] for t in trials)
    assert set(best["metrics"]) >= {"cv_accuracy_mean", "cv_f1_std"}
    assert context["metrics"]["search_best_f1"] == best["metrics"]["cv_f1_mean"]
    estimator = context["model"].named_steps["estimator"]
    assert (estimator.n_neighbors, estimator.p) == (
        best["params"]["n_neighbors"],
        best["params"]["p"],
    )
    assert estimator.weights == "distance"
    assert context["_summary"]["search"] == {
        "kind": "grid",
        "metric": "f1",
        "candidates": 6,
        "best_params": best["params"],
        "best_score": best["metrics"]["cv_f1_mean"],
    }
    assert context["_summary"]["hyperparams"] == {"weights": "distance", **best["params"]}
    assert log[0].startswith("search: best of 6 candidates by f1")


def test_search_minimises_errors_and_maximises_scores():
    params = {"task": "regression", "estimator": "ridge", "target": "target"}
    grid = {"grid": {"alpha": [0.01, 1000.0]}}

    by_rmse, _ = train(bundled("diabetes"), **params, search={**grid, "metric": "rmse"})
    by_r2, _ = train(bundled("diabetes"), **params, search=grid)

    assert by_rmse["_summary"]["search"]["best_params"] == {"alpha": 0.01}
    assert by_r2["_summary"]["search"] == {
        "kind": "grid",
        "metric": "r2",
        "candidates": 2,
        "best_params": {"alpha": 0.01},
        "best_score": by_r2["metrics"]["search_best_r2"],
    }


def test_random_search_tries_the_requested_number_of_candidates():
    context, _ = train(
        bundled("iris"),
        task="classification",
        estimator="decision_tree",
        target="target",
        search={
            "kind": "random",
            "grid": {"max_depth": [1, 2, 3, 4, 5], "criterion": ["gini", "entropy"]},
            "trials": 4,
            "folds": 2,
        },
    )

    candidates = [trial["params"] for trial in context["_trials"]]
    assert len(candidates) == 4
    assert len({json.dumps(c, sort_keys=True) for c in candidates}) == 4
    assert all(c["max_depth"] in range(1, 6) for c in candidates)


@pytest.mark.django_db
def test_search_trials_are_logged_as_nested_runs_with_the_best_flagged(make_pipeline):
    run = run_training(
        make_pipeline,
        "iris",
        {
            "task": "classification",
            "estimator": "logistic_regression",
            "search": {"grid": {"C": [0.001, 1.0]}},
            "cv_folds": 3,
        },
        predict=False,
    )

    assert run.metrics["search_best_accuracy"] > 0.9
    assert run.metrics["cv_accuracy_mean"] > 0.9
    trials = tracking.child_runs(run.mlflow_run_id)
    assert [trial["params"]["C"] for trial in trials] == ["0.001", "1.0"]
    assert [trial["tags"]["mlops.best"] for trial in trials] == ["False", "True"]
    assert trials[1]["metrics"]["cv_accuracy_mean"] == run.metrics["search_best_accuracy"]
    summary = run.step_runs.get(order=2).summary
    assert summary["search"]["best_params"] == {"C": 1.0}
    assert summary["artifacts"] == [
        "step_2/feature_importance.csv",
        "step_2/confusion_matrix.csv",
    ]
    logged = tracking.download_artifact(run.mlflow_run_id, "step_2/feature_importance.csv")
    assert pd.read_csv(logged).columns.tolist() == ["feature", "importance"]


# Threshold rules inside the train step


def test_threshold_rules_see_raw_columns_in_their_own_units():
    context, _ = train(
        bundled("iris"),
        task="classification",
        estimator="threshold_rules",
        target="target",
        hyperparams=IRIS_RULES,
    )

    model = context["model"]
    assert isinstance(model.named_steps["prepare"], FunctionTransformer)
    assert list(model.feature_names_in_) == [c for c in bundled("iris") if c != "target"]
    assert context["metrics"]["accuracy"] > 0.9
    assert "roc_auc" in context["metrics"]
    assert list(context["_artifacts"]) == ["confusion_matrix.csv"]


def test_threshold_rules_on_a_column_that_is_not_a_feature_names_the_rule():
    with pytest.raises(ValueError, match=r"^rules: feature\(s\) \['petal length \(cm\)'\] are not"):
        train(
            bundled("iris"),
            task="classification",
            estimator="threshold_rules",
            target="target",
            features=["sepal length (cm)", "petal width (cm)"],
            hyperparams=IRIS_RULES,
        )


# Parameter errors


def test_unknown_hyperparameter_is_rejected_by_name():
    errors = rejected(
        "train_sklearn",
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
        "train_sklearn",
        task="regression",
        estimator="gradient_boosting",
        target="y",
        hyperparams={"n_estimators": value},
    )

    assert errors[0]["loc"] == ("hyperparams",)
    assert "The 'n_estimators' parameter of GradientBoostingRegressor must be" in errors[0]["msg"]
    assert f"Got {value!r} instead" in errors[0]["msg"]


@pytest.mark.parametrize(
    "task, estimator, hyperparams, message",
    [
        ("classification", "logistic_regression", {"C": -1}, "'C' parameter of LogisticRegression"),
        ("classification", "k_nearest_neighbors", {"n_neighbors": 0}, "'n_neighbors' parameter"),
        ("classification", "decision_tree", {"max_depth": 0}, "'max_depth' parameter"),
        ("classification", "random_forest", {"n_estimators": 0}, "'n_estimators' parameter"),
        ("classification", "extra_trees", {"criterion": "best"}, "'criterion' parameter"),
        ("classification", "gradient_boosting", {"learning_rate": -1}, "'learning_rate'"),
        ("classification", "hist_gradient_boosting", {"max_iter": 0}, "'max_iter' parameter"),
        ("classification", "naive_bayes", {"var_smoothing": -1}, "'var_smoothing' parameter"),
        ("classification", "svc", {"kernel": "cubic"}, "'kernel' parameter of CalibratedSVC"),
        ("classification", "mlp", {"alpha": -1}, "'alpha' parameter of MLPClassifier"),
        ("classification", "threshold_rules", {"rules": {"x": {"=>": 1, "label": 0}}}, "rules:"),
        ("regression", "linear_regression", {"fit_intercept": "yes"}, "'fit_intercept'"),
        ("regression", "ridge", {"alpha": -1}, "'alpha' parameter of Ridge"),
        ("regression", "lasso", {"alpha": -1}, "'alpha' parameter of Lasso"),
        ("regression", "elastic_net", {"l1_ratio": 2}, "'l1_ratio' parameter of ElasticNet"),
        ("regression", "decision_tree", {"min_samples_leaf": 0}, "'min_samples_leaf'"),
        ("regression", "random_forest", {"max_features": "most"}, "'max_features'"),
        ("regression", "gradient_boosting", {"loss": "cubic"}, "'loss' parameter"),
        ("regression", "hist_gradient_boosting", {"learning_rate": 0}, "'learning_rate'"),
        ("regression", "k_nearest_neighbors", {"weights": "heavy"}, "'weights' parameter"),
        ("regression", "svr", {"C": 0}, "'C' parameter of SVR"),
        ("regression", "mlp", {"activation": "sigmoid"}, "'activation' parameter"),
    ],
)
def test_bad_hyperparameter_of_each_family_names_the_step_and_field(
    task, estimator, hyperparams, message
):
    steps = [
        {"order": 1, "type": "sklearn_dataset", "params": {"name": "iris"}},
        {
            "order": 2,
            "type": "train_sklearn",
            "params": {
                "task": task,
                "estimator": estimator,
                "target": "target",
                "hyperparams": hyperparams,
            },
        },
    ]

    errors = validate_steps(steps)

    assert [(error.order, error.field) for error in errors] == [(2, "params.hyperparams")]
    assert message in errors[0].message
    assert str(errors[0]).startswith("step 2, params.hyperparams: ")


def test_unknown_hyperparameter_of_each_family_is_named():
    for task in ("classification", "regression"):
        for estimator in ESTIMATORS[task]:
            errors = rejected(
                "train_sklearn",
                task=task,
                estimator=estimator,
                target="y",
                hyperparams={"speed": 1},
            )
            assert errors[0]["loc"] == ("hyperparams",)
            assert "'speed' is not a hyperparameter of" in errors[0]["msg"]


@pytest.mark.parametrize(
    "task, estimator, known",
    [
        ("classification", "linear_regression", "logistic_regression, k_nearest_neighbors"),
        ("regression", "logistic_regression", "linear_regression, ridge, lasso"),
        ("regression", "svm", "svr, mlp"),
    ],
)
def test_unknown_estimator_for_task_is_rejected(task, estimator, known):
    errors = rejected("train_sklearn", task=task, estimator=estimator, target="y")

    assert errors[0]["loc"] == ("estimator",)
    assert f"unknown estimator {estimator!r} for {task}" in errors[0]["msg"]
    assert known in errors[0]["msg"]


@pytest.mark.parametrize("test_size", [0, 1, 1.5])
def test_test_size_must_be_between_zero_and_one(test_size):
    errors = rejected(
        "train_sklearn",
        task="regression",
        estimator="random_forest",
        target="y",
        test_size=test_size,
    )

    assert [error["loc"] for error in errors] == [("test_size",)]


@pytest.mark.parametrize(
    "cv_folds, message",
    [(1, "use 0 for no cross-validation, or at least 2 folds"), (-2, "greater than or equal to 0")],
)
def test_cv_folds_must_be_zero_or_at_least_two(cv_folds, message):
    errors = rejected(
        "train_sklearn", task="regression", estimator="ridge", target="y", cv_folds=cv_folds
    )

    assert [error["loc"] for error in errors] == [("cv_folds",)]
    assert message in errors[0]["msg"]


@pytest.mark.parametrize(
    "search, field, message",
    [
        ({"grid": {"n_trees": [10]}}, "params.search.grid", "'n_trees' is not a hyperparameter"),
        (
            {"grid": {"n_estimators": [10, 0]}},
            "params.search.grid",
            "The 'n_estimators' parameter of RandomForestClassifier must be",
        ),
        (
            {"grid": {"max_depth": [3]}, "metric": "rmse"},
            "params.search.metric",
            "'rmse' is not a classification metric (known: accuracy, precision,",
        ),
        ({"grid": {}}, "params.search.grid", "at least 1 item"),
        ({"grid": {"max_depth": []}}, "params.search.grid", "at least one value to try for"),
        ({"grid": {"max_depth": [3]}, "kind": "exhaustive"}, "params.search.kind", "'grid' or"),
        ({"grid": {"max_depth": [3]}, "folds": 1}, "params.search.folds", "greater than or"),
        ({"grid": {"max_depth": [3]}, "size": 2}, "params.search.size", "is not a parameter"),
        (
            {"grid": {"max_depth": list(range(1, 16)), "min_samples_leaf": list(range(1, 16))}},
            "params.search",
            "grid: 225 combinations; a grid search tries at most 200",
        ),
        (
            {"grid": {"max_depth": [3]}, "kind": "random", "trials": 500},
            "params.search.trials",
            "less than or equal to 200",
        ),
    ],
)
def test_bad_search_is_an_error_naming_its_field(search, field, message):
    params = {"task": "classification", "estimator": "random_forest", "target": "target"}
    steps = [
        {"order": 1, "type": "sklearn_dataset", "params": {"name": "iris"}},
        {"order": 2, "type": "train_sklearn", "params": {**params, "search": search}},
    ]

    errors = validate_steps(steps)

    assert [(error.order, error.field) for error in errors] == [(2, field)]
    assert message in errors[0].message


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
def test_training_in_a_pipeline_run_records_metrics_and_artifacts(make_pipeline):
    run = run_training(
        make_pipeline,
        "wine",
        {
            "task": "classification",
            "estimator": "random_forest",
            "hyperparams": {"n_estimators": 20},
        },
        predict=False,
    )

    assert set(run.metrics) == CLASSIFICATION_KEYS
    assert run.metrics["accuracy"] > 0.85
    summary = run.step_runs.get(order=2).summary
    assert summary["estimator"] == "RandomForestClassifier"
    assert len(summary["feature_importance"]) == 10
    assert summary["confusion_matrix"]["labels"] == [0, 1, 2]
    logged = tracking.download_artifact(run.mlflow_run_id, "step_2/confusion_matrix.csv")
    assert pd.read_csv(logged).columns.tolist() == ["actual", "0", "1", "2"]
