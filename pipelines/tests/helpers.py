"""Helpers shared by the step tests: running one step, its rejected parameters, and
looking into finished runs. Fixtures live in conftest.py."""

import pytest
from pydantic import ValidationError
from sklearn import datasets

from experiments import tracking
from pipelines.engine.cache import StepCache
from pipelines.engine.registry import get_step_type
from pipelines.engine.runner import plan_steps
from pipelines.validation import params_errors, validate_steps


def run_step(slug, context, **params):
    """Run step type `slug` on a copy of `context`: the context it returns and its log lines."""
    step, log = get_step_type(slug), []
    return step.run(dict(context), step.Params.model_validate(params), log.append), log


def apply(slug, data, **params):
    """The data that step type `slug` makes of `data`, and its log lines."""
    context, log = run_step(slug, {"data": data}, **params)
    return context["data"], log


def apply_with_summary(slug, data, **params):
    """The data that step type `slug` makes of `data`, and the StepRun summary it reports."""
    context, _ = run_step(slug, {"data": data}, **params)
    return context["data"], context.get("_summary")


def rejected(slug, **params):
    """The pydantic error dicts of the ValidationError that `params` raise for step `slug`."""
    with pytest.raises(ValidationError) as caught:
        get_step_type(slug).Params.model_validate(params)
    return caught.value.errors()


def rejected_texts(slug, **params):
    """The errors that `params` raise for step type `slug`, as the `field: message` texts
    pipeline validation reports."""
    rejected(slug, **params)
    return [f"{e.field}: {e.message}" for e in params_errors(1, slug, params)]


def step_errors(steps):
    """The validation errors of `steps`, numbered 1, 2, ... in list order, as texts."""
    numbered = [{"order": order, **step} for order, step in enumerate(steps, start=1)]
    return [str(error) for error in validate_steps(numbered)]


def bundled(name):
    """One of scikit-learn's bundled datasets (iris, wine, diabetes, ...) as a frame."""
    return getattr(datasets, f"load_{name}")(as_frame=True).frame


def rows(data):
    """The rows of `data` as lists, with missing values as None."""
    return data.astype(object).where(data.notna(), None).values.tolist()


def step_output(run, order):
    """The context a step of a finished run left, as cached for later runs."""
    fingerprint = next(s.fingerprint for s in plan_steps(run.definition) if s.order == order)
    return StepCache(run.pipeline_id).load(order, fingerprint)


def logged_model(run):
    """The model a finished run logged to MLflow."""
    uri = tracking.get_run(run.mlflow_run_id)["tags"]["mlops.model_uri"]
    return tracking.load_model(uri)
