"""Server-side chart aggregation: validate a chart spec against its source, aggregate, bound.

Public surface used by the dashboard pages: ``source_columns``, ``chart_data``,
``chart_csv_rows``, the ``ChartSource`` / ``ChartSpec`` / ``ChartData`` dataclasses and
``ChartInvalid``.

Every source is read as one Parquet file, written once per source version, and DuckDB
aggregates over it; the browser gets at most ``settings.MLOPS_CHART_MAX_POINTS`` points.

* dataset: a Parquet dataset's own file; a CSV or Excel one is converted once (read as
  ``datasources.services.read_dataset`` reads it, ISO date texts as dates) to
  ``MLOPS_CACHE_DIR/charts/<checksum>.parquet``. Version: the checksum.
* predictions: the ``predictions`` frame of the pipeline's latest successful run, from
  the Parquet copy the inspector keeps beside its predict step's cache, used only while
  that cache's fingerprint is the one the run's StepRun recorded (its SHA-256 checked);
  once a later run rewrote it, a dataset version the same run saved its predictions to
  (RunOutput with a model URI). Otherwise the chart says to run the pipeline again:
  predictions are never recomputed for a chart. Version: run id + the file's SHA-256.
* table: a table a ``save_table`` step wrote (a RunOutput names it; nothing else can be
  read), read once through the data source's connector (``preview``: read-only account
  checks, at most TABLE_SOURCE_ROWS rows). Version: the last RunOutput that wrote it, so
  writes made outside the platform show after the next save_table run.

Results are cached (Django cache) by source version and chart options.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings
from django.core.cache import cache

from dashboards.lttb import lttb_indices

CHART_KINDS = ("line", "bar", "area", "scatter", "pie", "heatmap", "kpi", "table")
AGGREGATIONS = ("count", "sum", "mean", "median", "min", "max", "distinct_count")
TIME_GRAINS = ("hour", "day", "week", "month")


@dataclass(frozen=True)
class ChartSource:
    """What a chart reads: a dataset version, a pipeline's predictions, or a saved table."""

    kind: str  # "dataset" | "predictions" | "table"
    dataset: str = ""  # dataset name (kind=dataset)
    dataset_version: int | None = None  # None: always the latest version
    pipeline_id: int | None = None  # kind=predictions: latest successful run's predictions
    datasource: str = ""  # kind=table: data source name ...
    table: str = ""  # ... and a table written by save_table


@dataclass(frozen=True)
class ChartSpec:
    """The chart options a user picks in the editing form."""

    kind: str
    x: str = ""
    y: tuple[str, ...] = ()
    aggregation: str = "count"
    time_grain: str = ""  # for date/datetime x
    group_by: str = ""  # series
    filters: tuple[str, ...] = ()  # filter texts like "amount > 10"
    sort: str = ""  # "", "x", "-x", "y", "-y"
    limit: int | None = None
    stacked: bool = False


