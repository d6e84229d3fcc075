import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def classification_frame():
    """200 labelled rows with a numeric, a categorical and a partly missing feature."""
    rng = np.random.default_rng(0)
    size = 200
    x1 = rng.normal(size=size)
    x2 = rng.normal(size=size)
    colour = rng.choice(["red", "green", "blue"], size=size)
    label = ((x1 + 0.5 * x2 + (colour == "red")) > 0.3).astype(int)
    x2[:10] = np.nan
    return pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "label": label})


@pytest.fixture
def classifier_steps():
    return [
        {"type": "csv", "name": "Extract", "params": {"dataset": "data"}},
        {"type": "drop_na", "name": "Clean", "params": {"columns": ["x1"]}},
        {
            "type": "train_sklearn",
            "name": "Train",
            "params": {
                "task": "classification",
                "estimator": "logistic_regression",
                "target": "label",
            },
        },
        {"type": "predict", "name": "Predict"},
    ]


@pytest.fixture
def classifier_pipeline(make_dataset, make_pipeline, classification_frame, classifier_steps):
    make_dataset(classification_frame, "data")
    return make_pipeline(classifier_steps, name="classifier")
