"""Prediction with the model trained earlier in the run, or with an MLflow model.

Every trained model is a fitted sklearn Pipeline (preparation + estimator) fitted on a
DataFrame, so it knows its input columns. What a prediction looks like follows from
the estimator: a class and per-class probabilities, a number, a cluster label, an
anomaly flag, one column per forecast horizon, or a transform's components.
"""

import pandas as pd
from pydantic import Field, field_validator
from sklearn.base import is_classifier, is_outlier_detector

from experiments import tracking
from pipelines.choices import StepKind
from pipelines.engine.context import require_columns
from pipelines.engine.registry import StepParams, StepType, register


class PredictParams(StepParams):
    model_uri: str | None = Field(
        None,
        description=f"MLflow model to predict with: {tracking.MODEL_URI_FORMS}. "
        "Empty: the model trained earlier in this run.",
    )
    prediction_column: str = Field(
        "prediction", min_length=1, description="Name of the column of predictions."
    )
    probabilities: bool = Field(True, description="Add one probability column per class.")

    @field_validator("model_uri")
    @classmethod
    def model_uri_well_formed(cls, value: str | None):
        if value is not None:
            tracking.parse_model_uri(value)
        return value


@register
class Predict(StepType):
    """Predict on the current data; rows and their predictions go to `predictions`."""

    slug = "predict"
    kind = StepKind.PREDICTION
    label = "Predict with a trained model"
    Params = PredictParams
    requires = ("data", "model")
    produces = ("predictions",)

    @classmethod
    def required_keys(cls, params: dict) -> tuple[str, ...]:
        return ("data",) if (params or {}).get("model_uri") else cls.requires

    def source_version(self, params: PredictParams) -> str:
        # The version an alias points to now: moving the alias makes the cache stale.
        if not params.model_uri:
            return ""
        try:
            return tracking.resolve_model_version(params.model_uri)
        except tracking.ModelNotFound:
            return ""  # running the step reports why

    def run(self, context, params: PredictParams, log):
        model, frame = context.get("model"), context["data"]
        if params.model_uri:
            resolved = _resolve(params.model_uri)
            log(f"predicting with {params.model_uri} ({resolved})")
            context["_summary"] = {"model_uri": params.model_uri, "resolved_uri": resolved}
            model = tracking.load_model(resolved)
        features = list(model.feature_names_in_)
        require_columns(frame, features, "data")
        outputs = model_outputs(model, frame[features], params)
        # Columns of an earlier prediction with the same names are replaced, not doubled.
        kept = frame.drop(columns=[c for c in outputs.columns if c in frame.columns])
        context["predictions"] = pd.concat([kept, outputs], axis=1)
        log(f"predicted {len(frame)} rows: {', '.join(outputs.columns)}")
        return context


def _resolve(model_uri: str) -> str:
    try:
        return tracking.resolve_model_version(model_uri)
    except tracking.ModelNotFound as exc:
        raise ValueError(f"model_uri: no model at {model_uri!r}: {exc}") from None


def model_outputs(model, X: pd.DataFrame, params: PredictParams) -> pd.DataFrame:
    """The model's predictions for X as columns indexed like X.

    An estimator whose predictions are several columns (forecast horizons) names them
    in `output_columns_`; a transformer's columns are its output feature names.
    """
    if not hasattr(model, "predict"):
        return _frame(model.transform(X), X, _output_columns(model))
    predicted = model.predict(X)
    if predicted.ndim == 2:
        return _frame(predicted, X, _output_columns(model))
    if is_outlier_detector(model):
        # sklearn marks outliers -1 and inliers 1; the column says "is an anomaly".
        return _frame(predicted == -1, X, [params.prediction_column])
    outputs = _frame(predicted, X, [params.prediction_column])
    if is_classifier(model) and params.probabilities and hasattr(model, "predict_proba"):
        columns = [f"probability_{label}" for label in model.classes_]
        outputs = outputs.join(_frame(model.predict_proba(X), X, columns))
    return outputs


def _output_columns(model) -> list[str]:
    estimator = model[-1]
    if hasattr(estimator, "output_columns_"):
        return list(estimator.output_columns_)
    return list(estimator.get_feature_names_out())


def _frame(values, X: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(values, index=X.index, columns=columns)