class ChartInvalid(ValueError):
    """Bad chart options or an unreadable source; ``errors`` maps form field -> message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclass
class ChartData:
    """What the browser receives: bounded labels and series, or a KPI value, or table rows."""

    labels: list
    series: list[dict]  # [{"name": str, "values": list[float | None]}]
    value: float | None = None  # kind=kpi
    columns: list[str] = field(default_factory=list)  # kind=table
    rows: list[list] = field(default_factory=list)  # kind=table (bounded)
    points: int = 0  # points sent
    downsampled: bool = False
    source_version: str = ""  # what the cache is keyed by (dataset checksum, run id, ...)


SORTS = ("", "x", "-x", "y", "-y")
NUMERIC_AGGREGATIONS = ("sum", "mean", "median", "min", "max")
MAX_LIMIT = 10_000
MAX_SERIES = 50
MAX_Y = 10
TABLE_MAX_ROWS = 1_000
TABLE_SOURCE_ROWS = 1_000_000
CACHE_SECONDS = 24 * 3600
# Bump when what the engine returns for the same options changes: old entries then miss.
ENGINE_VERSION = "1"
_SQL_AGGREGATES = {
    "sum": "sum({})",
    "mean": "avg({})",
    "median": "median({})",
    "min": "min({})",
    "max": "max({})",
    "distinct_count": "count(DISTINCT {})",
    "count": "count({})",
}
# Column kinds as the inspector's filter parser names them.
_FILTER_KINDS = {"number": "number", "datetime": "date", "boolean": "bool", "text": "text"}
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"


def source_columns(source: ChartSource) -> dict[str, str]:
    """Column -> "number" | "datetime" | "text" | "boolean"; ChartInvalid({"source": ...})."""
    return _kinds(_resolve(source).path)


def chart_data(source: ChartSource, spec: ChartSpec) -> ChartData:
    """Validate ``spec`` against ``source``, aggregate on the server, bound and cache it."""
    resolved = _resolve(source)
    kinds = _kinds(resolved.path)
    conditions = validate_spec(spec, kinds)
    key = _cache_key(resolved.version, spec)
    cached = cache.get(key)
    if cached is not None:
        return ChartData(**cached)
    data = _compute(resolved.path, spec, kinds, conditions)
    data.source_version = resolved.version
    cache.set(key, asdict(data), CACHE_SECONDS)
    return data


def chart_csv_rows(data: ChartData) -> list[list]:
    """Header + rows of what the chart shows (the pages escape formulas)."""
    if data.columns:
        return [list(data.columns), *[list(row) for row in data.rows]]
    if not data.series:
        return [["value"], [data.value]]
    header = ["x", *[series["name"] for series in data.series]]
    values = [series["values"] for series in data.series]
    return [header, *[[label, *[v[i] for v in values]] for i, label in enumerate(data.labels)]]


# -- Validation -------------------------------------------------------------------------------


def validate_spec(spec: ChartSpec, kinds: dict[str, str]) -> list[dict]:
    """The spec's filter conditions, parsed; ChartInvalid naming each bad field."""
    errors: dict[str, str] = {}
    if spec.kind not in CHART_KINDS:
        errors["kind"] = f"Unknown chart type {spec.kind!r}; use one of {', '.join(CHART_KINDS)}."
    if spec.aggregation not in AGGREGATIONS:
        errors["aggregation"] = (
            f"Unknown aggregation {spec.aggregation!r}; use one of {', '.join(AGGREGATIONS)}."
        )
    for name, check in (
        ("x", _x_error),
        ("y", _y_error),
        ("time_grain", _grain_error),
        ("group_by", _group_error),
        ("sort", _sort_error),
        ("limit", _limit_error),
    ):
        if name not in errors and (message := check(spec, kinds)):
            errors[name] = message
    conditions, problems = _conditions(spec.filters, kinds)
    if problems:
        errors["filters"] = " ".join(problems)
    if errors:
        raise ChartInvalid(errors)
    return conditions


def _x_error(spec: ChartSpec, kinds: dict) -> str:
    if not spec.x:
        if spec.kind in ("kpi", "table"):
            return ""
        return "Choose the column for the x axis."
    if spec.x not in kinds:
        return f"The source has no column {spec.x!r}."
    if spec.kind == "kpi":
        return "A KPI is one number: leave x empty."
    if spec.kind == "scatter" and kinds[spec.x] not in ("number", "datetime"):
        return f"A scatter plot needs a number or date x; {spec.x!r} is {kinds[spec.x]}."
    return ""


def _y_error(spec: ChartSpec, kinds: dict) -> str:
    unknown = [c for c in spec.y if c not in kinds]
    if unknown:
        return f"The source has no column {unknown[0]!r}."
    if len(spec.y) > MAX_Y:
        return f"Choose at most {MAX_Y} y columns."
    if len(set(spec.y)) != len(spec.y):
        return "A y column is chosen twice."
    needs_numbers = spec.kind == "scatter" or spec.aggregation in NUMERIC_AGGREGATIONS
    if not spec.y and (needs_numbers or spec.aggregation == "distinct_count"):
        verb = "plot" if spec.kind == "scatter" else spec.aggregation.replace("_", " ")
        return f"Choose the column(s) to {verb}."
    if spec.kind in ("heatmap", "pie", "kpi") and len(spec.y) > 1:
        return f"A {spec.kind} shows one value: choose one y column."
    if spec.kind == "table" and not spec.x:
        return ""  # raw rows: y picks the columns shown, of any type
    if needs_numbers:
        wrong = [c for c in spec.y if kinds[c] != "number"]
        if wrong:
            what = "plotted" if spec.kind == "scatter" else f"used with {spec.aggregation}"
            return (
                f"Column {wrong[0]!r} is {kinds[wrong[0]]}, not a number: it cannot be {what}. "
                "Choose a number column, or count / distinct count."
            )
    return ""


