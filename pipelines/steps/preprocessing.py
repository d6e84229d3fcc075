"""Stateless pandas cleaning steps over `context["data"]`.

Every operation is declarative: column lists and structured conditions, never user code.
Fitted transforms (imputation, scaling, encoding) live in the trained model instead.
"""

from typing import Any, Literal

import pandas as pd
from pydantic import Field, model_validator

from pipelines.choices import StepKind
from pipelines.engine.context import COMPARISONS, require_columns
from pipelines.engine.registry import StepParams, StepType, register

ColumnList = list[str]


class FrameStep(StepType):
    """A preprocessing step that maps the data frame to a new one."""

    kind = StepKind.PREPROCESSING

    def run(self, context, params, log):
        before = context["data"]
        after = self.transform(before, params)
        log(f"{before.shape[0]}x{before.shape[1]} -> {after.shape[0]}x{after.shape[1]}")
        context["data"] = after
        return context

    def transform(self, frame: pd.DataFrame, params) -> pd.DataFrame:
        raise NotImplementedError


class ColumnsParams(StepParams):
    columns: ColumnList = Field(min_length=1, description="Column names.")


@register
class SelectColumns(FrameStep):
    """Keep only the listed columns, in that order."""

    slug = "select_columns"
    label = "Select columns"
    Params = ColumnsParams

    def transform(self, frame, params: ColumnsParams):
        require_columns(frame, params.columns)
        return frame[params.columns]


@register
class DropColumns(FrameStep):
    """Remove the listed columns."""

    slug = "drop_columns"
    label = "Drop columns"
    Params = ColumnsParams

    def transform(self, frame, params: ColumnsParams):
        require_columns(frame, params.columns)
        return frame.drop(columns=params.columns)


class RenameParams(StepParams):
    mapping: dict[str, str] = Field(min_length=1, description="Old name to new name.")

    @model_validator(mode="after")
    def new_names_valid(self):
        if any(not new.strip() for new in self.mapping.values()):
            raise ValueError("mapping: new column names must not be blank")
        return self


@register
class RenameColumns(FrameStep):
    """Rename columns; the result must not have two columns of one name."""

    slug = "rename_columns"
    label = "Rename columns"
    Params = RenameParams

    def transform(self, frame, params: RenameParams):
        require_columns(frame, params.mapping, "mapping")
        renamed = frame.rename(columns=params.mapping)
        duplicated = renamed.columns[renamed.columns.duplicated()].tolist()
        if duplicated:
            raise ValueError(f"mapping: renaming creates duplicate column(s) {duplicated}")
        return renamed


class DropNaParams(StepParams):
    columns: ColumnList | None = Field(None, description="Look only at these columns.")
    how: Literal["any", "all"] = Field("any", description="Drop a row if any/all are missing.")


@register
class DropNa(FrameStep):
    """Drop rows with missing values."""

    slug = "drop_na"
    label = "Drop rows with missing values"
    Params = DropNaParams

    def transform(self, frame, params: DropNaParams):
        if params.columns:
            require_columns(frame, params.columns)
        return frame.dropna(subset=params.columns or None, how=params.how).reset_index(drop=True)


class FillNaParams(StepParams):
    columns: ColumnList | None = Field(None, description="Columns to fill; all when empty.")
    strategy: Literal["value", "mean", "median", "mode", "ffill", "bfill"] = "value"
    value: str | int | float | bool | None = Field(None, description="Used by strategy=value.")

    @model_validator(mode="after")
    def value_given(self):
        if self.strategy == "value" and self.value is None:
            raise ValueError("value: required when strategy is 'value'")
        return self


@register
class FillNa(FrameStep):
    """Fill missing values with a constant, a column statistic, or a neighbour."""

    slug = "fill_na"
    label = "Fill missing values"
    Params = FillNaParams

    def transform(self, frame, params: FillNaParams):
        columns = params.columns or list(frame.columns)
        require_columns(frame, columns)
        frame = frame.copy()
        for column in columns:
            frame[column] = _filled(frame[column], params)
        return frame


def _filled(series: pd.Series, params: FillNaParams) -> pd.Series:
    if params.strategy == "value":
        value = params.value
        if pd.api.types.is_string_dtype(series.dtype) and not isinstance(value, str):
            value = str(value)  # a text column keeps its type: 0 fills as "0"
        return series.fillna(value)
    if params.strategy in ("ffill", "bfill"):
        return getattr(series, params.strategy)()
    if params.strategy == "mode":
        modes = series.mode()
        return series.fillna(modes.iloc[0]) if len(modes) else series
    if not pd.api.types.is_numeric_dtype(series):
        raise ValueError(
            f"strategy: {params.strategy} needs a numeric column, {series.name!r} is not"
        )
    return series.fillna(getattr(series, params.strategy)())


