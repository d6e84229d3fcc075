"""Online prediction with registered models: resolve, load once, check input, predict, count.

A request names a model by alias (resolved on every request: one registry read, so a
moved alias is served from the next request on) or by version. Loaded models are kept
per process in a small LRU keyed by the version and its source, so a model is loaded
once and a version deleted and registered again under the same number is not confused
with the old one. Records are checked against the model's MLflow signature before the
model sees them, and predictions come out as the predict step's columns.
"""

import itertools
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from sklearn.pipeline import Pipeline

from experiments import tracking
from experiments.models import ModelPolicy, ServingStat, latency_bucket
from pipelines.steps.prediction import PredictParams, model_outputs

# What a JSON value must be for each signature type; None (null) is accepted everywhere.
EXPECTED = {
    "double": ("a number", lambda v: type(v) in (int, float)),
    "float": ("a number", lambda v: type(v) in (int, float)),
    "long": ("an integer", lambda v: type(v) is int or (type(v) is float and v.is_integer())),
    "integer": ("an integer", lambda v: type(v) is int or (type(v) is float and v.is_integer())),
    "boolean": ("true or false", lambda v: type(v) is bool),
    "string": ("a string", lambda v: type(v) is str),
    "datetime": ("an ISO 8601 date-time string", lambda v: type(v) is str),
}
JSON_TYPE_NAMES = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
# JSON types every value of which each signature type accepts as it is: a column of only
# these needs no check value by value (1,000 records: 30,000 checks, about 5 ms).
ACCEPTED_AS_IS = {
    "double": {int, float, type(None)},
    "float": {int, float, type(None)},
    "long": {int, type(None)},
    "integer": {int, type(None)},
    "boolean": {bool, type(None)},
    "string": {str, type(None)},
    "datetime": {str, type(None)},
}
MAX_ERRORS = 20  # listed in one answer; enough to fix a client, short enough to read
OUTPUTS = PredictParams()  # the predict step's defaults: `prediction`, `probability_<class>`
User = get_user_model()


class InvalidInput(ValueError):
    """The request's records cannot be given to the model; `errors` says where."""

    def __init__(self, message: str, errors: list[dict] | None = None):
        super().__init__(message)
        self.errors = errors or []


@dataclass(frozen=True)
class ServedModel:
    name: str
    version: int
    uri: str
    model: Any
    columns: dict[str, str] | None  # signature column -> type, in order; None: no signature


def may_predict(user, name: str) -> bool:
    """Holders of experiments.predict (their own or a group's) may call any model;
    members of a model's ModelPolicy.predict_group may call that model.

    What ModelBackend's has_perm answers, plus the policy, in one query (has_perm takes
    two, the policy a third), read on every request: a permission or membership revoked
    in the admin holds from the next request on. Inactive users may not; superusers may.
    """
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    with connection.cursor() as cursor:
        cursor.execute(_may_predict_sql(), [user.pk, True, user.pk, user.pk, name, user.pk])
        return cursor.fetchone() is not None


_statements: dict[tuple, str] = {}


def _may_predict_sql() -> str:
    """Parameters: the user's id, True, the id twice more, the model's name, the id.

    Written out: the same query built from the ORM's Exists() took 2.3 ms a request to
    build, 0.05 ms to run (SQLite)."""
    key = ("may_predict", connection.vendor)
    if key not in _statements:
        q = connection.ops.quote_name
        table = {model: q(model._meta.db_table) for model in (User, Permission, ModelPolicy)}
        user_perms = q(User.user_permissions.through._meta.db_table)
        user_groups = q(User.groups.through._meta.db_table)
        group_perms = q(Group.permissions.through._meta.db_table)
        content_types = q(ContentType._meta.db_table)
        predict = (
            f"SELECT p.{q('id')} FROM {table[Permission]} p INNER JOIN {content_types} ct "
            f"ON ct.{q('id')} = p.{q('content_type_id')} "
            f"WHERE p.{q('codename')} = 'predict' AND ct.{q('app_label')} = 'experiments'"
        )
        _statements[key] = (
            f"SELECT 1 FROM {table[User]} WHERE {q('id')} = %s AND {q('is_active')} = %s AND ("
            f"EXISTS (SELECT 1 FROM {user_perms} WHERE {q('user_id')} = %s "
            f"AND {q('permission_id')} IN ({predict})) "
            f"OR EXISTS (SELECT 1 FROM {user_groups} ug INNER JOIN {group_perms} gp "
            f"ON gp.{q('group_id')} = ug.{q('group_id')} WHERE ug.{q('user_id')} = %s "
            f"AND gp.{q('permission_id')} IN ({predict})) "
            f"OR EXISTS (SELECT 1 FROM {table[ModelPolicy]} mp INNER JOIN {user_groups} ug "
            f"ON ug.{q('group_id')} = mp.{q('predict_group_id')} "
            f"WHERE mp.{q('name')} = %s AND ug.{q('user_id')} = %s))"
        )
    return _statements[key]