def _grain_error(spec: ChartSpec, kinds: dict) -> str:
    if not spec.time_grain:
        return ""
    if spec.time_grain not in TIME_GRAINS:
        return f"Unknown time grain {spec.time_grain!r}; use one of {', '.join(TIME_GRAINS)}."
    if spec.kind == "scatter":
        return "A scatter plot shows rows as they are: leave the time grain empty."
    if not spec.x or kinds.get(spec.x) != "datetime":
        shown = f"{spec.x!r} is {kinds[spec.x]}" if spec.x in kinds else "x is not a column"
        return f"A time grain needs a date or datetime x; {shown}."
    return ""


def _group_error(spec: ChartSpec, kinds: dict) -> str:
    if not spec.group_by:
        return "A heat map needs a group by column (its rows)." if spec.kind == "heatmap" else ""
    if spec.group_by not in kinds:
        return f"The source has no column {spec.group_by!r}."
    if spec.kind in ("pie", "kpi"):
        return f"A {spec.kind} has one series: leave group by empty."
    if spec.kind == "table" and not spec.x:
        return "Group by needs an x column in a table."
    if spec.group_by == spec.x:
        return "Group by the same column as x gives one value per row: choose another column."
    return ""


def _sort_error(spec: ChartSpec, kinds: dict) -> str:
    if spec.sort not in SORTS:
        return f"Unknown sort {spec.sort!r}; use x, -x, y or -y (or nothing)."
    if spec.sort.lstrip("-") == "y" and spec.kind == "table" and not spec.x and not spec.y:
        return "Sort by y needs a y column."
    return ""


def _limit_error(spec: ChartSpec, kinds: dict) -> str:
    limit = spec.limit
    if limit is None:
        return ""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        return f"The limit must be a whole number from 1 to {MAX_LIMIT:,}; got {limit!r}."
    return ""


def _conditions(filters, kinds: dict[str, str]) -> tuple[list[dict], list[str]]:
    from pipelines.inspector import FilterError, parse_filter

    parser_kinds = {name: _FILTER_KINDS[kind] for name, kind in kinds.items()}
    conditions, problems = [], []
    for text in filters:
        try:
            conditions.append(parse_filter(str(text), parser_kinds))
        except FilterError as exc:
            problems.append(str(exc))
    return conditions, problems


# -- Sources ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Resolved:
    path: Path
    version: str


def _resolve(source: ChartSource) -> _Resolved:
    if source.kind == "dataset":
        return _dataset_source(source)
    if source.kind == "predictions":
        return _predictions_source(source)
    if source.kind == "table":
        return _table_source(source)
    raise ChartInvalid({"source": f"Unknown source kind {source.kind!r}."})


def _dataset_source(source: ChartSource) -> _Resolved:
    from datasources.models import Dataset

    if not source.dataset:
        raise ChartInvalid({"source": "Choose a dataset."})
    versions = Dataset.objects.filter(name=source.dataset)
    if source.dataset_version is not None:
        dataset = versions.filter(version=source.dataset_version).first()
    else:
        dataset = versions.order_by("-version").first()
    if dataset is None:
        pinned = f" version {source.dataset_version}" if source.dataset_version else ""
        raise ChartInvalid({"source": f"There is no dataset {source.dataset!r}{pinned}."})
    return _Resolved(_dataset_parquet(dataset), f"dataset:{dataset.checksum}")


