"""The step inspector's services: what a step's cached output holds, shown without
unpickling it or profiling it again.

When the engine writes a step's cache (`StepCache.save`), `write_sidecars` leaves beside
it a Parquet copy of each frame of the context and one JSON profile (per column: type,
nulls, distinct values, numbers' statistics and histogram, text's top values, dates'
range), and describes the other keys (the model's parameters, metrics, small values).
The record of those files, with their SHA-256, is signed with the cache's HMAC key.

The pages and the API read them through the functions below: `step_output` (the state
of the cache and what it holds), `data_page` (a page of a frame, sorted and filtered with
the `filter_rows` conditions), `csv_rows` (the same rows as CSV lines), `model_summary`
(from what the training step recorded) and `output_diff` (against the step before).
"""

import csv
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from django.utils.dateparse import parse_datetime
from pydantic import ValidationError

from pipelines.engine.cache import CacheRefused, SidecarMissing, StepCache
from pipelines.engine.runner import PlannedStep, plan_steps
from pipelines.services import StepFreshness, step_freshness
from pipelines.steps.preprocessing import Condition, Operator, _mask

SIDECAR_VERSION = 1
PAGE_SIZE = 50
ROW_GROUP_ROWS = 64 * 1024
HISTOGRAM_BINS = 20
TOP_VALUES = 5
MAX_PROFILED_COLUMNS = 500
MAX_VALUE_CHARS = 500
MAX_MAPPING_ITEMS = 200
CSV_CHUNK_ROWS = 50_000
CELL_CHARS = 200
OPERATORS: tuple[str, ...] = Operator.__args__  # the filter_rows step's operators
WORD_OPERATORS = ("not_in", "in", "contains", "is_null", "not_null")
SYMBOL_OPERATORS = (">=", "<=", "!=", "==", ">", "<", "=")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class InspectError(Exception):
    """The request names something the step's output does not have (e.g. a key)."""


# -- Written once, when the cache is written -----------------------------------------------


def write_sidecars(cache: StepCache, order: int, context: dict) -> dict:
    """Write the Parquet copies and the profile of a step's context; return their record."""
    keys, profiles = {}, {}
    for key, value in context.items():
        if key.startswith("_"):
            continue
        if isinstance(value, pd.DataFrame):
            keys[key] = _write_frame(cache, order, key, value)
            profiles[key] = profile_frame(value)
        else:
            keys[key] = describe_value(value)
    name = "profile.json"
    payload = json.dumps(profiles, default=_json_default, allow_nan=False).encode()
    digest = _atomic_write(cache.sidecar_path(order, name), payload)
    return {
        "version": SIDECAR_VERSION,
        "keys": keys,
        "profile": {"file": name, "sha256": digest},
    }


def _write_frame(cache: StepCache, order: int, key: str, frame: pd.DataFrame) -> dict:
    name = f"{_safe_name(key)}.parquet"
    entry = {
        "kind": "frame",
        "rows": len(frame),
        "columns": len(frame.columns),
        "memory": int(frame.memory_usage(deep=False).sum()),
    }
    try:
        table = pa.Table.from_pandas(_parquet_ready(frame), preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        return {**entry, "error": f"no columnar copy: {exc}"}
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, row_group_size=ROW_GROUP_ROWS, compression="snappy")
    digest = _atomic_write(cache.sidecar_path(order, name), buffer.getvalue().to_pybytes())
    return {**entry, "file": name, "sha256": digest}


