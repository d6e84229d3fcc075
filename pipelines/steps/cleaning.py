"""Stateless pandas steps that reshape, clean and derive columns of `context["data"]`.

Everything is declared as parameters: column lists, fixed operator sets and JSON
expression trees. No user text is ever evaluated as code.
"""

import json
import operator
from itertools import pairwise
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from pandas.api import types
from pandas.tseries.frequencies import to_offset
from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    PositiveInt,
    Tag,
    field_validator,
    model_validator,
)

from pipelines.engine.context import COMPARISONS, require_columns
from pipelines.engine.registry import StepParams, register
from pipelines.steps.preprocessing import ColumnList, FrameStep

Scalar = str | int | float | bool | None


class SummarizingStep(FrameStep):
    """A FrameStep that also shows on its StepRun what it changed (counts, bounds, names)."""

    def run(self, context, params, log):
        before = context["data"]
        context = super().run(context, params, log)
        context["_summary"] = self.summarize(before, context["data"], params)
        return context

    def summarize(self, before: pd.DataFrame, after: pd.DataFrame, params) -> dict:
        """What the StepRun shows besides the rows and columns; values must be JSON."""
        raise NotImplementedError


def require_numeric(frame: pd.DataFrame, columns, param: str = "columns") -> None:
    """Fail naming the columns that are not numbers (booleans are not numbers here)."""
    others = [c for c in columns if not _is_number(frame[c])]
    if others:
        raise ValueError(f"{param}: column(s) {others} are not numeric")


def require_datetime(frame: pd.DataFrame, column: str, param: str) -> None:
    if not types.is_datetime64_any_dtype(frame[column]):
        raise ValueError(
            f"{param}: {column!r} is not a datetime column ({frame[column].dtype}); "
            "parse it with parse_dates first"
        )


def _is_number(series: pd.Series) -> bool:
    return types.is_numeric_dtype(series) and not types.is_bool_dtype(series)


def _changed_count(before: pd.Series, after: pd.Series) -> int:
    both_missing = before.isna() & after.isna()
    # As objects: a replaced value may be of another type than the column was.
    return int((before.astype(object).ne(after.astype(object)) & ~both_missing).sum())


def _added_columns(before: pd.DataFrame, after: pd.DataFrame) -> list[str]:
    return [column for column in after.columns if column not in before.columns]


# sort / limit / sample


class SortParams(StepParams):
    columns: ColumnList = Field(
        min_length=1, description="Columns to sort by; ties on one are ordered by the next."
    )
    descending: bool | list[bool] = Field(
        False, description="Largest first: one value for every column, or one per column."
    )
    missing: Literal["last", "first"] = Field("last", description="Where missing values go.")

    @model_validator(mode="after")
    def one_direction_per_column(self):
        if isinstance(self.descending, list) and len(self.descending) != len(self.columns):
            raise ValueError(
                f"descending: give one value per column ({len(self.columns)}), "
                f"not {len(self.descending)}"
            )
        return self


@register
class Sort(FrameStep):
    """Order the rows by one or more columns."""

    slug = "sort"
    label = "Sort rows"
    Params = SortParams

    def transform(self, frame, params: SortParams):
        require_columns(frame, params.columns)
        descending = params.descending
        ascending = [not d for d in descending] if isinstance(descending, list) else not descending
        try:
            ordered = frame.sort_values(
                params.columns, ascending=ascending, na_position=params.missing, kind="stable"
            )
        except TypeError as exc:
            raise ValueError(f"columns: cannot order mixed values ({exc})") from None
        return ordered.reset_index(drop=True)


class LimitParams(StepParams):
    rows: PositiveInt = Field(description="Number of rows to keep.")
    end: Literal["first", "last"] = Field("first", description="Keep the first or the last rows.")


@register
class Limit(FrameStep):
    """Keep the first (or last) rows."""

    slug = "limit"
    label = "Limit rows"
    Params = LimitParams

    def transform(self, frame, params: LimitParams):
        kept = frame.head(params.rows) if params.end == "first" else frame.tail(params.rows)
        return kept.reset_index(drop=True)


