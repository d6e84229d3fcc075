"""Edits of a pipeline's steps one at a time: add, change, move and remove a step.

Each edit builds the pipeline's new list of steps and saves it through
`services.update_pipeline`, which validates the whole definition, records a version and
saves nothing when it is invalid: a step's params are checked against its type's
declaration, and the steps after a disabled or removed one must still find what they read.
Orders are renumbered 1..n after every edit.

The pipeline's row is locked from reading its steps to saving them, so two edits made at
once cannot lose one another. Given an `expected_version` (`services.definition_version`
of the pipeline as the caller read it), an edit is refused with `services.PipelineChanged`
when the definition changed since, checked under that lock; the edited pipeline's
`saved_version` is then the version the edit saved.
"""

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction

from pipelines import services
from pipelines.models import Pipeline, PipelineStep
from pipelines.validation import PipelineInvalid, StepError


def add_step(
    pipeline: Pipeline,
    step: dict,
    *,
    at: int | None = None,
    user=None,
    expected_version: str | None = None,
) -> PipelineStep:
    """Insert `step` ({type, name, params, enabled}) at order `at`, or after the last step;
    the steps from `at` on move down one."""
    with _editing(pipeline, user, expected_version) as steps:
        at = len(steps) + 1 if at is None else at
        if not 1 <= at <= len(steps) + 1:
            raise PipelineInvalid([StepError(None, "order", _range_message(len(steps) + 1))])
        steps.insert(at - 1, step)
    return pipeline.steps.get(order=at)


def change_step(
    pipeline: Pipeline,
    order: int,
    *,
    name: str | None = None,
    params: dict | None = None,
    enabled: bool | None = None,
    user=None,
    expected_version: str | None = None,
) -> PipelineStep:
    """Rename, re-parameterize, enable or disable step `order`; None leaves a field as it is.

    `params` replaces the step's params as a whole.
    """
    changes = {"name": name, "params": params, "enabled": enabled}
    with _editing(pipeline, user, expected_version) as steps:
        index = _index(pipeline, steps, order)
        steps[index].update({key: value for key, value in changes.items() if value is not None})
    return pipeline.steps.get(order=order)


def move_steps(
    pipeline: Pipeline, orders: list[int], *, user=None, expected_version: str | None = None
) -> None:
    """Put the steps in a new sequence: `orders` lists every current order once, the step
    to come first first ([2, 1, 3] swaps the first two)."""
    with _editing(pipeline, user, expected_version) as steps:
        problem = _permutation_problem(orders, len(steps))
        if problem:
            raise PipelineInvalid([StepError(None, "order", problem)])
        steps[:] = [steps[order - 1] for order in orders]


def remove_step(
    pipeline: Pipeline, order: int, *, user=None, expected_version: str | None = None
) -> None:
    """Delete step `order`; the steps after it move up one."""
    with _editing(pipeline, user, expected_version) as steps:
        del steps[_index(pipeline, steps, order)]


@contextmanager
def _editing(pipeline: Pipeline, user, expected_version: str | None) -> Iterator[list[dict]]:
    """The pipeline's step definitions, in order, to edit in place; saved on exit."""
    with transaction.atomic():
        locked = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
        # Before the edit's own checks: an order read from a stale version may name
        # another step now, so the client needs to read again rather than a 404 or 400.
        services.ensure_version(locked, expected_version)
        steps = [step.definition() for step in PipelineStep.objects.filter(pipeline=pipeline)]
        yield steps
        numbered = [{**step, "order": number} for number, step in enumerate(steps, start=1)]
        services.update_pipeline(pipeline, steps=numbered, user=user)


def _index(pipeline: Pipeline, steps: list[dict], order: int) -> int:
    # Looked up in the list rather than the database: any int from a URL is a safe miss.
    for index, step in enumerate(steps):
        if step["order"] == order:
            return index
    raise PipelineStep.DoesNotExist(f"{pipeline.name} has no step {order}")


def _range_message(last: int) -> str:
    return "must be 1" if last == 1 else f"must be between 1 and {last}"


def _permutation_problem(orders: list[int], count: int) -> str:
    """What keeps `orders` from being a sequence of steps 1..count; "" when nothing does."""
    times = Counter(orders)
    current = set(range(1, count + 1))
    problems = [
        f"{label} {values}"
        for label, values in (
            ("repeats", sorted(order for order, n in times.items() if n > 1)),
            ("names no step", sorted(set(times) - current)),
            ("misses", sorted(current - set(times))),
        )
        if values
    ]
    return f"must list every step's order once: {'; '.join(problems)}" if problems else ""
