"""Demo data and pipelines for a fresh installation."""

import io

import numpy as np
import pandas as pd
from sklearn import datasets

from datasources.models import Dataset
from datasources.services import add_dataset
from pipelines import services
from pipelines.choices import RunTrigger
from pipelines.models import Pipeline
from pipelines.runs import start_run

DEMO_PIPELINES = [
    {
        "name": "breast-cancer-classifier",
        "description": "Classify tumours as malignant or benign from cell measurements.",
        "steps": [
            {
                "order": 1,
                "type": "csv",
                "name": "Extract",
                "params": {"dataset": "breast-cancer"},
                "enabled": True,
            },
            {"order": 2, "type": "drop_na", "name": "Clean", "params": {}, "enabled": True},
            {
                "order": 3,
                "type": "train_sklearn",
                "name": "Train",
                "enabled": True,
                "params": {
                    "task": "classification",
                    "estimator": "random_forest",
                    "target": "target",
                    "hyperparams": {"n_estimators": 200},
                },
            },
            {"order": 4, "type": "predict", "name": "Predict", "params": {}, "enabled": True},
            {
                "order": 5,
                "type": "register_model",
                "name": "Register",
                "enabled": True,
                "params": {"name": "breast-cancer-classifier", "alias": "champion"},
            },
        ],
    },
    {
        "name": "diabetes-regressor",
        "description": "Predict disease progression one year after baseline.",
        "steps": [
            {
                "order": 1,
                "type": "csv",
                "name": "Extract",
                "params": {"dataset": "diabetes"},
                "enabled": True,
            },
            {"order": 2, "type": "drop_duplicates", "name": "Clean", "params": {}, "enabled": True},
            {
                "order": 3,
                "type": "train_sklearn",
                "name": "Train",
                "enabled": True,
                "params": {
                    "task": "regression",
                    "estimator": "gradient_boosting",
                    "target": "target",
                    "hyperparams": {"n_estimators": 200, "learning_rate": 0.05, "max_depth": 2},
                },
            },
            {"order": 4, "type": "predict", "name": "Predict", "params": {}, "enabled": True},
        ],
    },
]


def seed_demo(owner=None) -> list[str]:
    """Create the demo datasets and pipelines that do not exist yet; returns what was made."""
    created = []
    for name, frame in _demo_frames().items():
        if not Dataset.objects.filter(name=name).exists():
            buffer = io.BytesIO(frame.to_csv(index=False).encode())
            add_dataset(buffer, name, f"{name}.csv", owner)
            created.append(f"dataset {name}")
    for definition in DEMO_PIPELINES:
        if not Pipeline.objects.filter(name=definition["name"]).exists():
            services.import_pipeline(definition, owner=owner)
            created.append(f"pipeline {definition['name']}")
    return created


def queue_demo_runs() -> list[str]:
    """Queue one run of each demo pipeline that has never run, so the first pages have
    runs, metrics and a registered model to show."""
    names = [definition["name"] for definition in DEMO_PIPELINES]
    queued = []
    for pipeline in Pipeline.objects.filter(name__in=names, runs__isnull=True):
        run = start_run(pipeline, trigger=RunTrigger.COMMAND)
        queued.append(f"run #{run.pk} of {pipeline.name}")
    return queued


def _demo_frames() -> dict:
    rng = np.random.default_rng(7)
    cancer = datasets.load_breast_cancer(as_frame=True).frame
    # Real exports have holes; a few missing readings give the cleaning step work to do.
    holes = rng.choice(len(cancer), size=12, replace=False)
    cancer.loc[holes, "mean radius"] = np.nan
    diabetes = datasets.load_diabetes(as_frame=True).frame
    diabetes = pd.concat([diabetes, diabetes.iloc[:15]], ignore_index=True)
    return {"breast-cancer": cancer, "diabetes": diabetes}
