"""Prediction with the model trained earlier in the run."""

import pandas as pd
from pydantic import Field

from pipelines.choices import StepKind
from pipelines.engine.context import require_columns
from pipelines.engine.registry import StepParams, StepType, register


class PredictParams(StepParams):
    prediction_column: str = Field("prediction", min_length=1)
    probabilities: bool = Field(True, description="Add one probability column per class.")


@register
class Predict(StepType):
    """Predict on the current data; rows and their predictions go to `predictions`."""

    slug = "predict"
    kind = StepKind.PREDICTION
    label = "Predict with the trained model"
    Params = PredictParams
    requires = ("data", "model")
    produces = ("predictions",)

    def run(self, context, params: PredictParams, log):
        model, frame = context["model"], context["data"]
        features = list(model.feature_names_in_)
        require_columns(frame, features, "data")
        X = frame[features]
        predictions = frame.copy()
        predictions[params.prediction_column] = model.predict(X)
        if params.probabilities and hasattr(model, "predict_proba"):
            probabilities = pd.DataFrame(
                model.predict_proba(X),
                columns=[f"probability_{label}" for label in model.classes_],
                index=frame.index,
            )
            predictions = pd.concat([predictions, probabilities], axis=1)
        context["predictions"] = predictions
        log(f"predicted {len(predictions)} rows")
        return context
