"""Validation of a whole pipeline definition before it is saved or run."""

import re
from dataclasses import dataclass

from pydantic import ValidationError

from pipelines.engine.registry import STEP_TYPES

FIELD_NAME = re.compile(r"[A-Za-z_][\w.]*")


@dataclass(frozen=True)
class StepError:
    order: int | None
    field: str
    message: str

    def __str__(self):
        where = f"step {self.order}" if self.order is not None else "pipeline"
        return f"{where}, {self.field}: {self.message}"


class PipelineInvalid(Exception):
    """Raised with every problem found, so the user can fix them in one pass."""

    def __init__(self, errors: list[StepError]):
        self.errors = errors
        super().__init__("; ".join(str(error) for error in errors))


def params_errors(order: int | None, step_type: str, params) -> list[StepError]:
    """Errors of one step's parameters, one per field."""
    if not _known(step_type):
        known = ", ".join(sorted(STEP_TYPES))
        return [StepError(order, "type", f"unknown step type {step_type!r} (known: {known})")]
    if not isinstance(params, dict):
        return [StepError(order, "params", "must be an object of parameter names to values")]
    try:
        STEP_TYPES[step_type].Params.model_validate(params)
    except ValidationError as exc:
        return [_step_error(order, error) for error in exc.errors()]
    return []


def validate_steps(steps: list[dict]) -> list[StepError]:
    """All errors of a list of step definitions ({order, type, params, enabled})."""
    errors = _order_errors(steps)
    available: set[str] = set()
    for step in sorted(
        steps, key=lambda s: s.get("order") if isinstance(s.get("order"), int) else 0
    ):
        order, step_type = step.get("order"), step.get("type", "")
        step_errors = params_errors(order, step_type, step.get("params", {}))
        errors += step_errors
        if not _known(step_type) or not step.get("enabled", True):
            continue
        cls = STEP_TYPES[step_type]
        # What a step reads can depend on its params: with invalid ones, the params
        # error is the one to report.
        needed = () if step_errors else cls.required_keys(step.get("params"))
        missing = [key for key in needed if key not in available]
        if missing:
            names = ", ".join(repr(key) for key in missing)
            errors.append(
                StepError(
                    order, "type", f"{step_type} needs {names}, which no earlier step produces"
                )
            )
        available.update(cls.produces)
    return errors


def ensure_valid(steps: list[dict]) -> None:
    errors = validate_steps(steps)
    if errors:
        raise PipelineInvalid(errors)


def _order_errors(steps: list[dict]) -> list[StepError]:
    errors, seen = [], set()
    for index, step in enumerate(steps, start=1):
        order = step.get("order")
        if not isinstance(order, int) or isinstance(order, bool) or order < 1:
            errors.append(StepError(None, f"steps[{index}].order", "must be a positive integer"))
        elif order in seen:
            errors.append(StepError(order, "order", "is used by more than one step"))
        else:
            seen.add(order)
    if not steps:
        errors.append(StepError(None, "steps", "a pipeline needs at least one step"))
    return errors


def _known(step_type) -> bool:
    # A type read from JSON may be any value, and a list or dict is not hashable.
    return isinstance(step_type, str) and step_type in STEP_TYPES


def _step_error(order: int | None, error: dict) -> StepError:
    loc, message = error["loc"], _message(error)
    # A check across fields raises "<field>: <problem>"; report it on that field.
    field, _, rest = message.partition(": ")
    if not loc and rest and FIELD_NAME.fullmatch(field):
        loc, message = tuple(field.split(".")), rest
    return StepError(order, ".".join(["params", *(str(part) for part in loc)]), message)


def _message(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "is not a parameter of this step type"
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    return error["msg"]
