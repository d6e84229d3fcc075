"""Entry points the django-q2 workers call. Tasks take primary keys only."""

from pipelines import services


def execute_run(run_pk: int) -> str | None:
    run = services.execute_run(run_pk)
    return run.status if run else None