def _parquet_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Column names as text; mixed object columns as text (Parquet wants one type)."""
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    mixed = [
        name
        for name, column in frame.items()
        if column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) == "mixed"
    ]
    if mixed:
        frame = frame.assign(**{c: frame[c].map(_text_or_none) for c in mixed})
    return frame


def _text_or_none(value):
    return None if _is_missing(value) else str(value)


def profile_frame(frame: pd.DataFrame) -> dict:
    """Shape and per-column statistics of a frame, bounded in size, as JSON-ready data."""
    rows = len(frame)
    columns = [
        profile_column(str(name), column, rows)
        for name, column in list(frame.items())[:MAX_PROFILED_COLUMNS]
    ]
    schema = {str(name): _kind(column) for name, column in frame.items()}
    dtypes = {str(name): str(column.dtype) for name, column in frame.items()}
    return {"rows": rows, "columns": columns, "schema": schema, "dtypes": dtypes}


def profile_column(name: str, column: pd.Series, rows: int) -> dict:
    kind = _kind(column)
    nulls = int(column.isna().sum())
    result = {
        "name": name,
        "dtype": str(column.dtype),
        "kind": kind,
        "nulls": nulls,
        "null_pct": 100.0 * nulls / rows if rows else 0.0,
        "distinct": _distinct(column),
    }
    present = column.dropna()
    if kind == "number":
        values = present.to_numpy(dtype=float, na_value=np.nan)
        values = values[np.isfinite(values)]
        if len(values):
            result.update(
                min=float(values.min()),
                mean=float(values.mean()),
                median=float(np.median(values)),
                max=float(values.max()),
                histogram=_histogram(values),
            )
    elif kind == "date":
        if len(present):
            result.update(first=present.min().isoformat(), last=present.max().isoformat())
    else:
        counts = present.astype(str).value_counts().head(TOP_VALUES)
        result["top"] = [
            {"value": _short(v, 80), "count": int(c), "pct": 100.0 * c / rows if rows else 0}
            for v, c in counts.items()
        ]
    return result


def _kind(column: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(column):
        return "bool"
    if pd.api.types.is_numeric_dtype(column):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(column):
        return "date"
    if isinstance(column.dtype, pd.CategoricalDtype):
        return "category"
    return "text"


def _distinct(column: pd.Series) -> int | None:
    try:
        return int(column.nunique(dropna=True))
    except TypeError:  # unhashable cells (lists, dicts)
        return None


def _histogram(values: np.ndarray) -> dict:
    low, high = float(values.min()), float(values.max())
    bins = 1 if low == high else HISTOGRAM_BINS
    counts, edges = np.histogram(values, bins=bins, range=(low, high) if bins > 1 else None)
    return {"counts": counts.tolist(), "edges": [float(e) for e in edges]}


def describe_value(value) -> dict:
    """What the inspector shows of a context key that is not a frame, recorded now so it
    never needs the pickle: a model's estimator and parameters, a mapping's items."""
    if hasattr(value, "get_params") and hasattr(value, "fit"):
        final = value[-1] if hasattr(value, "steps") else value
        return {
            "kind": "model",
            "estimator": type(final).__name__,
            "pipeline": [name for name, _ in getattr(value, "steps", [])],
            "params": {
                str(k): _short(v, 200) for k, v in sorted(final.get_params(deep=False).items())
            },
        }
    if isinstance(value, dict):
        items = list(value.items())
        return {
            "kind": "mapping",
            "length": len(items),
            "items": [[str(k), _plain(v)] for k, v in items[:MAX_MAPPING_ITEMS]],
        }
    return {"kind": "value", "type": type(value).__name__, "value": _plain(value)}


def _plain(value):
    if isinstance(value, bool | int | str) or value is None:
        return _short(value, MAX_VALUE_CHARS) if isinstance(value, str) else value
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, np.integer):
        return int(value)
    return _short(value, MAX_VALUE_CHARS)


def _short(value, limit: int) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return str(value)


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", key)[:60] or "frame"


def _atomic_write(target: Path, payload: bytes) -> str:
    import hashlib

    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(name, target)
    finally:
        Path(name).unlink(missing_ok=True)
    return hashlib.sha256(payload).hexdigest()


# -- Read when a page asks -----------------------------------------------------------------


@dataclass
class KeyInfo:
    name: str
    kind: str  # frame | model | mapping | value
    entry: dict


@dataclass
class StepOutput:
    """A step of a pipeline and what its cache holds, or why it cannot be shown."""

    pipeline: object
    order: int
    step: dict
    freshness: StepFreshness | None
    previous_order: int | None
    problem: str = ""
    problem_kind: str = ""  # never_run | stale | refused | old | broken
    meta: dict = field(default_factory=dict)
    keys: list[KeyInfo] = field(default_factory=list)
    profiles: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problem

    @property
    def label(self) -> str:
        return self.step.get("name") or self.step.get("type", "")

    @property
    def summary(self) -> dict:
        return self.meta.get("summary") or {}

    @property
    def written_at(self):
        return parse_datetime(self.meta.get("written_at") or "")

    def key(self, name: str | None) -> KeyInfo:
        """The key asked for; when none is, the model (what a training step is for), else
        the first frame, else the first key."""
        if not self.keys:
            raise InspectError("this step's output holds nothing to show")
        if not name:
            kinds = [k.kind for k in self.keys]
            found = "model" if "model" in kinds else "frame" if "frame" in kinds else None
            return next((k for k in self.keys if k.kind == found), self.keys[0])
        found = next((k for k in self.keys if k.name == name), None)
        if found is None:
            names = ", ".join(k.name for k in self.keys)
            raise InspectError(f"the output has no key {name!r}; it has {names}")
        return found


def step_output(pipeline, order: int, check_data: bool = True) -> StepOutput:
    """The state of a step's cache and, when it can be shown, its signed record and
    profiles. Raises LookupError when the pipeline has no enabled step `order`."""
    planned = _planned(pipeline, order)
    step, previous = planned
    freshness = next((f for f in step_freshness(pipeline) if f.order == order), None)
    output = StepOutput(pipeline, order, step.definition, freshness, previous)
    if freshness is not None and freshness.state != "fresh":
        output.problem_kind = freshness.state
        output.problem = (
            "This step has not been run since it was defined."
            if freshness.state == "never_run"
            else f"Its cached output is stale: {freshness.reason}."
        )
        return output
    cache = StepCache(pipeline.pk)
    try:
        meta = _inspection(cache, order, step.fingerprint, check_data)
    except SidecarMissing as exc:
        return _failed(output, "old", f"{as_sentence(exc)} Run up to this step to inspect it.")
    except CacheRefused as exc:
        return _failed(output, "refused", f"The cache was refused: {exc}.")
    record = meta["inspect"]
    output.meta = meta
    if record.get("error"):
        return _failed(output, "broken", f"The inspector's copy was not written: {record['error']}")
    output.keys = [KeyInfo(k, v.get("kind", "value"), v) for k, v in record["keys"].items()]
    try:
        output.profiles = _read_profiles(cache, order, record)
    except (CacheRefused, SidecarMissing) as exc:
        return _failed(output, "refused", f"The profile was refused: {exc}.")
    return output


def _inspection(cache: StepCache, order: int, fingerprint, check_data: bool) -> dict:
    """The step's signed inspector record; written now if the worker has not yet (or the
    cache predates the inspector), from the HMAC-checked cache."""
    try:
        return cache.inspection(order, fingerprint, check_data=check_data)
    except SidecarMissing:
        if not cache.add_inspection(order, fingerprint.digest):
            raise
    return cache.inspection(order, fingerprint, check_data=False)


def _planned(pipeline, order: int) -> tuple[PlannedStep, int | None]:
    try:
        steps = plan_steps(pipeline.definition())
    except Exception as exc:  # noqa: BLE001  (an invalid pipeline: nothing to inspect)
        raise LookupError(f"the pipeline is invalid: {exc}") from exc
    for index, step in enumerate(steps):
        if step.order == order:
            return step, (steps[index - 1].order if index else None)
    raise LookupError(f"the pipeline has no enabled step {order}")


def _failed(output: StepOutput, kind: str, message: str) -> StepOutput:
    output.problem_kind, output.problem = kind, message
    return output


def as_sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _read_profiles(cache: StepCache, order: int, record: dict) -> dict:
    profile = record["profile"]
    with cache.open_sidecar(order, profile["file"], profile["sha256"]) as handle:
        return json.load(handle)


# -- A page of a frame -----------------------------------------------------------------------


@dataclass
class DataPage:
    key: str
    columns: list[str]
    kinds: dict[str, str]
    rows: list[tuple[int, list]]  # (row number from 1, cells as text or None)
    page: int
    pages: int
    total: int  # rows matching the filter
    all_rows: int
    sort: str | None
    descending: bool
    conditions: list[dict]
    notes: list[str]
    page_size: int = PAGE_SIZE

    @property
    def first(self) -> int:
        return (self.page - 1) * self.page_size + 1 if self.total else 0

    @property
    def last(self) -> int:
        return min(self.page * self.page_size, self.total)

    @property
    def filters(self) -> list[str]:
        return [format_condition(c) for c in self.conditions]


def data_page(
    pipeline,
    order: int,
    key: str | None = None,
    page: int = 1,
    sort: str | None = None,
    descending: bool = False,
    conditions=(),
    output: StepOutput | None = None,
    page_size: int = PAGE_SIZE,
) -> DataPage:
    """A page of `page_size` rows of a frame of the step's output, sorted by a column and
    filtered by `filter_rows` conditions (dicts or texts like "amount>10"). Input that
    cannot be used (an unknown column, a malformed filter, a page past the end) is left
    out or corrected, with a note saying so."""
    output = output or step_output(pipeline, order)
    frame = _frame(output, key)
    profile = output.profiles.get(frame.name, {})
    kinds = profile.get("schema") or {}
    notes: list[str] = []
    sort = _checked_sort(sort, kinds, notes)
    valid = parse_conditions(conditions, kinds, notes)
    with _parquet(output, frame) as parquet:
        all_rows = parquet.metadata.num_rows
        positions = _positions(parquet, sort, descending, valid, notes)
        total = all_rows if positions is None else len(positions)
        pages = max(1, math.ceil(total / page_size))
        page = _checked_page(page, pages, notes)
        start, stop = (page - 1) * page_size, min(page * page_size, total)
        wanted = np.arange(start, stop) if positions is None else positions[start:stop]
        table = _take(parquet, wanted)
    columns = table.column_names
    cells = [_cells(table.column(c).to_pylist()) for c in columns]
    rows = [(int(p) + 1, [col[i] for col in cells]) for i, p in enumerate(wanted)]
    return DataPage(
        frame.name, columns, kinds, rows, page, pages, total, all_rows, sort, descending,
        valid, notes, page_size,
    )  # fmt: skip


def _frame(output: StepOutput, key: str | None) -> KeyInfo:
    if not output.ok:
        raise InspectError(output.problem)
    info = output.key(key)
    if info.kind != "frame":
        raise InspectError(f"{info.name!r} is not a table")
    if info.entry.get("error"):
        raise InspectError(f"{info.name!r} has {info.entry['error']}")
    return info


class _parquet:
    """The checked Parquet copy of a frame, open for reading."""

    def __init__(self, output: StepOutput, frame: KeyInfo):
        cache = StepCache(output.pipeline.pk)
        try:
            self.handle = cache.open_sidecar(
                output.order, frame.entry["file"], frame.entry["sha256"]
            )
        except (CacheRefused, SidecarMissing) as exc:
            raise InspectError(f"The columnar copy was refused: {exc}.") from exc

    def __enter__(self) -> pq.ParquetFile:
        self.file = pq.ParquetFile(self.handle)
        return self.file

    def __exit__(self, *exc_info):
        self.handle.close()


def _checked_sort(sort: str | None, kinds: dict, notes: list[str]) -> str | None:
    if not sort:
        return None
    if sort not in kinds:
        notes.append(f"There is no column {sort!r} to sort by; the rows are in their order.")
        return None
    return sort


def _checked_page(page, pages: int, notes: list[str]) -> int:
    try:
        page = int(page)
    except (TypeError, ValueError):
        notes.append(f"Page {page!r} is not a number; showing page 1.")
        return 1
    if page < 1:
        notes.append(f"There is no page {page}; showing page 1.")
        return 1
    if page > pages:
        notes.append(f"There is no page {page}: the last page is {pages}; showing it.")
        return pages
    return page


def _positions(parquet, sort, descending, conditions, notes) -> np.ndarray | None:
    """Row positions matching the conditions in the order asked; None for all in order.
    Reads only the columns the filter and the sort need."""
    needed = list(dict.fromkeys([c["column"] for c in conditions] + ([sort] if sort else [])))
    if not needed:
        return None
    frame = parquet.read(columns=needed).to_pandas()
    keep = _matching(frame, conditions, notes)
    positions = np.flatnonzero(keep) if keep is not None else np.arange(len(frame))
    if sort:
        values = frame[sort].iloc[positions]
        try:
            ordered = values.sort_values(ascending=not descending, kind="stable")
        except TypeError:
            ordered = values.astype(str).sort_values(ascending=not descending, kind="stable")
        positions = ordered.index.to_numpy()
    return positions


def _matching(frame: pd.DataFrame, conditions: list[dict], notes: list[str]):
    if not conditions:
        return None
    keep = np.ones(len(frame), dtype=bool)
    for condition in conditions:
        try:
            mask = _mask(frame[condition["column"]], Condition.model_validate(condition))
        except (ValueError, TypeError) as exc:
            notes.append(f"Filter {format_condition(condition)} was left out: {exc}")
            continue
        keep &= mask.fillna(False).to_numpy(dtype=bool)
    return keep


def _take(parquet: pq.ParquetFile, positions: np.ndarray, columns=None) -> pa.Table:
    """The rows at `positions` (in that order), reading only the row groups holding them."""
    positions = np.asarray(positions, dtype=np.int64)
    metadata = parquet.metadata
    sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    if not len(positions) or not sizes:
        return parquet.schema_arrow.empty_table().select(columns or parquet.schema_arrow.names)
    groups = np.searchsorted(starts, positions, side="right") - 1
    grouped = np.argsort(groups, kind="stable")
    pieces = []
    for group in np.unique(groups):
        local = positions[groups == group] - starts[group]
        pieces.append(parquet.read_row_group(int(group), columns=columns).take(local))
    table = pa.concat_tables(pieces)
    return table.take(np.argsort(grouped, kind="stable"))


def _cells(values: list) -> list:
    return [_cell(v) for v in values]


def _cell(value):
    if _is_missing(value):
        return None
    if isinstance(value, float):
        return f"{value:.6g}"
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat()
    text = str(value)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def _is_missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# -- Filters: the conditions of filter_rows ------------------------------------------------

_WORD = re.compile(
    r"^\s*(?P<column>.+?)\s+(?P<op>" + "|".join(WORD_OPERATORS) + r")\b\s*(?P<value>.*)$"
)
_SYMBOL = re.compile(
    r"^\s*(?P<column>.+?)\s*(?P<op>"
    + "|".join(map(re.escape, SYMBOL_OPERATORS))
    + r")\s*(?P<value>.*)$"
)


class FilterError(ValueError):
    pass


def parse_conditions(conditions, kinds: dict[str, str], notes: list[str]) -> list[dict]:
    """The usable conditions among texts ("amount>10", "city in Oslo,Paris", "x is_null")
    and dicts ({column, op, value}), with values read as their column's type; a note
    for each one left out."""
    valid = []
    for condition in conditions or ():
        try:
            parsed = (
                parse_filter(condition, kinds)
                if isinstance(condition, str)
                else _checked(condition, kinds)
            )
        except FilterError as exc:
            notes.append(str(exc))
            continue
        valid.append(parsed)
    return valid


def parse_filter(text: str, kinds: dict[str, str]) -> dict:
    """One filter text as a condition: `column op value`, op being one of filter_rows'."""
    match = _WORD.match(text) or _SYMBOL.match(text)
    if not match:
        raise FilterError(
            f"Filter {text!r} was not understood: write it as column, operator and value, "
            f"e.g. amount>10 or city in Oslo,Paris (operators: {', '.join(OPERATORS)})."
        )
    op = "==" if match["op"] == "=" else match["op"]
    value = match["value"].strip()
    if op in ("in", "not_in"):
        value = [v.strip() for v in value.split(",") if v.strip()]
    return _checked({"column": match["column"].strip(), "op": op, "value": value}, kinds, text)