class SampleParams(StepParams):
    n: PositiveInt | None = Field(None, description="Number of rows to draw.")
    fraction: float | None = Field(None, gt=0, le=1, description="Share of the rows to draw.")
    replace: bool = Field(False, description="Draw with replacement (a bootstrap sample).")
    random_state: int = Field(42, ge=0, description="Seed: the same seed draws the same rows.")

    @model_validator(mode="after")
    def one_size(self):
        if (self.n is None) == (self.fraction is None):
            raise ValueError("n: give either n or fraction")
        return self


@register
class Sample(FrameStep):
    """Draw a seeded random sample of rows; the rows keep their original order."""

    slug = "sample"
    label = "Sample rows"
    Params = SampleParams

    def transform(self, frame, params: SampleParams):
        if params.n and params.n > len(frame) and not params.replace:
            raise ValueError(
                f"n: cannot draw {params.n} rows from {len(frame)} without replacement"
            )
        drawn = frame.sample(
            n=params.n,
            frac=params.fraction,
            replace=params.replace,
            random_state=params.random_state,
        )
        return drawn.sort_index(kind="stable").reset_index(drop=True)


# replace_values / clip / log_transform


class Replacement(StepParams):
    old: Scalar = Field(description="Value to replace; null matches missing values.")
    new: Scalar = Field(description="Value to put instead; null makes it missing.")


class ReplaceValuesParams(StepParams):
    replacements: list[Replacement] = Field(
        min_length=1, description='Exact values to swap: [{"old": "n/a", "new": null}, ...].'
    )
    columns: ColumnList | None = Field(None, description="Columns to change; all when empty.")

    @model_validator(mode="after")
    def each_value_once(self):
        olds = [r.old for r in self.replacements]
        repeated = [old for index, old in enumerate(olds) if old in olds[:index]]
        if repeated:
            raise ValueError(f"replacements: value {repeated[0]!r} is replaced twice")
        return self


@register
class ReplaceValues(SummarizingStep):
    """Swap exact values (and missing values) for others; every swap reads the original."""

    slug = "replace_values"
    label = "Replace values"
    Params = ReplaceValuesParams

    def transform(self, frame, params: ReplaceValuesParams):
        columns = params.columns or list(frame.columns)
        require_columns(frame, columns)
        return frame.assign(**{c: _replaced(frame[c], params.replacements) for c in columns})

    def summarize(self, before, after, params):
        columns = params.columns or list(after.columns)
        counts = {c: _changed_count(before[c], after[c]) for c in columns}
        return {"replaced": {column: count for column, count in counts.items() if count}}


def _replaced(series: pd.Series, replacements: list[Replacement]) -> pd.Series:
    # Matching the original values keeps a->b, b->c from turning a into c.
    swaps = [(_matching(series, r.old), r.new) for r in replacements]
    swaps = [(matches, new) for matches, new in swaps if matches.any()]
    if not swaps:
        return series
    # Through object values, so a number may replace a text and the dtype is inferred again.
    result = series.astype(object)
    for matches, new in swaps:
        result = result.mask(matches, new)
    return result.infer_objects()


def _matching(series: pd.Series, value: Scalar) -> pd.Series:
    return series.isna() if value is None else series.eq(value)


class ClipParams(StepParams):
    columns: ColumnList = Field(min_length=1, description="Numeric columns to bound.")
    lower: float | None = Field(None, description="Values below become this.")
    upper: float | None = Field(None, description="Values above become this.")
    lower_quantile: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Values below this quantile of the column (0.01: the 1st "
        "percentile) become that quantile.",
    )
    upper_quantile: float | None = Field(
        None, ge=0, le=1, description="Values above this quantile of the column become it."
    )

    @model_validator(mode="after")
    def one_kind_of_bounds(self):
        fixed = self.lower is not None or self.upper is not None
        quantiles = self.lower_quantile is not None or self.upper_quantile is not None
        if fixed == quantiles:
            raise ValueError(
                "lower: give fixed bounds (lower, upper) or quantiles "
                "(lower_quantile, upper_quantile), one kind only"
            )
        if _not_below(self.lower, self.upper):
            raise ValueError("lower: must be below upper")
        if _not_below(self.lower_quantile, self.upper_quantile):
            raise ValueError("lower_quantile: must be below upper_quantile")
        return self

    def bounds(self, series: pd.Series) -> tuple[float | None, float | None]:
        if self.lower_quantile is None and self.upper_quantile is None:
            return self.lower, self.upper
        return _quantile(series, self.lower_quantile), _quantile(series, self.upper_quantile)


