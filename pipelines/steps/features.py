"""Feature analysis steps: they report on `context["data"]` without changing it."""

from typing import Literal

import pandas as pd
from pandas.api import types
from pydantic import Field, field_validator

from pipelines.choices import StepKind
from pipelines.engine.context import require_columns
from pipelines.engine.registry import StepParams, StepType, register
from pipelines.steps.preprocessing import ColumnList


class CorrelationParams(StepParams):
    method: Literal["pearson", "spearman", "kendall"] = Field(
        "pearson",
        description="pearson: linear relation; spearman and kendall: any monotonic relation, "
        "by ranks (kendall is slow on many rows).",
    )
    columns: ColumnList | None = Field(
        None, description="Numeric or true/false columns; every such column when empty."
    )
    top: int = Field(
        10, ge=1, le=100, description="Strongest pairs (by absolute value) in the summary."
    )

    @field_validator("columns")
    @classmethod
    def at_least_two(cls, value):
        if value is not None and len(value) == 1:
            raise ValueError("a correlation needs at least 2 columns")
        return value


@register
class CorrelationReport(StepType):
    """Correlate numeric columns: the matrix as a run artifact, the strongest pairs shown."""

    slug = "correlation_report"
    # An analysis, not preprocessing: StepKind has no kind for reports yet.
    kind = StepKind.ANALYSIS
    label = "Correlation report"
    Params = CorrelationParams
    produces = ()

    def run(self, context, params: CorrelationParams, log):
        frame = context["data"]
        columns = params.columns or [c for c in frame.columns if types.is_numeric_dtype(frame[c])]
        _check_columns(frame, columns)
        matrix = frame[columns].astype("float64").corr(method=params.method)
        pairs = strongest_pairs(matrix, params.top)
        context["_artifacts"] = {
            "correlation.csv": matrix.reset_index(names="column", allow_duplicates=True)
        }
        context["_summary"] = {"method": params.method, "strongest_pairs": pairs}
        log(f"{params.method} correlation of {len(columns)} columns; strongest: {_describe(pairs)}")
        return context


def _check_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    require_columns(frame, columns)
    others = [c for c in columns if not types.is_numeric_dtype(frame[c])]
    if others:
        raise ValueError(f"columns: column(s) {others} are not numeric")
    if len(columns) < 2:
        raise ValueError(f"columns: a correlation needs at least 2 numeric columns, got {columns}")


def strongest_pairs(matrix: pd.DataFrame, top: int) -> list[dict]:
    """The `top` pairs of different columns by absolute correlation; undefined ones left out."""
    names = list(matrix.columns)
    pairs = [
        {"columns": [names[i], names[j]], "correlation": round(float(matrix.iat[i, j]), 4)}
        for i in range(len(names))
        for j in range(i + 1, len(names))
        if pd.notna(matrix.iat[i, j])
    ]
    return sorted(pairs, key=lambda pair: -abs(pair["correlation"]))[:top]


def _describe(pairs: list[dict]) -> str:
    if not pairs:
        return "none defined"
    first = pairs[0]
    return f"{' ~ '.join(map(str, first['columns']))} {first['correlation']:+.3f}"