def _dataset_parquet(dataset) -> Path:
    """A Parquet file of the dataset: its own file, or a copy written once."""
    from datasources.models import DatasetFormat
    from datasources.services import read_dataset

    if dataset.format == DatasetFormat.PARQUET:
        return Path(dataset.file.path)
    target = _charts_dir() / f"{dataset.checksum}.parquet"
    if not target.exists():
        try:
            frame = read_dataset(dataset)
        except (OSError, ValueError) as exc:
            raise ChartInvalid({"source": f"Dataset {dataset} cannot be read: {exc}"}) from None
        _write_parquet(target, _dates_from_text(frame))
    return target


def _predictions_source(source: ChartSource) -> _Resolved:
    from pipelines.models import PipelineRun, RunStatus

    run = (
        PipelineRun.objects.filter(pipeline_id=source.pipeline_id, status=RunStatus.SUCCEEDED)
        .order_by("-finished_at", "-pk")
        .first()
    )
    if run is None:
        raise ChartInvalid(
            {"source": "This pipeline has no successful run yet: run it to chart its predictions."}
        )
    found = _cached_predictions(run) or _saved_predictions(run)
    if found is None:
        raise ChartInvalid(
            {
                "source": f"The predictions of run #{run.pk} are no longer available: a later "
                "run rewrote the step cache and the run saved none to a dataset. Run the "
                "pipeline again (or save its predictions with save_dataset)."
            }
        )
    return found


def _cached_predictions(run) -> _Resolved | None:
    """The inspector's Parquet copy of the predict step's `predictions`, while the step's
    cache is still the one this run wrote or reused."""
    from pipelines.engine.cache import CacheRefused, SidecarMissing, StepCache

    step_run = _predict_step_run(run)
    if step_run is None or not step_run.fingerprint:
        return None
    step_cache, order = StepCache(run.pipeline_id), step_run.order
    recorded = _RecordedFingerprint(step_run.fingerprint)
    try:
        try:
            meta = step_cache.inspection(order, recorded)
        except SidecarMissing:
            if not step_cache.add_inspection(order, recorded.digest):
                return None
            meta = step_cache.inspection(order, recorded, check_data=False)
        entry = meta["inspect"]["keys"].get("predictions") or {}
        if entry.get("kind") != "frame" or not entry.get("file"):
            return None
        target = _charts_dir() / f"predictions-{entry['sha256']}.parquet"
        if not target.exists():
            with step_cache.open_sidecar(order, entry["file"], entry["sha256"]) as handle:
                _atomic_copy(handle, target)
    except (CacheRefused, SidecarMissing, KeyError):
        return None
    return _Resolved(target, f"run:{run.pk}:{entry['sha256']}")


def _predict_step_run(run):
    from pipelines.engine.registry import STEP_TYPES
    from pipelines.models import StepRunStatus

    done = (StepRunStatus.SUCCEEDED, StepRunStatus.REUSED)
    steps = run.step_runs.filter(status__in=done).order_by("-order")
    for step_run in steps:
        step_type = STEP_TYPES.get(step_run.step_type)
        if step_type is not None and "predictions" in step_type.produces:
            return step_run
    return None


@dataclass(frozen=True)
class _RecordedFingerprint:
    """The fingerprint a StepRun recorded, for StepCache's freshness check."""

    digest: str

    def why_different(self, recorded: dict) -> str:
        return "a later run rewrote it"


def _saved_predictions(run) -> _Resolved | None:
    """A dataset version the run saved its predictions to (save_dataset, source=predictions)."""
    output = (
        run.outputs.filter(kind="dataset", dataset__isnull=False)
        .exclude(model_uri="")
        .select_related("dataset")
        .order_by("-step_order", "-pk")
        .first()
    )
    if output is None:
        return None
    return _Resolved(_dataset_parquet(output.dataset), f"run:{run.pk}:{output.dataset.checksum}")