def _not_below(lower: float | None, upper: float | None) -> bool:
    return lower is not None and upper is not None and lower >= upper


def _quantile(series: pd.Series, share: float | None) -> float | None:
    return None if share is None else float(series.quantile(share))


@register
class Clip(SummarizingStep):
    """Bound numeric columns by fixed values or by quantiles of each column.

    Quantiles are taken from the data of each run, so a prediction run bounds its rows by
    its own quantiles; the bounds used are shown on the StepRun.
    """

    slug = "clip"
    label = "Clip values"
    Params = ClipParams

    def transform(self, frame, params: ClipParams):
        require_columns(frame, params.columns)
        require_numeric(frame, params.columns)
        return frame.assign(**{c: frame[c].clip(*params.bounds(frame[c])) for c in params.columns})

    def summarize(self, before, after, params):
        return {
            "bounds": {c: list(params.bounds(before[c])) for c in params.columns},
            "clipped": {c: _changed_count(before[c], after[c]) for c in params.columns},
        }


class LogTransformParams(StepParams):
    columns: ColumnList = Field(min_length=1, description="Numeric columns to replace by log1p.")
    shift: float = Field(
        0, ge=0, description="Added before taking log(1 + x), to lift negative values to 0."
    )


@register
class LogTransform(FrameStep):
    """Replace numeric columns by log(1 + x + shift); negative inputs are refused."""

    slug = "log_transform"
    label = "Log transform"
    Params = LogTransformParams

    def transform(self, frame, params: LogTransformParams):
        require_columns(frame, params.columns)
        require_numeric(frame, params.columns)
        return frame.assign(**{c: _log1p(frame[c], params.shift) for c in params.columns})


def _log1p(series: pd.Series, shift: float) -> pd.Series:
    lowest = series.min()
    if lowest + shift < 0:
        raise ValueError(
            f"columns: {series.name!r} has values below 0 (lowest {lowest:g}) after a shift of "
            f"{shift:g}; set shift to at least {-lowest:g}"
        )
    return np.log1p(series.astype("float64") + shift)


# parse_dates / date_parts


class ParseDatesParams(StepParams):
    columns: ColumnList = Field(min_length=1, description="Columns of dates or times as text.")
    format: str | None = Field(
        None, description="strftime format such as %d/%m/%Y %H:%M; inferred when empty."
    )
    errors: Literal["raise", "coerce"] = Field(
        "raise", description="coerce turns values that do not parse into missing ones."
    )
    timezone: str | None = Field(
        None,
        description="IANA time zone such as Europe/Paris: times without an offset are taken "
        "to be in it, times with one are converted to it.",
    )

    @field_validator("timezone")
    @classmethod
    def timezone_known(cls, value):
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown time zone {value!r}; use a name such as 'Europe/Paris' or 'UTC'"
                ) from None
        return value


@register
class ParseDates(SummarizingStep):
    """Turn text columns into datetime columns."""

    slug = "parse_dates"
    label = "Parse dates"
    Params = ParseDatesParams

    def transform(self, frame, params: ParseDatesParams):
        require_columns(frame, params.columns)
        return frame.assign(**{c: _parsed_dates(frame[c], params) for c in params.columns})

    def summarize(self, before, after, params):
        unparsed = {c: int((after[c].isna() & before[c].notna()).sum()) for c in params.columns}
        return {"unparsed": unparsed}


def _parsed_dates(series: pd.Series, params: ParseDatesParams) -> pd.Series:
    # Integers such as 20240131 are dates written as digits, not nanoseconds since 1970.
    text = series.astype("str").where(series.notna()) if types.is_integer_dtype(series) else series
    invalid = "NaT" if params.errors == "coerce" else "raise"
    try:
        parsed = pd.to_datetime(text, format=params.format, errors=params.errors)
        if params.timezone and parsed.dt.tz is not None:
            return parsed.dt.tz_convert(params.timezone)
        if params.timezone:
            return parsed.dt.tz_localize(params.timezone, ambiguous=invalid, nonexistent=invalid)
        return parsed
    except ValueError as exc:
        # pandas' message goes on with advice about its own arguments; keep the first line.
        reason = str(exc).splitlines()[0]
        raise ValueError(
            f"columns: cannot parse {series.name!r} as dates: {reason} "
            "(errors 'coerce' makes such values missing)"
        ) from None


