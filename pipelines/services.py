"""What the web pages, the API, the admin and the commands do with pipeline definitions.

Each action is one function here; running pipelines lives in `pipelines.runs`.
"""

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from pydantic import ValidationError as ParamsError

from pipelines.engine.cache import StepCache
from pipelines.engine.runner import plan_steps
from pipelines.models import Pipeline, PipelineStep
from pipelines.validation import PipelineInvalid, StepError, ensure_valid

STEP_FIELDS = ("order", "type", "name", "params", "enabled")
RUN_SETTINGS = (
    "max_active_runs",
    "concurrency_policy",
    "timeout_seconds",
    "max_retries",
    "retry_backoff_seconds",
)


def export_pipeline(pipeline: Pipeline) -> dict:
    definition = pipeline.definition()
    return {
        "name": definition["name"],
        "description": definition["description"],
        "run_settings": {field: getattr(pipeline, field) for field in RUN_SETTINGS},
        "steps": [{key: step[key] for key in STEP_FIELDS} for step in definition["steps"]],
    }


def import_pipeline(data: dict, owner=None, replace: bool = False) -> Pipeline:
    """Create (or with `replace`, overwrite) a pipeline from exported JSON, validated first."""
    steps = _imported_steps(data)
    ensure_valid(steps)
    name = data["name"]
    with transaction.atomic():
        existing = Pipeline.objects.filter(name=name).first()
        if existing and not replace:
            raise PipelineInvalid([StepError(None, "name", f"a pipeline named {name!r} exists")])
        pipeline = existing or Pipeline(name=name, owner=owner)
        pipeline.description = data.get("description", "")
        _apply_run_settings(pipeline, data.get("run_settings") or {})
        pipeline.save()
        pipeline.steps.all().delete()
        PipelineStep.objects.bulk_create(
            PipelineStep(
                pipeline=pipeline,
                order=step["order"],
                step_type=step["type"],
                name=step.get("name", ""),
                params=step.get("params", {}),
                enabled=step.get("enabled", True),
            )
            for step in steps
        )
    return pipeline


def _apply_run_settings(pipeline: Pipeline, values) -> None:
    if not isinstance(values, dict):
        raise PipelineInvalid([StepError(None, "run_settings", "must be an object")])
    unknown = sorted(set(values) - set(RUN_SETTINGS))
    if unknown:
        raise PipelineInvalid([StepError(None, "run_settings", f"unknown key(s) {unknown}")])
    for field, value in values.items():
        setattr(pipeline, field, value)
    try:
        pipeline.full_clean(exclude=["name", "owner"], validate_unique=False)
    except ValidationError as exc:
        raise PipelineInvalid(
            [
                StepError(None, f"run_settings.{field}", " ".join(messages))
                for field, messages in exc.message_dict.items()
            ]
        ) from None


def clear_cache(pipeline: Pipeline) -> int:
    return StepCache(pipeline.pk).clear()


@dataclass(frozen=True)
class StepFreshness:
    order: int
    step_type: str
    state: str  # fresh | stale | never_run
    reason: str


def step_freshness(pipeline: Pipeline) -> list[StepFreshness]:
    """For each enabled step: is its cached output current, and if not, why."""
    cache = StepCache(pipeline.pk)
    try:
        planned = plan_steps(pipeline.definition())
    except (LookupError, ParamsError) as exc:
        return [StepFreshness(0, "", "stale", f"the pipeline is invalid: {exc}")]
    result, upstream_stale = [], False
    for step in planned:
        cache_state = cache.state(step.order, step.fingerprint)
        if cache_state.fresh and not upstream_stale:
            result.append(StepFreshness(step.order, step.step_type.slug, "fresh", ""))
            continue
        state = "never_run" if not cache_state.meta else "stale"
        reason = cache_state.reason or "an earlier step is stale"
        result.append(StepFreshness(step.order, step.step_type.slug, state, reason))
        upstream_stale = True
    return result


def _imported_steps(data) -> list[dict]:
    if not isinstance(data, dict):
        raise PipelineInvalid([StepError(None, "file", "must hold a JSON object")])
    errors = []
    if not isinstance(data.get("name"), str) or not data.get("name", "").strip():
        errors.append(StepError(None, "name", "is required"))
    steps = data.get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        errors.append(StepError(None, "steps", "must be a list of step objects"))
    else:
        for step in steps:
            unknown = set(step) - set(STEP_FIELDS)
            if unknown:
                errors.append(
                    StepError(step.get("order"), "step", f"unknown key(s) {sorted(unknown)}")
                )
    if errors:
        raise PipelineInvalid(errors)
    return steps
