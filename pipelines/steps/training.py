"""Training with scikit-learn.

Imputation, scaling and one-hot encoding are fitted inside one sklearn Pipeline with
the estimator, so the logged model predicts on cleaned raw rows exactly as in training.
"""

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationInfo, field_validator
from sklearn import metrics as sk_metrics
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pipelines.choices import StepKind
from pipelines.engine.context import require_columns
from pipelines.engine.registry import StepParams, StepType, register
from pipelines.steps.estimators import build_estimator, check_estimator

Task = Literal["classification", "regression"]

class TrainParams(StepParams):
    task: Task
    estimator: str = Field(description="Estimator slug for the task, e.g. random_forest.")
    target: str = Field(min_length=1, description="Column to predict.")
    features: list[str] | None = Field(None, description="Feature columns; all others when empty.")
    test_size: float = Field(0.2, gt=0, lt=1, description="Share of rows held out for metrics.")
    random_state: int | None = 42
    hyperparams: dict[str, Any] = Field(default_factory=dict)

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
        frame = context["data"]
        features = params.features or [c for c in frame.columns if c != params.target]
        require_columns(frame, [params.target], "target")
        require_columns(frame, features, "features")
        labelled = frame.dropna(subset=[params.target])
        X, y = labelled[features], labelled[params.target]
        X_train, X_test, y_train, y_test = _split(X, y, params)
        estimator = build_estimator(
            params.task, params.estimator, params.hyperparams, params.random_state
        )
        model = Pipeline([("prepare", _preparation(X)), ("estimator", estimator)])
        model.fit(X_train, y_train)
        scores = evaluate(params.task, model, X_test, y_test)
        log(f"{type(estimator).__name__} on {len(X_train)} rows: {_format(scores)}")
        context["model"] = model
        context["metrics"] = {**context.get("metrics", {}), **scores}
        context["_summary"] = {
            "estimator": type(estimator).__name__,
            "task": params.task,
            "features": features,
            "train_rows": len(X_train),
            "test_rows": len(X_test),
            "metrics": scores,
        }
        return context


def _split(X: pd.DataFrame, y: pd.Series, params: TrainParams):
    if len(X) < 2:
        raise ValueError(f"target: only {len(X)} labelled row(s); at least 2 are needed")
    stratify = None
    if params.task == "classification" and y.value_counts().min() >= 2:
        stratify = y
    return train_test_split(
        X, y, test_size=params.test_size, random_state=params.random_state, stratify=stratify
    )


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
    predicted = model.predict(X_test)
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