DatePart = Literal["year", "quarter", "month", "day", "weekday", "hour", "minute"]


class DatePartsParams(StepParams):
    column: str = Field(min_length=1, description="A datetime column (see parse_dates).")
    parts: list[DatePart] = Field(
        ["year", "month", "day", "weekday"],
        min_length=1,
        description="Parts added as <column>_<part> number columns; weekday 0 is Monday.",
    )
    drop_original: bool = Field(
        False, description="Remove the datetime column, which a model cannot train on."
    )


# Part names users pick -> pandas accessors (`weekday` is deprecated in pandas 3.1).
_DATE_ACCESSORS = {"weekday": "day_of_week"}


@register
class DateParts(FrameStep):
    """Add number columns for parts of a datetime column: year, month, weekday..."""

    slug = "date_parts"
    label = "Date parts"
    Params = DatePartsParams

    def transform(self, frame, params: DatePartsParams):
        column = params.column
        require_columns(frame, [column], "column")
        require_datetime(frame, column, "column")
        values = frame[column].dt
        parts = {
            f"{column}_{part}": getattr(values, _DATE_ACCESSORS.get(part, part)).astype("Int64")
            for part in params.parts
        }
        frame = frame.assign(**parts)
        return frame.drop(columns=column) if params.drop_original else frame


# string_clean


class StringCleanParams(StepParams):
    columns: ColumnList | None = Field(None, description="Text columns; every one when empty.")
    strip: bool = Field(True, description="Remove spaces at the start and end.")
    case: Literal["keep", "lower", "upper"] = Field("keep", description="Change letter case.")
    blank_as_missing: bool = Field(False, description="Make empty texts missing values.")


@register
class StringClean(FrameStep):
    """Strip spaces and change the case of text columns."""

    slug = "string_clean"
    label = "Clean text"
    Params = StringCleanParams

    def transform(self, frame, params: StringCleanParams):
        if params.columns:
            require_columns(frame, params.columns)
            others = [c for c in params.columns if not _is_text(frame[c])]
            if others:
                raise ValueError(f"columns: column(s) {others} are not text")
        columns = params.columns or [c for c in frame.columns if _is_text(frame[c])]
        return frame.assign(**{c: _cleaned(frame[c], params) for c in columns})


def _is_text(series: pd.Series) -> bool:
    # Object columns count when every present value is a string ("empty": all missing).
    return types.infer_dtype(series, skipna=True) in ("string", "empty")


def _cleaned(series: pd.Series, params: StringCleanParams) -> pd.Series:
    if params.strip:
        series = series.str.strip()
    if params.case != "keep":
        series = getattr(series.str, params.case)()
    if params.blank_as_missing:
        series = series.mask(series.eq(""))
    return series


# bin_numeric


class BinNumericParams(StepParams):
    column: str = Field(min_length=1, description="Numeric column to bin.")
    method: Literal["equal_width", "quantile", "edges"] = Field(
        "equal_width",
        description="equal_width: bins of one width from min to max; quantile: bins of "
        "about equal row counts; edges: the given edges.",
    )
    bins: int = Field(4, ge=2, le=100, description="Number of bins for equal_width and quantile.")
    edges: list[float] | None = Field(
        None,
        min_length=2,
        description="Increasing bin edges for method edges; values outside become missing.",
    )
    labels: list[str] | None = Field(
        None, description="One name per bin, lowest first; by default its range, e.g. (2, 4.5]."
    )
    output: str | None = Field(None, description="Column to write; <column>_bin when empty.")

    @model_validator(mode="after")
    def edges_fit_method(self):
        if (self.method == "edges") != (self.edges is not None):
            raise ValueError("edges: give edges exactly when method is 'edges'")
        if self.edges and any(lo >= hi for lo, hi in pairwise(self.edges)):
            raise ValueError("edges: must be strictly increasing")
        return self

    @model_validator(mode="after")
    def one_label_per_bin(self):
        count = len(self.edges) - 1 if self.edges else self.bins
        if self.labels is not None and len(self.labels) != count:
            raise ValueError(f"labels: {count} bins need {count} labels, not {len(self.labels)}")
        if self.labels and len(set(self.labels)) != len(self.labels):
            raise ValueError("labels: must be distinct")
        return self

    @property
    def output_column(self) -> str:
        return self.output or f"{self.column}_bin"