def predict(name: str, body: Any, alias: str | None = None, version: str | None = None) -> dict:
    """Predictions for the records in `body` by `name@alias` or `name/version`.

    ModelNotFound (404) before anything is counted; InvalidInput (400) and every other
    failure are counted as errors of the version that was resolved.
    """
    started = time.perf_counter()
    if alias:
        found = tracking.find_model_version_by_alias(name, alias)
    else:
        found = tracking.find_model_version(name, version=version)
    rows, failed = 0, True
    try:
        served = load(name, found["version"], found["source"])
        frame = records_frame(body, served.columns)
        rows = len(frame)
        predictions = _predict(served, frame)
        failed = False
    finally:
        elapsed_ms = (time.perf_counter() - started) * 1000
        count(name, found["version"], rows, elapsed_ms, failed)
    return {
        "model": name,
        "version": served.version,
        "model_uri": served.uri,
        "predictions": predictions,
    }


def _predict(served: ServedModel, frame: pd.DataFrame) -> list[dict]:
    features = list(getattr(served.model, "feature_names_in_", frame.columns))
    if list(frame.columns) != features:  # the signature's order is the model's, usually
        frame = frame[features]
    try:
        outputs = model_outputs(served.model, frame, OUTPUTS)
    except ValueError as exc:
        # Valid by the signature yet refused by the model, e.g. a null where nothing imputes.
        raise InvalidInput(f"the model could not predict on these records: {exc}") from None
    # What to_dict(orient="records") answers (Python scalars), in a tenth of its time.
    names = list(outputs.columns)
    columns = [outputs[name].tolist() for name in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


# Loaded models, most recently used last. Each web process has its own.
_models: OrderedDict[tuple[str, int, str], ServedModel] = OrderedDict()
_models_lock = threading.Lock()
# One load at a time: concurrent first requests for a version wait for one load.
_loading_lock = threading.Lock()


def load(name: str, version: int, source: str) -> ServedModel:
    """The model `name` version `version`, from the process's cache or loaded into it."""
    key = (name, version, source)
    with _models_lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
    with _loading_lock:
        with _models_lock:
            if key in _models:
                return _models[key]
        served = _load(name, version)
        with _models_lock:
            _models[key] = served
            while len(_models) > settings.MLOPS_PREDICT_CACHE_SIZE:
                _models.popitem(last=False)
    return served


def _load(name: str, version: int) -> ServedModel:
    uri = f"models:/{name}/{version}"
    columns = tracking.model_input_columns(uri)
    model = tracking.load_model(uri)
    _predict_in_one_thread(model)
    names = None if columns is None else {c["name"]: c["type"] for c in columns}
    return ServedModel(name, version, uri, model, names)


def _predict_in_one_thread(model) -> None:
    """Make this process's copy of the model predict in the request's thread.

    A forest trained with n_jobs=-1 starts a joblib thread per core on every predict:
    3x slower for one record on 2 cores (56 against 19 ms), and slower for 1,000 too,
    as concurrent requests already keep the cores busy. Only the served copy changes;
    predictions are the same.
    """
    estimator = model.steps[-1][1] if isinstance(model, Pipeline) else model
    if getattr(estimator, "n_jobs", None) not in (None, 1):
        estimator.n_jobs = None


def forget_models() -> None:
    """Drop every loaded model of this process (tests start from an empty cache)."""
    with _models_lock:
        _models.clear()


def loaded_versions() -> list[tuple[str, int]]:
    """The (name, version) pairs this process holds, least recently used first."""
    with _models_lock:
        return [(name, version) for name, version, _ in _models]


def records_frame(body: Any, columns: dict[str, str] | None) -> pd.DataFrame:
    """The request's rows as a DataFrame in the signature's column order, or InvalidInput.

    Three shapes are accepted: {"records": [{column: value}, ...]},
    {"columns": {column: [values]}} and MLflow's
    {"dataframe_split": {"columns": [...], "data": [[...], ...]}}.
    """
    numbers = _numbers_frame(body, columns)
    if numbers is not None:
        return numbers
    by_column = _columns_of(body, columns)
    if columns is None:  # no signature to check against: the model's own checks apply
        return pd.DataFrame(by_column)
    # Records were checked one by one, naming the record; the other shapes per column.
    errors = [_error(None, c, "missing: the model needs this column") for c in columns]
    errors = [e for e in errors if e["column"] not in by_column]
    errors += [_unknown(None, c, columns) for c in by_column if c not in columns]
    for column, kind in columns.items():
        if len(errors) >= MAX_ERRORS:
            break
        if column in by_column:
            errors.extend(_type_errors(column, kind, by_column[column], len(errors)))
    if errors:
        _refuse(errors)
    return pd.DataFrame({c: _series(by_column[c], columns[c], c) for c in columns}, copy=False)


def _numbers_frame(body: Any, columns: dict[str, str] | None) -> pd.DataFrame | None:
    """MLflow's `dataframe_split` of numbers (or null) for a model whose columns are all
    numbers, as one 2-D array: the frame the checks column by column would build, at
    a third of their cost for 1,000 records. None for anything else, or anything those
    checks would refuse: they run then, and name the problem."""
    if columns is None or not isinstance(body, dict) or body.keys() != {"dataframe_split"}:
        return None
    split = body["dataframe_split"]
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list):
        return None
    names, data = split["columns"], split.get("data")
    if len(names) != len(columns) or set(names) != set(columns):
        return None
    if not all(kind in ("double", "float") for kind in columns.values()):
        return None
    _check_count(data, '"dataframe_split"."data"', "a list of rows")
    if not all(type(row) is list and len(row) == len(names) for row in data):
        return None
    if not set(map(type, itertools.chain.from_iterable(data))) <= ACCEPTED_AS_IS["double"]:
        return None
    frame = pd.DataFrame(np.array(data, dtype=float), columns=names)  # null: NaN, as _series
    return frame if names == list(columns) else frame[list(columns)]


