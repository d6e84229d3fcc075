"""Training with scikit-learn.

Imputation, scaling and one-hot encoding are fitted inside one sklearn Pipeline with
the estimator, so the logged model predicts on cleaned raw rows exactly as in training.
The step scores the model on a held-out split, optionally by k-fold cross-validation and
after a hyperparameter search, and describes it with artifacts (feature importance,
confusion matrix or residuals) built from that same fit and held-out predictions.
"""

import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationInfo, field_validator, model_validator
from sklearn import metrics as sk_metrics
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import (
    KFold,
    ParameterGrid,
    ParameterSampler,
    StratifiedKFold,
    train_test_split,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from pipelines.choices import StepKind
from pipelines.engine.context import require_columns
from pipelines.engine.registry import StepParams, StepType, register
from pipelines.steps.estimators import build_estimator, check_estimator

Task = Literal["classification", "regression"]

# The metrics a search can optimise, by task; the first is the default.
METRICS = {
    "classification": ("accuracy", "precision", "recall", "f1", "roc_auc"),
    "regression": ("r2", "rmse", "mae"),
}
LOWER_IS_BETTER = {"rmse", "mae"}
RESIDUAL_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
TOP_FEATURES = 10


MAX_SEARCH_CANDIDATES = 200


class SearchParams(StepParams):
    """A hyperparameter search: which candidates to try and how to compare them."""

    kind: Literal["grid", "random"] = Field(
        "grid", description="Try every combination of the grid, or `trials` random ones."
    )
    grid: dict[str, list[Any]] = Field(
        min_length=1, description='Values to try per hyperparameter, e.g. {"max_depth": [3, 6]}.'
    )
    trials: int = Field(
        10,
        ge=1,
        le=MAX_SEARCH_CANDIDATES,
        description="Combinations a random search tries (all, if the grid has fewer).",
    )
    metric: str | None = Field(
        None,
        description="Metric to optimise (rmse and mae are minimised); accuracy or r2 when empty.",
    )
    folds: int = Field(3, ge=2, description="Cross-validation folds per candidate.")

    @field_validator("grid")
    @classmethod
    def values_given(cls, grid: dict):
        empty = [name for name, values in grid.items() if not values]
        if empty:
            raise ValueError(f"give at least one value to try for {empty}")
        return grid

    @model_validator(mode="after")
    def search_is_bounded(self):
        # Each candidate is fitted once per fold and logged as an MLflow run.
        combinations = math.prod(len(values) for values in self.grid.values())
        if self.kind == "grid" and combinations > MAX_SEARCH_CANDIDATES:
            raise ValueError(
                f"grid: {combinations} combinations; a grid search tries at most "
                f"{MAX_SEARCH_CANDIDATES} (use kind random with trials)"
            )
        return self


class TrainParams(StepParams):
    task: Task = Field(description="What the model predicts: a class or a number.")
    estimator: str = Field(description="Estimator slug for the task, e.g. random_forest.")
    target: str = Field(min_length=1, description="Column to predict.")
    features: list[str] | None = Field(None, description="Feature columns; all others when empty.")
    test_size: float = Field(0.2, gt=0, lt=1, description="Share of rows held out for metrics.")
    random_state: int | None = Field(
        42, description="Seed of the split, the folds and the estimator; random when empty."
    )
    hyperparams: dict[str, Any] = Field(
        default_factory=dict, description="Estimator hyperparameters, by their sklearn name."
    )
    cv_folds: int = Field(
        0,
        ge=0,
        description="K-fold cross-validation on all labelled rows, reported as "
        "cv_<metric>_mean and cv_<metric>_std; 0 turns it off.",
    )
    search: SearchParams | None = Field(
        None,
        description='Hyperparameter search: {"kind": "grid" or "random", "grid": {name: '
        '[values]}, "trials": n (random), "metric": to optimise (default accuracy or r2; '
        'rmse and mae are minimised), "folds": k (default 3)}. Each candidate is '
        "cross-validated on the training split and logged as a trial; the best is trained.",
    )

    @field_validator("estimator")
    @classmethod
    def estimator_known(cls, value: str, info: ValidationInfo):
        task = info.data.get("task")
        if task:
            check_estimator(task, value)
        return value

    @field_validator("hyperparams")
    @classmethod
    def hyperparams_valid(cls, value: dict, info: ValidationInfo):
        task, estimator = info.data.get("task"), info.data.get("estimator")
        if task and estimator:
            build_estimator(task, estimator, value)
        return value

    @field_validator("cv_folds")
    @classmethod
    def folds_valid(cls, value: int):
        if value == 1:
            raise ValueError("use 0 for no cross-validation, or at least 2 folds")
        return value

    @model_validator(mode="after")
    def search_valid(self):
        if self.search:
            self._check_search_metric()
            self._check_grid()
        return self

    def _check_search_metric(self):
        known = METRICS[self.task]
        if self.search.metric is not None and self.search.metric not in known:
            raise ValueError(
                f"search.metric: {self.search.metric!r} is not a {self.task} metric "
                f"(known: {', '.join(known)})"
            )

    def _check_grid(self):
        # Each value alone, so a bad one is named without building every combination.
        for name, values in self.search.grid.items():
            for value in values:
                try:
                    build_estimator(self.task, self.estimator, {**self.hyperparams, name: value})
                except ValueError as exc:
                    raise ValueError(f"search.grid: {exc}") from None

    @property
    def search_metric(self) -> str:
        return self.search.metric or METRICS[self.task][0]


@register
class TrainSklearn(StepType):
    """Fit an sklearn Pipeline (preparation + estimator) and score it on a held-out split."""

    slug = "train_sklearn"
    kind = StepKind.TRAINING
    label = "Train a scikit-learn model"
    Params = TrainParams
    requires = ("data",)
    produces = ("model", "metrics")

    def run(self, context, params: TrainParams, log):
        X, y = _labelled(context["data"], params)
        X_train, X_test, y_train, y_test = _split(X, y, params)
        hyperparams, searched = params.hyperparams, None
        if params.search:
            hyperparams, context["_trials"], searched = search(params, X_train, y_train, log)
        estimator = _estimator(params, hyperparams)
        model = build_model(X, estimator).fit(X_train, y_train)
        predicted = model.predict(X_test)
        scores = _scores(params.task, model, X_test, y_test, predicted)
        if params.cv_folds:
            scores.update(cross_validated(model, X, y, params, params.cv_folds, "cv_folds"))
        if searched:
            scores[f"search_best_{searched['metric']}"] = searched["best_score"]
        log(f"{type(estimator).__name__} on {len(X_train)} rows: {_format(scores)}")
        context["_artifacts"], described = artifacts(params.task, model, y_test, predicted)
        context["_curves"] = learning_curves(estimator)
        context["model"] = model
        context["metrics"] = {**context.get("metrics", {}), **scores}
        context["_summary"] = {
            "estimator": type(estimator).__name__,
            "task": params.task,
            "features": list(X.columns),
            "hyperparams": hyperparams,
            "train_rows": len(X_train),
            "test_rows": len(X_test),
            "metrics": scores,
            **({"search": searched} if searched else {}),
            **described,
        }
        return context


def learning_curves(estimator) -> dict[str, list[float]]:
    """The per-iteration scores a fitted estimator keeps, as metric histories: gradient
    boosting's in-sample loss per stage, a neural network's loss (and validation score
    with early stopping) per epoch."""
    curves = {
        "train_loss": getattr(estimator, "train_score_", None),
        "validation_score": getattr(estimator, "validation_scores_", None),
    }
    if getattr(estimator, "loss_curve_", None) is not None:
        curves["train_loss"] = estimator.loss_curve_
    return {key: [float(v) for v in values] for key, values in curves.items() if values is not None}


def _labelled(frame: pd.DataFrame, params: TrainParams) -> tuple[pd.DataFrame, pd.Series]:
    """The feature columns and the target of the rows whose target is known."""
    features = params.features or [c for c in frame.columns if c != params.target]
    require_columns(frame, [params.target], "target")
    require_columns(frame, features, "features")
    if frame[params.target].isna().any():
        frame = frame.dropna(subset=[params.target])
    return frame[features], frame[params.target]


def _estimator(params: TrainParams, hyperparams: dict[str, Any]):
    return build_estimator(params.task, params.estimator, hyperparams, params.random_state)


def _split(X: pd.DataFrame, y: pd.Series, params: TrainParams):
    if len(X) < 2:
        raise ValueError(f"target: only {len(X)} labelled row(s); at least 2 are needed")
    stratify = None
    if params.task == "classification" and y.value_counts().min() >= 2:
        stratify = y
    return train_test_split(
        X, y, test_size=params.test_size, random_state=params.random_state, stratify=stratify
    )


def build_model(X: pd.DataFrame, estimator) -> Pipeline:
    """The estimator behind the preparation it needs, as one Pipeline to fit on X."""
    if getattr(estimator, "reads_raw_features", False):
        # Rules name raw columns and thresholds in their units: hand the columns over as is.
        prepare = FunctionTransformer(feature_names_out="one-to-one")
    else:
        prepare = _preparation(X)
    return Pipeline([("prepare", prepare), ("estimator", estimator)])


def _preparation(X: pd.DataFrame) -> ColumnTransformer:
    datetimes = X.select_dtypes(include=["datetime", "datetimetz"]).columns.tolist()
    if datetimes:
        raise ValueError(
            f"features: datetime column(s) {datetimes} must be turned into numbers first"
        )
    numeric = X.select_dtypes(include="number").columns.tolist()
    # Booleans are encoded apart: a nullable boolean (pd.NA) mixed with text in one block
    # makes sklearn convert the whole block, which fails.
    booleans = X.select_dtypes(include=["bool", "boolean"]).columns.tolist()
    categorical = [c for c in X.columns if c not in numeric and c not in booleans]
    numeric_steps = Pipeline(
        [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
    )
    return ColumnTransformer(
        [
            ("numeric", numeric_steps, numeric),
            ("boolean", _categorical_steps(), booleans),
            ("categorical", _categorical_steps(), categorical),
        ]
    )


def _categorical_steps() -> Pipeline:
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )


def evaluate(task: str, model, X_test: pd.DataFrame, y_test: pd.Series) -> dict[str, float]:
    return _scores(task, model, X_test, y_test, model.predict(X_test))


def _scores(task: str, model, X_test, y_test, predicted) -> dict[str, float]:
    if task == "regression":
        return {
            "rmse": float(sk_metrics.root_mean_squared_error(y_test, predicted)),
            "mae": float(sk_metrics.mean_absolute_error(y_test, predicted)),
            "r2": float(sk_metrics.r2_score(y_test, predicted)),
        }
    classes = model.classes_
    binary = len(classes) == 2
    averaging = (
        {"average": "binary", "pos_label": classes[1]} if binary else {"average": "weighted"}
    )
    scores = {
        "accuracy": float(sk_metrics.accuracy_score(y_test, predicted)),
        "precision": float(
            sk_metrics.precision_score(y_test, predicted, zero_division=0, **averaging)
        ),
        "recall": float(sk_metrics.recall_score(y_test, predicted, zero_division=0, **averaging)),
        "f1": float(sk_metrics.f1_score(y_test, predicted, zero_division=0, **averaging)),
    }
    roc_auc = _roc_auc(model, X_test, y_test, binary)
    if roc_auc is not None:
        scores["roc_auc"] = roc_auc
    return scores


def _roc_auc(model, X_test, y_test, binary: bool) -> float | None:
    if not hasattr(model, "predict_proba") or y_test.nunique() < 2:
        return None
    probabilities = model.predict_proba(X_test)
    try:
        if binary:
            return float(sk_metrics.roc_auc_score(y_test, probabilities[:, 1]))
        return float(
            sk_metrics.roc_auc_score(
                y_test, probabilities, multi_class="ovr", average="weighted", labels=model.classes_
            )
        )
    except ValueError:
        # A class missing from the held-out split leaves the curve undefined.
        return None


def _format(scores: dict[str, float]) -> str:
    return ", ".join(f"{name}={value:.4f}" for name, value in scores.items() if np.isfinite(value))


def cross_validated(
    model: Pipeline, X: pd.DataFrame, y: pd.Series, params: TrainParams, folds: int, field: str
) -> dict[str, float]:
    """Each metric's mean and standard deviation over k folds of (X, y).

    Named cv_<metric>_mean and cv_<metric>_std; a metric no fold could compute is left out.
    """
    per_fold = []
    for train, test in _folds(params, y, folds, field).split(X, y):
        fitted = clone(model).fit(X.iloc[train], y.iloc[train])
        per_fold.append(evaluate(params.task, fitted, X.iloc[test], y.iloc[test]))
    table = pd.DataFrame(per_fold)
    scores = {}
    for metric in table.columns.intersection(METRICS[params.task], sort=False):
        if table[metric].notna().any():
            scores[f"cv_{metric}_mean"] = float(table[metric].mean())
            # The population spread (ddof=0), as sklearn's cv_results_ reports it.
            scores[f"cv_{metric}_std"] = float(table[metric].std(ddof=0))
    return scores


def _folds(params: TrainParams, y: pd.Series, folds: int, field: str):
    if len(y) < folds:
        raise ValueError(f"{field}: {folds} folds need at least {folds} rows, there are {len(y)}")
    # Stratify when every class can be in every fold, so each fold sees every class.
    if params.task == "classification" and y.value_counts().min() >= folds:
        return StratifiedKFold(folds, shuffle=True, random_state=params.random_state)
    return KFold(folds, shuffle=True, random_state=params.random_state)


def search(params: TrainParams, X: pd.DataFrame, y: pd.Series, log):
    """Cross-validate each candidate of the search on (X, y) and pick the best.

    Returns the best hyperparameters, one trial per candidate, and a summary.
    """
    metric = params.search_metric
    trials = []
    for candidate in _candidates(params.search, params.random_state):
        model = build_model(X, _estimator(params, {**params.hyperparams, **candidate}))
        scores = cross_validated(model, X, y, params, params.search.folds, "search.folds")
        trials.append({"params": candidate, "metrics": scores, "best": False})
    best = _best(trials, f"cv_{metric}_mean", metric in LOWER_IS_BETTER)
    best["best"] = True
    score = best["metrics"][f"cv_{metric}_mean"]
    log(f"search: best of {len(trials)} candidates by {metric} ({score:.4f}): {best['params']}")
    searched = {
        "kind": params.search.kind,
        "metric": metric,
        "candidates": len(trials),
        "best_params": best["params"],
        "best_score": score,
    }
    return {**params.hyperparams, **best["params"]}, trials, searched


def _candidates(search: SearchParams, random_state: int | None) -> list[dict]:
    grid = ParameterGrid(search.grid)
    if search.kind == "random" and search.trials < len(grid):
        return list(ParameterSampler(search.grid, search.trials, random_state=random_state))
    return list(grid)


def _best(trials: list[dict], key: str, minimise: bool) -> dict:
    scored = [trial for trial in trials if key in trial["metrics"]]
    if not scored:
        raise ValueError(f"search.metric: no candidate could be scored by {key}")
    sign = -1 if minimise else 1
    return max(scored, key=lambda trial: sign * trial["metrics"][key])


def artifacts(task: str, model: Pipeline, y_test: pd.Series, predicted) -> tuple[dict, dict]:
    """Files to log with the run, and their short forms for the StepRun summary.

    Everything comes from the fit and the held-out predictions already made: artifacts
    must not cost another pass over the data.
    """
    files, described = {}, {}
    importance = feature_importance(model)
    if importance is not None:
        files["feature_importance.csv"] = importance
        described["feature_importance"] = importance.head(TOP_FEATURES).to_dict("records")
    if task == "classification":
        labels = model.classes_
        counts = sk_metrics.confusion_matrix(y_test, predicted, labels=labels)
        files["confusion_matrix.csv"] = confusion_table(labels, counts)
        described["confusion_matrix"] = {"labels": labels.tolist(), "matrix": counts.tolist()}
    else:
        files["residuals.json"] = described["residuals"] = residual_stats(y_test, predicted)
    return files, described


def feature_importance(model: Pipeline) -> pd.DataFrame | None:
    """Importance of each prepared feature as the estimator measured it, largest first.

    Trees have feature_importances_; linear models |coef_| (averaged over classes), which
    compares features because the numeric ones are standardised. Other estimators have
    none, and estimating one (permutation importance) would cost many more predictions.
    """
    estimator = model[-1]
    if hasattr(estimator, "feature_importances_"):
        values = estimator.feature_importances_
    elif hasattr(estimator, "coef_"):
        values = np.abs(np.atleast_2d(estimator.coef_)).mean(axis=0)
    else:
        return None
    names = model[:-1].get_feature_names_out()
    table = pd.DataFrame({"feature": names, "importance": values})
    return table.sort_values("importance", ascending=False, ignore_index=True)


def confusion_table(labels: np.ndarray, counts: np.ndarray) -> pd.DataFrame:
    """Counts of held-out rows: one row per actual class, one column per predicted class."""
    table = pd.DataFrame(counts, columns=[str(label) for label in labels])
    table.insert(0, "actual", labels)
    return table


def residual_stats(y_test: pd.Series, predicted) -> dict:
    """How far held-out predictions are off; a residual is actual minus predicted."""
    residuals = y_test.to_numpy(dtype=float) - predicted
    return {
        "mean": float(residuals.mean()),
        "std": float(residuals.std()),
        "max_abs": float(np.abs(residuals).max()),
        "quantiles": {
            str(q): float(value)
            for q, value in zip(
                RESIDUAL_QUANTILES, np.quantile(residuals, RESIDUAL_QUANTILES), strict=True
            )
        },
    }