@register
class BinNumeric(SummarizingStep):
    """Put a numeric column's values into bins: equal width, quantiles or given edges."""

    slug = "bin_numeric"
    label = "Bin numbers"
    Params = BinNumericParams

    def transform(self, frame, params: BinNumericParams):
        require_columns(frame, [params.column], "column")
        require_numeric(frame, [params.column], "column")
        edges = _bin_edges(frame[params.column], params)
        labels = params.labels or _range_labels(edges)
        binned = pd.cut(frame[params.column], edges, labels=labels, include_lowest=True)
        # Plain text, not a categorical: the CSV writers and model preparation expect it.
        return frame.assign(**{params.output_column: binned.astype("str")})

    def summarize(self, before, after, params):
        edges = _bin_edges(before[params.column], params)
        binned = after[params.output_column]
        labels = params.labels or _range_labels(edges)
        return {
            "edges": edges,
            "rows_per_bin": {label: int(binned.eq(label).sum()) for label in labels},
        }


def _bin_edges(series: pd.Series, params: BinNumericParams) -> list[float]:
    if params.edges:
        return params.edges
    if series.notna().sum() == 0:
        raise ValueError(f"column: {params.column!r} has no values to bin")
    if params.method == "quantile":
        edges = series.quantile(np.linspace(0, 1, params.bins + 1)).tolist()
    else:
        edges = np.linspace(series.min(), series.max(), params.bins + 1).tolist()
    if len(set(edges)) < len(edges):
        raise ValueError(
            f"bins: {params.column!r} has too few distinct values for {params.bins} "
            f"{params.method} bins"
        )
    return [float(edge) for edge in edges]


def _range_labels(edges: list[float]) -> list[str]:
    # The lowest bin includes its lower edge (include_lowest), so it opens with "[".
    ranges = [f"({lo:g}, {hi:g}]" for lo, hi in pairwise(edges)]
    return ["[" + ranges[0][1:], *ranges[1:]]


# derive_column

ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
LOGICAL = {"and": operator.and_, "or": operator.or_}
Operator = Literal["+", "-", "*", "/", ">", ">=", "<", "<=", "==", "!=", "and", "or"]


class ColumnNode(StepParams):
    column: str = Field(min_length=1, description="A column's values.")

    def columns(self) -> list[str]:
        return [self.column]

    def __str__(self):
        return self.column


class ConstNode(StepParams):
    const: str | int | float | bool = Field(description="A number, text or true/false.")

    def columns(self) -> list[str]:
        return []

    def __str__(self):
        return json.dumps(self.const)


class OpNode(StepParams):
    op: Operator = Field(description="Arithmetic, comparison, or and/or of two comparisons.")
    left: "Expression" = Field(description="The first operand.")
    right: "Expression" = Field(description="The second operand.")

    def columns(self) -> list[str]:
        return [*self.left.columns(), *self.right.columns()]

    def __str__(self):
        return f"({self.left} {self.op} {self.right})"


def _node_kind(value) -> str | None:
    """Which node a JSON object is, by its key; None fails validation with the message."""
    if isinstance(value, dict):
        return next((key for key in ("op", "column", "const") if key in value), None)
    return {ColumnNode: "column", ConstNode: "const", OpNode: "op"}.get(type(value))


Expression = Annotated[
    Annotated[ColumnNode, Tag("column")]
    | Annotated[ConstNode, Tag("const")]
    | Annotated[OpNode, Tag("op")],
    Discriminator(
        _node_kind,
        custom_error_type="expression",
        custom_error_message='an expression is {"column": name}, {"const": value} or '
        '{"op": operator, "left": expression, "right": expression}',
    ),
]
OpNode.model_rebuild()