def _table_source(source: ChartSource) -> _Resolved:
    from datasources.connectors.base import ConnectorError
    from datasources.models import DataSource
    from pipelines.models import RunOutput

    datasource = DataSource.objects.filter(name=source.datasource).first()
    if datasource is None:
        raise ChartInvalid({"source": f"There is no data source {source.datasource!r}."})
    written = (
        RunOutput.objects.filter(kind="table", datasource=datasource.name, table=source.table)
        .order_by("-created_at", "-pk")
        .first()
    )
    if written is None:
        raise ChartInvalid(
            {
                "source": f"No run wrote a table {source.table!r} to {datasource.name}: charts "
                "read only tables written by save_table."
            }
        )
    key = hashlib.sha256(f"{datasource.pk}:{source.table}:{written.pk}".encode()).hexdigest()
    target = _charts_dir() / f"table-{key}.parquet"
    if not target.exists():
        try:
            frame = datasource.connector().preview(source.table, n=TABLE_SOURCE_ROWS)
        except (ConnectorError, OSError, ValueError) as exc:
            raise ChartInvalid(
                {"source": f"Table {source.table!r} cannot be read: {exc}"}
            ) from None
        _write_parquet(target, _dates_from_text(frame))
    return _Resolved(target, f"table:{written.pk}")


# -- Parquet files ----------------------------------------------------------------------------


def _charts_dir() -> Path:
    directory = Path(settings.MLOPS_CACHE_DIR) / "charts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _dates_from_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns whose every value is an ISO date or datetime, as datetimes: a CSV has
    no date type, and a time grain needs one."""
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    for name in frame.columns:
        column = frame[name]
        if not (pd.api.types.is_string_dtype(column.dtype) or column.dtype == object):
            continue
        values = column.dropna()
        if values.empty or not values.astype(str).str.fullmatch(_ISO_DATE).all():
            continue
        try:
            frame[name] = pd.to_datetime(column, format="ISO8601")
        except (ValueError, TypeError):
            continue
        if isinstance(frame[name].dtype, pd.DatetimeTZDtype):
            frame[name] = frame[name].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


def _write_parquet(target: Path, frame: pd.DataFrame) -> None:
    mixed = [
        name
        for name, column in frame.items()
        if column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) == "mixed"
    ]
    if mixed:
        frame = frame.assign(
            **{c: frame[c].map(lambda v: None if _missing(v) else str(v)) for c in mixed}
        )
    table = pa.Table.from_pandas(frame, preserve_index=False)
    temp = _temp_beside(target)
    try:
        pq.write_table(table, temp, compression="zstd")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _atomic_copy(handle, target: Path) -> None:
    temp = _temp_beside(target)
    try:
        with open(temp, "wb") as out:
            while chunk := handle.read(1024 * 1024):
                out.write(chunk)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _temp_beside(target: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


# Column kinds by file: the files never change once written.
_KINDS: dict[tuple, dict[str, str]] = {}


def _kinds(path: Path) -> dict[str, str]:
    try:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in _KINDS:
            schema = pq.read_schema(path)
            _KINDS[key] = {
                f.name: _kind(f.type) for f in schema if not f.name.startswith("__index_level_")
            }
    except (OSError, pa.ArrowException) as exc:
        raise ChartInvalid({"source": f"The source cannot be read: {exc}"}) from None
    return dict(_KINDS[key])


def _kind(arrow_type) -> str:
    if pa.types.is_dictionary(arrow_type):
        return _kind(arrow_type.value_type)
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return "number"
    if pa.types.is_decimal(arrow_type):
        return "number"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "datetime"
    return "text"


def _cache_key(version: str, spec: ChartSpec) -> str:
    options = {
        "engine": ENGINE_VERSION,
        "version": version,
        "spec": asdict(spec),
        "max_points": settings.MLOPS_CHART_MAX_POINTS,
    }
    encoded = json.dumps(options, sort_keys=True, default=str).encode()
    return "dashboards.chart:" + hashlib.sha256(encoded).hexdigest()


# -- DuckDB -----------------------------------------------------------------------------------

_local = threading.local()


def _connection():
    """This thread's DuckDB connection (a forked worker opens its own)."""
    if getattr(_local, "pid", None) != os.getpid():
        connection = duckdb.connect(config={"memory_limit": "512MB"})
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute("SET enable_object_cache = true")
        _local.connection, _local.pid = connection, os.getpid()
    return _local.connection


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _from(path: Path) -> str:
    return "read_parquet('" + str(path).replace("'", "''") + "')"


