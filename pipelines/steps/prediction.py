"""Prediction with the model trained earlier in the run, or with an MLflow model.

Every trained model is a fitted sklearn Pipeline (preparation + estimator) fitted on a
DataFrame, so it knows its input columns. What a prediction looks like follows from
the estimator: a class and per-class probabilities, a number, a cluster label, an
anomaly flag, one column per forecast horizon, or a transform's components.
"""

import numpy as np
import pandas as pd
from pydantic import Field, field_validator
from sklearn.base import is_classifier, is_outlier_detector
from sklearn.ensemble._forest import ForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from experiments import tracking
from pipelines.choices import StepKind
from pipelines.engine.context import require_columns
from pipelines.engine.registry import StepParams, StepType, register
from pipelines.lineage import PREDICTION_MODEL_KEY
from pipelines.steps.baselines import ThresholdRules


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
        else:
            # The engine logged the model trained earlier in the run as `model_uri`.
            resolved = context.get("model_uri", "")
            context["_summary"] = {"model_uri": resolved}
        # The save steps stamp saved predictions with it (pipelines.lineage).
        context[PREDICTION_MODEL_KEY] = resolved
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
    estimator, Xt = _prepared(model, X)
    wants_probabilities = (
        is_classifier(model) and params.probabilities and hasattr(model, "predict_proba")
    )
    if wants_probabilities and _predict_is_argmax_of_proba(estimator):
        # One walk of the trees gives both columns, exactly as predict() would.
        probabilities = estimator.predict_proba(Xt)
        predicted = estimator.classes_.take(np.argmax(probabilities, axis=1), axis=0)
        return _classes_and_probabilities(model, X, predicted, probabilities, params)
    predicted = estimator.predict(Xt)
    if predicted.ndim == 2:
        return _frame(predicted, X, _output_columns(model))
    if is_outlier_detector(model):
        # sklearn marks outliers -1 and inliers 1; the column says "is an anomaly".
        return _frame(predicted == -1, X, [params.prediction_column])
    if wants_probabilities:
        probabilities = estimator.predict_proba(Xt)
        return _classes_and_probabilities(model, X, predicted, probabilities, params)
    return _frame(predicted, X, [params.prediction_column])


def _prepared(model, X: pd.DataFrame):
    """The final estimator and X through the pipeline's preparation, done once for both
    predict and predict_proba: what Pipeline.predict does before its last step."""
    if not isinstance(model, Pipeline):
        return model, X
    Xt = X
    for _, step in model.steps[:-1]:
        if step is not None and step != "passthrough":
            Xt = step.transform(Xt)
    return model.steps[-1][1], Xt


# predict() methods that are, in scikit-learn's source, `classes_.take(argmax(
# predict_proba(X)))` for one output. Not SVC (Platt scaling can disagree with its
# decision function), nor the boosting, linear, naive Bayes, neural and neighbours
# models: they threshold raw scores, which can differ from the argmax of rounded
# probabilities at a tie; they call both.
_ARGMAX_OF_PROBA = {
    cls: (cls.predict, cls.predict_proba)
    for cls in (ForestClassifier, DecisionTreeClassifier, ThresholdRules)
}


def _predict_is_argmax_of_proba(estimator) -> bool:
    if getattr(estimator, "n_outputs_", 1) != 1:
        return False
    methods = (type(estimator).predict, type(estimator).predict_proba)
    # The methods themselves, so a subclass overriding either is not taken for its base.
    return any(methods == vetted for vetted in _ARGMAX_OF_PROBA.values())


def _classes_and_probabilities(model, X, predicted, probabilities, params) -> pd.DataFrame:
    # One frame from columns: building two and joining them costs more than a 1-row predict.
    columns = {params.prediction_column: predicted}
    for index, label in enumerate(model.classes_):
        columns[f"probability_{label}"] = probabilities[:, index]
    return pd.DataFrame(columns, index=X.index, copy=False)


def _output_columns(model) -> list[str]:
    estimator = model[-1]
    if hasattr(estimator, "output_columns_"):
        return list(estimator.output_columns_)
    return list(estimator.get_feature_names_out())


def _frame(values, X: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(values, index=X.index, columns=columns)