class DeriveColumnParams(StepParams):
    output: str = Field(
        min_length=1, description="Name of the new column; a column of that name is replaced."
    )
    expression: Expression = Field(
        description='A tree of {"column": name}, {"const": value} and {"op": "+", "left": '
        '..., "right": ...} with op + - * / > >= < <= == != and or. Division by zero '
        "gives a missing value."
    )


@register
class DeriveColumn(SummarizingStep):
    """Compute a column from others with arithmetic and comparisons, declared as a tree."""

    slug = "derive_column"
    label = "Derive a column"
    Params = DeriveColumnParams

    def transform(self, frame, params: DeriveColumnParams):
        require_columns(frame, params.expression.columns(), "expression")
        return frame.assign(**{params.output: _evaluate(params.expression, frame)})

    def summarize(self, before, after, params):
        return {"expression": str(params.expression)}


def _evaluate(node, frame: pd.DataFrame) -> pd.Series:
    if isinstance(node, ColumnNode):
        return frame[node.column]
    if isinstance(node, ConstNode):
        return pd.Series(node.const, index=frame.index)
    left, right = _evaluate(node.left, frame), _evaluate(node.right, frame)
    if node.op in LOGICAL and not (types.is_bool_dtype(left) and types.is_bool_dtype(right)):
        raise ValueError(f"expression: {node.op!r} needs true/false on both sides in {node}")
    function = {**ARITHMETIC, **COMPARISONS, **LOGICAL}[node.op]
    try:
        result = function(left, right)
    except TypeError:
        raise ValueError(
            f"expression: cannot compute {node} with {left.dtype} and {right.dtype} values"
        ) from None
    # x / 0 is missing, not an infinity that would skew every later statistic.
    return result.mask(right.eq(0)) if node.op == "/" else result


# flatten_json


class FlattenJsonParams(StepParams):
    columns: ColumnList = Field(
        min_length=1, description='Columns of JSON object text, e.g. {"city": "Oslo"}.'
    )
    separator: str = Field(
        ".", min_length=1, description="Joins column and nested keys: payload.size.m2."
    )
    max_level: int | None = Field(
        None, ge=0, description="Levels of nesting to flatten (0: top keys only); all if empty."
    )
    errors: Literal["raise", "coerce"] = Field(
        "raise", description="coerce gives missing values for text that is not a JSON object."
    )
    keep_original: bool = Field(False, description="Keep the JSON text column as well.")


@register
class FlattenJson(SummarizingStep):
    """Spread JSON object text columns into one column per (nested) key."""

    slug = "flatten_json"
    label = "Flatten JSON"
    Params = FlattenJsonParams

    def transform(self, frame, params: FlattenJsonParams):
        require_columns(frame, params.columns)
        for column in params.columns:
            flat = _flattened(frame[column], params)
            existing = [c for c in flat.columns if c in frame.columns]
            if existing:
                raise ValueError(f"columns: flattening {column!r} repeats column(s) {existing}")
            kept = frame if params.keep_original else frame.drop(columns=column)
            frame = pd.concat([kept, flat], axis=1)
        return frame

    def summarize(self, before, after, params):
        return {"new_columns": _added_columns(before, after)}


def _flattened(series: pd.Series, params: FlattenJsonParams) -> pd.DataFrame:
    objects = [
        _json_object(value, series.name, row, params.errors)
        for row, value in enumerate(series, start=1)
    ]
    flat = pd.json_normalize(objects, sep=params.separator, max_level=params.max_level)
    flat.index = series.index
    return flat.add_prefix(f"{series.name}{params.separator}")


def _json_object(value, column: str, row: int, errors: str) -> dict:
    """One cell as a dict: missing cells are empty; bad text fails, naming column and row."""
    if isinstance(value, dict):
        return value
    if types.is_scalar(value) and pd.isna(value):
        return {}
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
        problem = "is not a JSON object"
    except json.JSONDecodeError as exc:
        parsed, problem = None, f"is not valid JSON ({exc.msg})"
    if isinstance(parsed, dict):
        return parsed
    if errors == "coerce":
        return {}
    excerpt = str(value) if len(str(value)) <= 40 else f"{str(value)[:40]}..."
    raise ValueError(f"columns: {column!r} row {row} {problem}: {excerpt}")


# resample

