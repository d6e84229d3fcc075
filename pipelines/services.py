"""What the web pages, the API, the admin and the commands do with pipelines.

Each action is one function here, so every trigger takes the same code path.
"""

from dataclasses import dataclass

from django.db import transaction
from django_q.tasks import async_task
from pydantic import ValidationError

from pipelines.choices import RunTrigger
from pipelines.engine.cache import StepCache
from pipelines.engine.runner import PipelineEngine, plan_steps
from pipelines.models import Pipeline, PipelineRun, PipelineStep
from pipelines.validation import PipelineInvalid, StepError, ensure_valid

STEP_FIELDS = ("order", "type", "name", "params", "enabled")


def start_run(
    pipeline: Pipeline,
    *,
    trigger: str = RunTrigger.MANUAL,
    user=None,
    from_step: int | None = None,
    wait: bool = False,
) -> PipelineRun:
    """Validate, freeze the definition into a new run, and execute it.

    With `wait` the run executes in this process (the command line); otherwise a worker
    picks it up once the transaction that created it has committed.
    """
    definition = pipeline.definition()
    ensure_valid(definition["steps"])
    if from_step is not None and from_step not in {s["order"] for s in definition["steps"]}:
        raise PipelineInvalid([StepError(from_step, "from_step", "no step has this order")])
    run = PipelineRun.objects.create(
        pipeline=pipeline,
        trigger=trigger,
        started_by=user if user and user.is_authenticated else None,
        definition=definition,
        start_step=from_step,
    )
    if wait:
        execute_run(run.pk)
        run.refresh_from_db()
    else:
        transaction.on_commit(lambda: async_task("pipelines.tasks.execute_run", run.pk))
    return run


def execute_run(run_pk: int) -> PipelineRun | None:
    """Claim a queued run and execute it; a run already claimed is left alone."""
    run = PipelineRun.objects.select_related("pipeline").get(pk=run_pk)
    if not run.claim():
        return None
    return PipelineEngine(run).execute(start_at=run.start_step)


def export_pipeline(pipeline: Pipeline) -> dict:
    definition = pipeline.definition()
    return {
        "name": definition["name"],
        "description": definition["description"],
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
    except (LookupError, ValidationError) as exc:
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
