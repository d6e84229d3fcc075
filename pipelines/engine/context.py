"""Helpers that describe the shared context passed from step to step."""

import operator

import pandas as pd

from pipelines.engine.registry import Context

# The comparisons steps accept in declarative conditions, rules and expressions.
COMPARISONS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def frame_shape(context: Context, key: str = "data") -> tuple[int | None, int | None]:
    frame = context.get(key)
    if isinstance(frame, pd.DataFrame):
        return len(frame), len(frame.columns)
    return None, None


def output_key(produces: tuple[str, ...]) -> str:
    """The context key whose shape a StepRun reports as its output."""
    return "predictions" if "predictions" in produces else "data"


def require_columns(frame: pd.DataFrame, columns, param: str = "columns") -> None:
    """Fail with the missing column names and what is available, not a KeyError."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        available = ", ".join(map(str, frame.columns[:30]))
        raise ValueError(f"{param}: column(s) {missing} not found; available: {available}")