Aggregation = Literal["mean", "sum", "min", "max", "median", "count", "first", "last", "std"]
NUMERIC_AGGREGATIONS = ("mean", "sum", "median", "std")
# One aggregation may be written without a list: "sum" reads as ["sum"].
AggregationList = Annotated[
    list[Aggregation],
    BeforeValidator(lambda value: [value] if isinstance(value, str) else value),
    Field(min_length=1),
]


class ResampleParams(StepParams):
    on: str = Field(min_length=1, description="Datetime column that is grouped into periods.")
    frequency: str = Field(
        description="pandas frequency of the periods: 15min, 1h, 1D, W (weeks to Sunday), "
        "MS (months), QS, YS."
    )
    aggregations: dict[str, AggregationList] = Field(
        min_length=1,
        description="Column to aggregation, or to a list of them. A column with one keeps "
        "its name; with several, each is a column <column>_<aggregation>. Columns not "
        "listed are dropped.",
    )

    @field_validator("frequency")
    @classmethod
    def frequency_known(cls, value):
        try:
            offset = to_offset(value)
        except ValueError:
            offset = None
        if offset is None or offset.n <= 0:
            raise ValueError(
                f"{value!r} is not a pandas frequency such as '15min', '1h', '1D', 'W' or 'MS'"
            )
        return value

    @model_validator(mode="after")
    def time_column_not_aggregated(self):
        if self.on in self.aggregations:
            raise ValueError(f"aggregations: {self.on!r} is the time column, it is not aggregated")
        return self


@register
class Resample(FrameStep):
    """Aggregate rows into regular time periods: one row per period, empty periods included."""

    slug = "resample"
    label = "Resample by time"
    Params = ResampleParams

    def transform(self, frame, params: ResampleParams):
        require_columns(frame, [params.on], "on")
        require_datetime(frame, params.on, "on")
        require_columns(frame, params.aggregations, "aggregations")
        named = _named_aggregations(frame, params.aggregations)
        periods = frame.resample(params.frequency, on=params.on).agg(**named)
        return periods.reset_index()


def _named_aggregations(frame: pd.DataFrame, aggregations: dict) -> dict[str, tuple[str, str]]:
    """Output column -> (column, aggregation): the column's name, or <column>_<aggregation>."""
    named = {}
    for column, chosen in aggregations.items():
        for aggregation in chosen:
            if aggregation in NUMERIC_AGGREGATIONS and not types.is_numeric_dtype(frame[column]):
                raise ValueError(
                    f"aggregations.{column}: {aggregation} needs numbers, "
                    f"{column!r} holds {frame[column].dtype}"
                )
            output = column if len(chosen) == 1 else f"{column}_{aggregation}"
            named[output] = (column, aggregation)
    return named


# one_hot


class OneHotParams(StepParams):
    columns: ColumnList = Field(
        min_length=1, description="Columns replaced by 0/1 columns <column>_<value>."
    )
    drop_first: bool = Field(
        False, description="Leave out each column's first value, which the others imply."
    )
    max_categories: int = Field(
        50, ge=1, le=1000, description="Refuse a column with more distinct values than this."
    )
    include_missing: bool = Field(False, description="Add a <column>_nan column for missing.")


@register
class OneHot(SummarizingStep):
    """Replace categorical columns by 0/1 indicator columns, for analysis outputs.

    Models fit their own encoding in train_sklearn; this is for tables and reports.
    """

    slug = "one_hot"
    label = "One-hot indicators"
    Params = OneHotParams

    def transform(self, frame, params: OneHotParams):
        require_columns(frame, params.columns)
        for column in params.columns:
            count = frame[column].nunique()
            if count > params.max_categories:
                raise ValueError(
                    f"columns: {column!r} has {count} distinct values, more than "
                    f"max_categories ({params.max_categories})"
                )
        encoded = pd.get_dummies(
            frame,
            columns=params.columns,
            drop_first=params.drop_first,
            dummy_na=params.include_missing,
            dtype="int64",
        )
        repeated = encoded.columns[encoded.columns.duplicated()].tolist()
        if repeated:
            raise ValueError(f"columns: indicator column(s) {repeated} already exist")
        return encoded

    def summarize(self, before, after, params):
        return {"indicators": _added_columns(before, after)}
