"""Entry points the django-q2 workers call. Tasks take primary keys only."""

from django.conf import settings

from pipelines import runs, schedules


def execute_run(run_pk: int) -> str | None:
    """The status the run ended with; None when it was not this task's to execute."""
    run = runs.execute_run(run_pk, isolated=settings.MLOPS_ISOLATE_RUNS)
    return run.status if run else None


def reap_lost_runs() -> list[int]:
    return runs.reap_lost_runs()


def fire_schedules() -> int:
    return len(schedules.fire_due_ticks())


def inspect_step_cache(pipeline_id: int, order: int, digest: str) -> bool:
    """Write the step inspector's profile of a step's cached output (see StepCache)."""
    from pipelines.engine.cache import StepCache

    return StepCache(pipeline_id).add_inspection(order, digest)