def _checked(condition, kinds: dict[str, str], text: str | None = None) -> dict:
    if not isinstance(condition, dict):
        raise FilterError(f"Filter {condition!r} is neither a text nor a condition.")
    shown = text or format_condition(condition)
    column, op = condition.get("column"), condition.get("op")
    if column not in kinds:
        raise FilterError(f"Filter {shown!r} names no column of this table ({column!r}).")
    if op not in OPERATORS:
        raise FilterError(
            f"Filter {shown!r} has an unknown operator {op!r}; use one of {', '.join(OPERATORS)}."
        )
    value = condition.get("value")
    if op in ("is_null", "not_null"):
        value = None
    elif value in (None, "", []):
        raise FilterError(f"Filter {shown!r} needs a value.")
    elif op != "contains":
        try:
            value = (
                [_typed(v, kinds[column]) for v in value]
                if isinstance(value, list)
                else _typed(value, kinds[column])
            )
        except (ValueError, TypeError):
            raise FilterError(
                f"Filter {shown!r}: {value!r} is not a value of column {column!r} "
                f"({kinds[column]})."
            ) from None
    try:
        parsed = Condition.model_validate({"column": column, "op": op, "value": value})
    except ValidationError as exc:
        raise FilterError(f"Filter {shown!r}: {exc.errors()[0]['msg']}.") from None
    return parsed.model_dump()