def _where(conditions: list[dict], extra: tuple[str, ...] = ()) -> tuple[str, list]:
    clauses, params = list(extra), []
    for condition in conditions:
        clause, values = _condition_sql(condition)
        clauses.append(clause)
        params.extend(values)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _condition_sql(condition: dict) -> tuple[str, list]:
    """A filter_rows condition as SQL with filter_rows' handling of missing values: only
    != and not_in keep rows whose value is missing."""
    column, op, value = _quote(condition["column"]), condition["op"], condition["value"]
    if op == "is_null":
        return f"{column} IS NULL", []
    if op == "not_null":
        return f"{column} IS NOT NULL", []
    if op == "contains":
        return f"contains(CAST({column} AS VARCHAR), ?)", [str(value)]
    if op in ("in", "not_in"):
        values = [_param(v) for v in value]
        marks = ", ".join("?" for _ in values)
        if op == "in":
            return f"{column} IN ({marks})", values
        return f"({column} NOT IN ({marks}) OR {column} IS NULL)", values
    if op == "!=":
        return f"{column} IS DISTINCT FROM ?", [_param(value)]
    return f"{column} {'=' if op == '==' else op} ?", [_param(value)]


def _param(value):
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


def _query(sql: str, params: list) -> pd.DataFrame:
    return _connection().execute(sql, params).df()


# -- Aggregation ------------------------------------------------------------------------------


def _compute(path: Path, spec: ChartSpec, kinds: dict, conditions: list[dict]) -> ChartData:
    if spec.kind == "kpi":
        return _kpi(path, spec, conditions)
    if spec.kind == "table" and not spec.x:
        return _raw_table(path, spec, kinds, conditions)
    if spec.kind == "scatter":
        return _scatter(path, spec, kinds, conditions)
    data = _grouped(path, spec, kinds, conditions)
    if spec.kind == "table":
        return _as_table(data, spec)
    return data


def _aggregate_sql(spec: ChartSpec) -> list[tuple[str, str]]:
    """(series name, SQL expression) of each value the chart shows."""
    if not spec.y:
        return [("count", "count(*)")]
    template = _SQL_AGGREGATES[spec.aggregation]
    return [(column, template.format(_quote(column))) for column in spec.y]


def _kpi(path: Path, spec: ChartSpec, conditions: list[dict]) -> ChartData:
    (_name, expression), *_ = _aggregate_sql(spec)
    where, params = _where(conditions)
    frame = _query(f"SELECT {expression} AS v FROM {_from(path)}{where}", params)
    return ChartData(labels=[], series=[], value=_number(frame["v"].iloc[0]), points=1)


def _grouped(path: Path, spec: ChartSpec, kinds: dict, conditions: list[dict]) -> ChartData:
    x = _quote(spec.x)
    x_sql = f"date_trunc('{spec.time_grain}', {x})" if spec.time_grain else x
    values = _aggregate_sql(spec)
    selected = [f"{x_sql} AS __x", "count(*) AS __n"]
    if spec.group_by:
        selected.append(f"{_quote(spec.group_by)} AS __g")
    selected += [f"{sql} AS __v{i}" for i, (_name, sql) in enumerate(values)]
    where, params = _where(conditions)
    frame = _query(f"SELECT {', '.join(selected)} FROM {_from(path)}{where} GROUP BY ALL", params)
    # Rows without an x (or a group) are left out, as pandas' groupby does. Dropped from
    # the few aggregated rows: an IS NOT NULL filter over the source costs more.
    frame = frame.dropna(subset=["__x", "__g"] if spec.group_by else ["__x"])
    table = _wide(frame, [name for name, _sql in values], bool(spec.group_by))
    table = _sorted(table, spec.sort)
    if spec.limit:
        table = table.iloc[: spec.limit]
    return _bounded(table, spec, kinds)