def _columns_of(body: Any, columns: dict[str, str] | None) -> dict[str, list]:
    if not isinstance(body, dict):
        raise InvalidInput(f"the body must be a JSON object, got {_json_type(body)}")
    shapes = [key for key in ("records", "columns", "dataframe_split") if key in body]
    if len(shapes) != 1 or len(body) != 1:
        raise InvalidInput(
            'the body must be one of {"records": [{column: value}, ...]}, '
            '{"columns": {column: [values]}} or '
            '{"dataframe_split": {"columns": [...], "data": [[...], ...]}}'
        )
    shape = shapes[0]
    if shape == "records":
        return _from_records(body["records"], columns)
    if shape == "columns":
        return _from_columns(body["columns"])
    return _from_split(body["dataframe_split"])


def _from_records(records: Any, columns: dict[str, str] | None) -> dict[str, list]:
    _check_count(records, '"records"', "a list of objects")
    expected = set(columns or ())
    errors = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise InvalidInput(f"record {index}: must be an object, got {_json_type(record)}")
        if columns is not None and record.keys() != expected:
            errors += [_error(index, c, "missing") for c in columns if c not in record]
            errors += [_unknown(index, c, columns) for c in record if c not in expected]
            if len(errors) >= MAX_ERRORS:
                break
    if errors:
        _refuse(errors)
    names = columns or dict.fromkeys(name for record in records for name in record)
    return {name: [record.get(name) for record in records] for name in names}


def _from_columns(columns: Any) -> dict[str, list]:
    if not isinstance(columns, dict) or not columns:
        raise InvalidInput('"columns" must be a non-empty object of {column: [values]}')
    lengths = set()
    for name, values in columns.items():
        _check_count(values, f'"columns"."{name}"', "a list of values")
        lengths.add(len(values))
    if len(lengths) > 1:
        raise InvalidInput(f'every list in "columns" must have the same length, got {lengths}')
    return columns


def _from_split(split: Any) -> dict[str, list]:
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list):
        raise InvalidInput('"dataframe_split" must be {"columns": [...], "data": [[...], ...]}')
    names, data = split["columns"], split.get("data")
    _check_count(data, '"dataframe_split"."data"', "a list of rows")
    for index, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(names):
            raise InvalidInput(f"record {index}: must be a list of {len(names)} values")
    return dict(zip(names, map(list, zip(*data, strict=True)), strict=True))  # rows to columns


def _check_count(values: Any, what: str, expected: str) -> None:
    if not isinstance(values, list):
        raise InvalidInput(f"{what} must be {expected}, got {_json_type(values)}")
    if not values:
        raise InvalidInput(f"{what} is empty: send at least one record")
    limit = settings.MLOPS_PREDICT_MAX_ROWS
    if len(values) > limit:
        raise InvalidInput(
            f"too many records: {len(values):,} sent, at most {limit:,} per request "
            "(MLOPS_PREDICT_MAX_ROWS); split them into several requests"
        )