def _typed(value, kind: str):
    if not isinstance(value, str):
        return value
    if kind == "number":
        number = float(value)
        return (
            int(number)
            if number.is_integer() and "." not in value and "e" not in value.lower()
            else number
        )
    if kind == "bool":
        lowered = value.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise ValueError(value)
        return lowered in ("true", "1")
    if kind == "date":
        return pd.Timestamp(value)
    return value


def format_condition(condition: dict) -> str:
    """A condition as the text `parse_filter` reads back."""
    op, value = condition.get("op"), condition.get("value")
    column = condition.get("column")
    if op in ("is_null", "not_null"):
        return f"{column} {op}"
    values = value if isinstance(value, list) else [value]
    value = ",".join(map(_filter_value, values))
    return f"{column} {op} {value}" if op in WORD_OPERATORS else f"{column}{op}{value}"


def _filter_value(value) -> str:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


# -- CSV -------------------------------------------------------------------------------------


def csv_rows(
    pipeline, order: int, key=None, sort=None, descending=False, conditions=(), output=None
) -> Iterator[str]:
    """The rows of a frame matching the filter, in the order asked, as CSV text: a header
    line, then chunks of lines. Cells that a spreadsheet would run as a formula (starting
    with = + - @, a tab or a carriage return) are prefixed with '."""
    output = output or step_output(pipeline, order)
    frame = _frame(output, key)
    kinds = output.profiles.get(frame.name, {}).get("schema") or {}
    notes: list[str] = []
    sort = _checked_sort(sort, kinds, notes)
    valid = parse_conditions(conditions, kinds, notes)
    parquet_file = _parquet(output, frame)  # checked now, before the response starts

    def lines() -> Iterator[str]:
        with parquet_file as parquet:
            yield _csv_text([[_escaped(name) for name in parquet.schema_arrow.names]])
            if sort:
                positions = _positions(parquet, sort, descending, valid, [])
                table = parquet.read()
                for start in range(0, len(positions), CSV_CHUNK_ROWS):
                    yield _csv_chunk(table.take(positions[start : start + CSV_CHUNK_ROWS]))
                return
            for group in range(parquet.metadata.num_row_groups):
                table = parquet.read_row_group(group)
                if valid:
                    keep = _matching(table.select(_columns_of(valid)).to_pandas(), valid, [])
                    table = table.filter(pa.array(keep))
                if table.num_rows:
                    yield _csv_chunk(table)

    return lines()