def _wide(frame: pd.DataFrame, names: list[str], grouped: bool) -> pd.DataFrame:
    """One row per x label, one column per series (group value, or y column)."""
    value_columns = [f"__v{i}" for i in range(len(names))]
    if not grouped:
        return frame.set_index("__x")[value_columns].set_axis(names, axis=1)
    sizes = frame.groupby("__g", sort=False)["__n"].sum().sort_values(ascending=False)
    groups = sorted(sizes.index[:MAX_SERIES], key=_sort_key)
    wide = frame[frame["__g"].isin(groups)].pivot(index="__x", columns="__g", values=value_columns)
    columns, labels = [], []
    for group in groups:
        for value_column, name in zip(value_columns, names, strict=True):
            if (value_column, group) in wide.columns:
                columns.append((value_column, group))
                labels.append(str(group) if len(names) == 1 else f"{group} · {name}")
    return wide[columns].set_axis(labels, axis=1) if columns else wide.iloc[:, :0]


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float, np.number)) else (1, 0, str(value))


def _sorted(table: pd.DataFrame, sort: str) -> pd.DataFrame:
    descending = sort.startswith("-")
    if sort.lstrip("-") == "y" and len(table.columns):
        totals = table.sum(axis=1, min_count=1) if len(table.columns) > 1 else table.iloc[:, 0]
        order = np.argsort(
            -totals.to_numpy(dtype=float, na_value=np.nan)
            if descending
            else totals.to_numpy(dtype=float, na_value=np.nan),
            kind="stable",
        )
        return table.iloc[order]
    return table.sort_index(ascending=not descending, kind="stable")