class DropDuplicatesParams(StepParams):
    columns: ColumnList | None = Field(None, description="Compare only these columns.")
    keep: Literal["first", "last", "none"] = "first"


@register
class DropDuplicates(FrameStep):
    """Drop repeated rows."""

    slug = "drop_duplicates"
    label = "Drop duplicate rows"
    Params = DropDuplicatesParams

    def transform(self, frame, params: DropDuplicatesParams):
        if params.columns:
            require_columns(frame, params.columns)
        keep = False if params.keep == "none" else params.keep
        subset = params.columns or None
        return frame.drop_duplicates(subset=subset, keep=keep).reset_index(drop=True)


Operator = Literal[
    "==", "!=", ">", ">=", "<", "<=", "in", "not_in", "is_null", "not_null", "contains"
]
_NO_VALUE = ("is_null", "not_null")
_LIST_VALUE = ("in", "not_in")


class Condition(StepParams):
    column: str
    op: Operator
    value: Any = None

    @model_validator(mode="after")
    def value_fits_operator(self):
        if self.op in _LIST_VALUE and not isinstance(self.value, list):
            raise ValueError(f"value: operator {self.op!r} needs a list")
        if self.op not in _NO_VALUE and self.value is None:
            raise ValueError(f"value: operator {self.op!r} needs a value")
        return self


class FilterRowsParams(StepParams):
    conditions: list[Condition] = Field(min_length=1)
    match: Literal["all", "any"] = Field("all", description="Keep rows matching all/any.")


@register
class FilterRows(FrameStep):
    """Keep the rows that match structured `column op value` conditions."""

    slug = "filter_rows"
    label = "Filter rows"
    Params = FilterRowsParams

    def transform(self, frame, params: FilterRowsParams):
        require_columns(frame, [c.column for c in params.conditions], "conditions")
        masks = [_mask(frame[c.column], c) for c in params.conditions]
        combined = masks[0]
        for mask in masks[1:]:
            combined = (combined & mask) if params.match == "all" else (combined | mask)
        return frame[combined.fillna(False).astype(bool)].reset_index(drop=True)


def _mask(series: pd.Series, condition: Condition) -> pd.Series:
    op, value = condition.op, condition.value
    if op == "is_null":
        return series.isna()
    if op == "not_null":
        return series.notna()
    if op == "in":
        return series.isin(value)
    if op == "not_in":
        return ~series.isin(value)
    if op == "contains":
        return series.astype("string").str.contains(str(value), regex=False)
    try:
        return COMPARISONS[op](series, value)
    except TypeError:
        raise ValueError(
            f"conditions: cannot compare column {condition.column!r} ({series.dtype}) "
            f"with {value!r} using {op!r}"
        ) from None


TargetType = Literal["int", "float", "str", "bool", "datetime", "category"]


class CastTypesParams(StepParams):
    types: dict[str, TargetType] = Field(min_length=1, description="Column to type.")
    errors: Literal["raise", "coerce"] = Field(
        "raise", description="coerce turns unconvertible values into missing ones."
    )


@register
class CastTypes(FrameStep):
    """Convert columns to other types."""

    slug = "cast_types"
    label = "Cast column types"
    Params = CastTypesParams

    def transform(self, frame, params: CastTypesParams):
        require_columns(frame, params.types, "types")
        frame = frame.copy()
        for column, target in params.types.items():
            try:
                frame[column] = _cast(frame[column], target, params.errors)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"types.{column}: cannot convert to {target}: {exc}") from None
        return frame


def _cast(series: pd.Series, target: str, errors: str) -> pd.Series:
    if target in ("int", "float"):
        numbers = pd.to_numeric(series, errors=errors)
        if target == "int" and errors == "coerce":
            numbers = numbers.where(numbers % 1 == 0)  # 2.5 is not an int: missing
        return numbers.astype("Int64") if target == "int" else numbers.astype("float64")
    if target == "datetime":
        return pd.to_datetime(series, errors=errors)
    if target == "bool":
        if errors == "coerce":
            series = series.where(series.isin([True, False]))
        return series.astype("boolean")
    # "str" is pandas' default text dtype: missing stays NaN, which sklearn's imputer expects
    # (the "string" dtype's pd.NA breaks SimpleImputer in train_sklearn).
    return series.astype("str" if target == "str" else "category")