def _columns_of(conditions: list[dict]) -> list[str]:
    return list(dict.fromkeys(c["column"] for c in conditions))


def _csv_chunk(table: pa.Table) -> str:
    columns = [_csv_column(table.column(i)) for i in range(table.num_columns)]
    return _csv_text(zip(*columns, strict=True))


def _csv_column(column: pa.ChunkedArray) -> list:
    values = column.to_pylist()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return [_escaped(v) for v in values]
    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
        return ["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
    return [_escaped(None if _is_missing(v) else str(v)) for v in values]


def _escaped(value):
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def _csv_text(rows) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


# -- Model summary -----------------------------------------------------------------------------


@dataclass
class ModelSummary:
    estimator: str
    task: str
    pipeline: list[str]
    params: dict
    hyperparams: dict
    facts: list[tuple[str, object]]
    metrics: dict
    importance: dict | None = None  # {"labels": [...], "values": [...]}
    confusion: dict | None = None  # labels, rows of cells with shade, per-class metrics
    residuals: dict | None = None
    clusters: dict | None = None
    variance: dict | None = None
    horizons: list[dict] | None = None
    horizon_chart: dict | None = None


def model_summary(pipeline, order: int, output: StepOutput | None = None) -> ModelSummary | None:
    """What the training step recorded about its model (in the signed cache record):
    no model is loaded and nothing is trained again. None when the step has no model."""
    output = output or step_output(pipeline, order)
    if not output.ok:
        raise InspectError(output.problem)
    model = next((k.entry for k in output.keys if k.kind == "model"), None)
    summary = output.summary
    if model is None:
        return None
    metrics = summary.get("metrics") or {}
    facts = [
        (label, summary[name])
        for name, label in (
            ("task", "Task"),
            ("train_rows", "Training rows"),
            ("test_rows", "Held-out rows"),
            ("forecast_rows", "Forecast rows"),
            ("components", "Components"),
        )
        if summary.get(name) is not None
    ]
    if summary.get("features"):
        facts.append(("Features", len(summary["features"])))
    result = ModelSummary(
        estimator=summary.get("estimator") or model.get("estimator", ""),
        task=summary.get("task", ""),
        pipeline=model.get("pipeline", []),
        params=model.get("params", {}),
        hyperparams=summary.get("hyperparams") or {},
        facts=facts,
        metrics={k: v for k, v in metrics.items() if not _HORIZON_METRIC.match(k)},
    )
    if summary.get("feature_importance"):
        rows = summary["feature_importance"]
        result.importance = _chart(
            [r["feature"] for r in rows], [r["importance"] for r in rows], "Feature", "Importance"
        )
    if summary.get("confusion_matrix"):
        result.confusion = _confusion(summary["confusion_matrix"])
    if summary.get("residuals"):
        residuals = summary["residuals"]
        quantiles = residuals.get("quantiles") or {}
        result.residuals = {
            **residuals,
            "chart": _chart(
                [f"{float(q):.0%}" for q in quantiles],
                list(quantiles.values()),
                "Quantile of held-out rows",
                "Residual (actual − predicted)",
            ),
        }
    if summary.get("cluster_sizes"):
        sizes = summary["cluster_sizes"]
        result.clusters = _chart(list(sizes), list(sizes.values()), "Cluster", "Rows")
    ratios = {
        k.removeprefix("explained_variance_ratio_"): v
        for k, v in metrics.items()
        if k.startswith("explained_variance_ratio_") and not k.endswith("_total")
    }
    if ratios:
        result.variance = _chart(
            list(ratios), list(ratios.values()), "Component", "Explained variance ratio"
        )
    horizons = _horizons(metrics)
    if horizons:
        result.horizons = horizons
        first = next(m for m in ("rmse", "mae", "mape") if m in horizons[0])
        result.horizon_chart = _chart(
            [h["horizon"] for h in horizons], [h.get(first) for h in horizons], "Horizon", first
        )
    return result


_HORIZON_METRIC = re.compile(r"^(rmse|mae|mape)_(.+)$")


def _horizons(metrics: dict) -> list[dict]:
    rows: dict[str, dict] = {}
    for name, value in metrics.items():
        if match := _HORIZON_METRIC.match(name):
            rows.setdefault(match[2], {"horizon": match[2]})[match[1]] = value
    return list(rows.values())


def _chart(labels, values, x_title: str, y_title: str) -> dict:
    return {
        "labels": [str(label) for label in labels],
        "values": [float(v) if v is not None else None for v in values],
        "x": x_title,
        "y": y_title,
    }


def _confusion(recorded: dict) -> dict:
    labels, matrix = recorded["labels"], np.asarray(recorded["matrix"], dtype=float)
    peak = matrix.max() if matrix.size else 0
    rows = [
        {
            "label": label,
            "cells": [
                {
                    "count": int(count),
                    "shade": int(round(8 * count / peak)) if peak else 0,
                    "correct": i == j,
                }
                for j, count in enumerate(matrix[i])
            ],
        }
        for i, label in enumerate(labels)
    ]
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    per_class = []
    for i, label in enumerate(labels):
        hit = matrix[i, i]
        precision = hit / predicted[i] if predicted[i] else None
        recall = hit / actual[i] if actual[i] else None
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision is not None and recall is not None and precision + recall
            else None
        )
        per_class.append(
            {
                "label": label,
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "support": int(actual[i]),
            }
        )
    return {"labels": labels, "rows": rows, "per_class": per_class}