def _bounded(table: pd.DataFrame, spec: ChartSpec, kinds: dict) -> ChartData:
    """Labels and series within MLOPS_CHART_MAX_POINTS: LTTB for a line or area over an
    ordered x, else the first labels in the chart's order."""
    series_count = max(1, len(table.columns))
    budget = max(1, settings.MLOPS_CHART_MAX_POINTS // series_count)
    downsampled = len(table) > budget
    if downsampled:
        lines = spec.kind in ("line", "area") and spec.sort in ("", "x")
        if lines and kinds[spec.x] in ("number", "datetime"):
            table = table.iloc[_shared_lttb(table, budget)]
        else:
            table = table.iloc[:budget]
    labels = [_label(v, spec.time_grain) for v in table.index]
    series = [
        {"name": str(name), "values": [_number(v) for v in table[name].to_numpy()]}
        for name in table.columns
    ]
    return ChartData(
        labels=labels,
        series=series,
        points=len(labels) * len(series),
        downsampled=downsampled,
    )


def _shared_lttb(table: pd.DataFrame, budget: int) -> np.ndarray:
    """Positions of at most `budget` labels, shared by every series: the union of each
    series' LTTB points (budget / series each), or LTTB of their mean when that leaves
    a series fewer than 3 points."""
    x = _positions_axis(table.index)
    values = table.to_numpy(dtype=float, na_value=np.nan)
    per_series = budget // values.shape[1]
    if per_series < 3:
        with np.errstate(all="ignore"):
            signals = [np.nanmean(values, axis=1)]
        per_series = budget
    else:
        signals = list(values.T)
    kept = set()
    for signal in signals:
        valid = np.flatnonzero(~np.isnan(signal))
        kept.update(valid[lttb_indices(x[valid], signal[valid], per_series)].tolist())
    kept.update((0, len(table) - 1))
    chosen = np.array(sorted(kept), dtype=np.int64)
    if len(chosen) > budget:  # first/last added to a series that lacked them
        chosen = np.concatenate([chosen[:1], chosen[1:-1][: budget - 2], chosen[-1:]])
    return chosen


def _positions_axis(index: pd.Index) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(index):
        return index.as_unit("ns").asi8.astype(np.float64)
    return index.to_numpy(dtype=float, na_value=np.nan)


def _as_table(data: ChartData, spec: ChartSpec) -> ChartData:
    rows = [[label, *[s["values"][i] for s in data.series]] for i, label in enumerate(data.labels)]
    rows = rows[:TABLE_MAX_ROWS]
    columns = [spec.x, *[s["name"] for s in data.series]]
    return _table(columns, rows, data.downsampled or len(data.labels) > len(rows))


def _raw_table(path: Path, spec: ChartSpec, kinds: dict, conditions: list[dict]) -> ChartData:
    columns = list(spec.y) or list(kinds)
    limit = min(spec.limit or TABLE_MAX_ROWS, TABLE_MAX_ROWS)
    limit = max(1, min(limit, settings.MLOPS_CHART_MAX_POINTS // max(1, len(columns))))
    where, params = _where(conditions)
    order = ""
    if spec.sort.lstrip("-") == "y" and spec.y:
        direction = "DESC" if spec.sort.startswith("-") else "ASC"
        order = f" ORDER BY {_quote(spec.y[0])} {direction} NULLS LAST"
    selected = ", ".join(_quote(c) for c in columns)
    frame = _query(f"SELECT {selected} FROM {_from(path)}{where}{order} LIMIT {limit + 1}", params)
    rows = [[_cell(v) for v in row] for row in frame.head(limit).itertuples(index=False)]
    return _table(columns, rows, len(frame) > limit)


def _table(columns: list[str], rows: list[list], downsampled: bool) -> ChartData:
    """A table chart's data: `rows` under `columns`."""
    return ChartData(
        labels=[],
        series=[],
        columns=columns,
        rows=rows,
        points=len(rows) * len(columns),
        downsampled=downsampled,
    )


def _scatter(path: Path, spec: ChartSpec, kinds: dict, conditions: list[dict]) -> ChartData:
    """A sample of the rows (all of them when few): x, y columns and the group."""
    budget = max(1, settings.MLOPS_CHART_MAX_POINTS // len(spec.y))
    x = _quote(spec.x)
    selected = [f"{x} AS __x"] + [f"{_quote(c)} AS __v{i}" for i, c in enumerate(spec.y)]
    if spec.group_by:
        selected.append(f"{_quote(spec.group_by)} AS __g")
    where, params = _where(conditions, (f"{x} IS NOT NULL",))
    base = f"SELECT {', '.join(selected)} FROM {_from(path)}{where}"
    total = int(_query(f"SELECT count(*) AS n FROM ({base})", params)["n"].iloc[0])
    if total > budget:
        # Fixed seed: the same chart shows the same sample.
        base = f"SELECT * FROM ({base}) USING SAMPLE reservoir({budget} ROWS) REPEATABLE (42)"
    frame = _query(f"{base} ORDER BY __x", params).head(budget)
    labels = [_label(v, "") for v in frame["__x"]]
    series = []
    groups = sorted(frame["__g"].dropna().unique(), key=_sort_key) if spec.group_by else [None]
    for group in groups[:MAX_SERIES]:
        mask = (frame["__g"] == group).to_numpy() if group is not None else None
        for i, name in enumerate(spec.y):
            column = frame[f"__v{i}"].to_numpy(dtype=float, na_value=np.nan)
            if mask is not None:
                column = np.where(mask, column, np.nan)
            title = (
                name if group is None else (str(group) if len(spec.y) == 1 else f"{group} · {name}")
            )
            series.append({"name": title, "values": [_number(v) for v in column]})
    points = sum(v is not None for s in series for v in s["values"])
    return ChartData(labels=labels, series=series, points=points, downsampled=total > budget)


# -- Values for JSON --------------------------------------------------------------------------


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _number(value) -> float | None:
    if _missing(value):
        return None
    number = float(value)
    return None if math.isinf(number) else number


def _label(value, grain: str):
    if _missing(value):
        return None
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        value = pd.Timestamp(value)
        if grain in ("day", "week", "month"):
            return value.date().isoformat()
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return str(value)


def _cell(value):
    if _missing(value):
        return None
    if isinstance(value, (pd.Timestamp, np.datetime64)) or hasattr(value, "isoformat"):
        return _label(value, "")
    if isinstance(value, (np.generic,)):
        return value.item()
    return value