def _type_errors(column: str, kind: str, values: list, found: int) -> list[dict]:
    if kind not in EXPECTED:
        return []  # types sklearn models are not logged with; the model checks them
    if set(map(type, values)) <= ACCEPTED_AS_IS[kind]:
        return []
    expected, accepts = EXPECTED[kind]
    errors = []
    for index, value in enumerate(values):
        if value is not None and not accepts(value):
            got = _json_type(value)
            message = f"expected {expected} ({kind}), got {got} {_shown(value)}"
            errors.append(_error(index, column, message))
            if found + len(errors) >= MAX_ERRORS:
                break
    return errors


def _series(values: list, kind: str, column: str):
    """A column typed as the training frame had it; null becomes a missing value, which
    the model's preparation imputes as it did in training."""
    has_null = None in values
    if kind in ("double", "float") or (kind in ("long", "integer") and has_null):
        return np.array(values, dtype=float)
    if kind in ("long", "integer"):
        return np.array(values, dtype=np.int64)
    if kind == "string":
        return pd.Series(values, dtype="str")
    if kind == "datetime":
        try:
            return pd.to_datetime(pd.Series(values), format="ISO8601")
        except ValueError as exc:
            raise InvalidInput(f"column {column!r}: not an ISO 8601 date-time: {exc}") from None
    if has_null:
        return pd.Series([math.nan if value is None else value for value in values], dtype=object)
    return pd.Series(values)


def _error(record: int | None, column: str, message: str) -> dict:
    return {"record": record, "column": column, "message": message}


def _unknown(record: int | None, column: str, columns: dict) -> dict:
    return _error(record, column, f"unknown column; the model takes {_names(columns)}")


def _refuse(errors: list[dict]):
    errors = errors[:MAX_ERRORS]
    first = errors[0]
    where = f"column {first['column']!r}"
    if first["record"] is not None:
        where = f"record {first['record']}, {where}"
    more = f" (and {len(errors) - 1} more, listed in errors)" if len(errors) > 1 else ""
    raise InvalidInput(f"{where}: {first['message']}{more}", errors)


def _names(columns: dict) -> str:
    names = list(columns)
    shown = ", ".join(names[:10])
    return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return f"({text[:40]})"


def count(name: str, version: int, rows: int, latency_ms: float, failed: bool) -> None:
    """Add one request to its model version's ServingStat row of the current minute.

    One UPDATE ... SET n = n + 1 per request, in autocommit (0.02 ms on SQLite in WAL
    mode; bench/serving.py prints count()), and unlike a buffer in the process it loses
    no count when a worker is killed and needs no flusher thread. Each statement is its
    own transaction, so two processes creating the same minute's row cannot deadlock:
    the one whose INSERT loses updates the winner's row. The UPDATE is written out: the
    ORM took 0.5 ms a request to build it from F() expressions.
    """
    minute = timezone.now().replace(second=0, microsecond=0)
    bucket = latency_bucket(latency_ms)
    params = [int(failed), rows, latency_ms, latency_ms, latency_ms]
    params += [name, version, connection.ops.adapt_datetimefield_value(minute)]
    with connection.cursor() as cursor:
        cursor.execute(_count_sql(bucket), params)
        if cursor.rowcount:
            return
    key = {"model_name": name, "version": version, "minute": minute}
    first = {"requests": 1, "errors": int(failed), "rows": rows, bucket: 1}
    first.update(latency_ms_total=latency_ms, latency_ms_max=latency_ms)
    try:
        with transaction.atomic():
            ServingStat.objects.create(**key, **first)
    except IntegrityError:
        with connection.cursor() as cursor:
            cursor.execute(_count_sql(bucket), params)


def _count_sql(bucket: str) -> str:
    """Parameters: errors (0 or 1), rows, the latency three times, name, version, minute."""
    key = ("count", connection.vendor, bucket)
    if key not in _statements:
        q = connection.ops.quote_name
        fields = ("requests", "errors", "rows", "latency_ms_total", "latency_ms_max", bucket)
        requests, errors, rows, total, most, counted = map(q, fields)
        _statements[key] = (
            f"UPDATE {q(ServingStat._meta.db_table)} SET {requests} = {requests} + 1, "
            f"{errors} = {errors} + %s, {rows} = {rows} + %s, {total} = {total} + %s, "
            f"{most} = CASE WHEN {most} < %s THEN %s ELSE {most} END, "
            f"{counted} = {counted} + 1 "
            f"WHERE {q('model_name')} = %s AND {q('version')} = %s AND {q('minute')} = %s"
        )
    return _statements[key]