# -- Difference with the step before ---------------------------------------------------------


@dataclass
class OutputDiff:
    previous_order: int | None
    previous_label: str = ""
    rows_before: int | None = None
    rows_after: int | None = None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retyped: list[tuple[str, str, str]] = field(default_factory=list)
    problem: str = ""

    @property
    def rows_change(self) -> int | None:
        if self.rows_before is None or self.rows_after is None:
            return None
        return self.rows_after - self.rows_before

    @property
    def rows_removed(self) -> int:
        change = self.rows_change
        return -change if change and change < 0 else 0

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.removed or self.retyped or self.rows_change)


def output_diff(pipeline, order: int, key: str | None = None, output=None) -> OutputDiff:
    """How a frame of this step's output differs from the step before's `data`: columns
    added, removed and retyped, rows before and after. From the two profiles only."""
    output = output or step_output(pipeline, order)
    frame = _frame(output, key)
    diff = OutputDiff(output.previous_order)
    if output.previous_order is None:
        diff.problem = "This is the first step: there is no output before it to compare with."
        return diff
    before = step_output(pipeline, output.previous_order, check_data=False)
    diff.previous_label = before.label
    if not before.ok:
        diff.problem = f"Step {output.previous_order} cannot be compared: {before.problem}"
        return diff
    previous = before.profiles.get("data") or before.profiles.get(frame.name)
    if previous is None:
        diff.problem = f"Step {output.previous_order} passed on no table to compare with."
        return diff
    after = output.profiles.get(frame.name, {})
    old, new = previous.get("dtypes", {}), after.get("dtypes", {})
    diff.rows_before, diff.rows_after = previous.get("rows"), after.get("rows")
    diff.added = [c for c in new if c not in old]
    diff.removed = [c for c in old if c not in new]
    diff.retyped = [(c, old[c], new[c]) for c in new if c in old and old[c] != new[c]]
    return diff
