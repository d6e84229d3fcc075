"""Extraction from registered data sources, and saving results back to them.

The steps name a DataSource; its connector enforces read-only access and time limits.
Secrets stay in the DataSource: step params, run snapshots and MLflow never see them.

A database changes without telling anyone, and finding out can cost as much as reading
it, so an extraction from one follows an explicit freshness policy instead of a checksum:
a run from the first step always reads it; a replay from a later step reuses the cached
read unless the step's `version_query` (a cheap query the analyst writes) returns another
value than when it was read, or the read is older than the step's `max_age`. Pages show
the version and time of the last read and never query the source.
"""

import hashlib
import json
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from pydantic import Field, PositiveInt, field_validator, model_validator

from datasources.connectors.base import ConnectorError
from datasources.models import DataSource
from pipelines import lineage
from pipelines.choices import StepKind
from pipelines.engine.registry import (
    DataReferences,
    SourceCheck,
    StepParams,
    StepType,
    named_in,
    register,
)
from pipelines.models import RunOutput

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$"
MAX_AGE_HELP = (
    "Seconds: a replay from a later step reads the source again when its cached read is "
    "older. Without it (and without version_query) a replay reuses the cached read."
)


def resolve_source(reference: str | int) -> DataSource:
    try:
        return DataSource.objects.get_by_reference(reference)
    except DataSource.DoesNotExist as exc:
        raise ValueError(str(exc)) from None


class SourceParams(StepParams):
    datasource: str | int = Field(description="Data source name or id.")

    @field_validator("datasource")
    @classmethod
    def source_exists(cls, value):
        resolve_source(value)
        return value


class SourceStep(StepType):
    """Base of the steps that read from or write to a DataSource named by `datasource`."""

    @classmethod
    def references(cls, params: dict) -> DataReferences:
        return DataReferences(sources=named_in(params, "datasource"))


class DatabaseRead(SourceStep):
    """Base of the extraction steps from a DataSource, with their freshness policy.

    Subclasses implement `query(params)` (what the connector reads) and
    `version_request(params)` (the connector query of the version, or None).
    """

    kind = StepKind.EXTRACTION
    requires = ()
    reads_live_source = True
    noun: ClassVar[str] = "rows"

    def query(self, params) -> Any:
        raise NotImplementedError

    def version_request(self, params) -> Any:
        """The connector query that returns the version of the data, or None."""
        raise NotImplementedError

    def source_version(self, params) -> str:
        # Which database, never what it holds: pages compute fingerprints too.
        source = resolve_source(params.datasource)
        return _digest([source.pk, source.kind, source.host, source.port, source.database])

    def check_source(self, params, last_read: dict) -> SourceCheck:
        read_at = parse_datetime(last_read.get("read_at") or "")
        if read_at is None:
            return SourceCheck(False, "no record of when its source was read")
        age = (timezone.now() - read_at).total_seconds()
        max_age = format_age(params.max_age or 0)
        if params.max_age and age > params.max_age:
            return SourceCheck(
                False, f"cache is {format_age(age)} old, older than max_age {max_age}"
            )
        if self.version_request(params) is not None:
            return self._check_version(params, last_read.get("version"))
        if params.max_age:
            return SourceCheck(True, f"cache is {format_age(age)} old, within max_age {max_age}")
        return SourceCheck(
            True, f"read {format_age(age)} ago; the step has no version_query or max_age"
        )

    def _check_version(self, params, recorded: str | None) -> SourceCheck:
        try:
            version = self.current_version(resolve_source(params.datasource), params)
        except ValueError as exc:
            return SourceCheck(False, str(exc))
        if version != recorded:
            return SourceCheck(False, f"version changed from {recorded} to {version}")
        return SourceCheck(True, f"version query returned the same value {version}")

    def current_version(self, source: DataSource, params) -> str:
        """The value of the version query, as text; ValueError naming `version_query`."""
        try:
            frame = source.connector().read(self.version_request(params), limit=2)
        except ConnectorError as exc:
            raise ValueError(f"version_query: {exc}") from None
        return single_value(frame.drop(columns="_id", errors="ignore"))

    def run(self, context, params, log):
        source = resolve_source(params.datasource)
        read = {"read_at": timezone.now().isoformat(), "version": None}
        if self.version_request(params) is not None:
            # Asked before the read: a change in between makes the next replay read again.
            read["version"] = self.current_version(source, params)
            log(f"version query returned {read['version']}")
        frame = source.connector().read(self.query(params), limit=params.limit)
        context["data"] = frame
        context["_source"] = read
        # What the run page shows of the read: the query as written (secrets stay in
        # the DataSource, never in a query), the version and when it was read.
        context["_summary"] = {"datasource": source.name, "query": self.query_text(params)}
        if read["version"] is not None:
            context["_summary"]["version"] = read["version"]
        context["_summary"]["read_at"] = read["read_at"]
        log(f"read {len(frame)} {self.noun} from {self.read_from(source, params)}")
        return context

    def read_from(self, source: DataSource, params) -> str:
        return source.name

    def query_text(self, params) -> str:
        query = self.query(params)
        return query if isinstance(query, str) else json.dumps(query, default=str)


class SqlParams(SourceParams):
    query: str | None = Field(None, description="One read-only SELECT statement.")
    table: str | None = Field(None, pattern=IDENTIFIER, description="Or a table to read.")
    columns: list[str] | None = Field(None, description="With table: columns to read.")
    limit: PositiveInt | None = None
    version_query: str | None = Field(
        None,
        description=(
            "A cheap read-only query returning one value that changes when the data does "
            "(e.g. SELECT MAX(updated_at) FROM sales): a replay from a later step reads the "
            "source again only when its value changed since the cached read."
        ),
    )
    max_age: PositiveInt | None = Field(None, description=MAX_AGE_HELP)

    @model_validator(mode="after")
    def query_or_table(self):
        if bool(self.query and self.query.strip()) == bool(self.table):
            raise ValueError("query: give either a query or a table, not both")
        if self.columns and not self.table:
            raise ValueError("columns: only used with table")
        if self.version_query is not None and not self.version_query.strip():
            raise ValueError("version_query: give a query or leave it out")
        return self

    def sql(self) -> str:
        if self.query:
            return self.query
        columns = ", ".join(_column_name(column) for column in self.columns or []) or "*"
        return f"SELECT {columns} FROM {self.table}"


@register
class SqlStep(DatabaseRead):
    """Read rows from MySQL/MariaDB, PostgreSQL or CrateDB with one read-only query.

    A run from the first step always reads the source; a replay from a later step reuses
    the cached read unless `version_query` returns another value or the read is older
    than `max_age`. The run's log says which rule decided.
    """

    slug = "sql"
    label = "SQL query on a data source"
    Params = SqlParams

    def query(self, params: SqlParams) -> str:
        return params.sql()

    def version_request(self, params: SqlParams) -> str | None:
        return params.version_query


class MongoParams(SourceParams):
    collection: str = Field(min_length=1)
    filter: dict[str, Any] = Field(default_factory=dict)
    projection: dict[str, Any] | None = None
    sort: list[tuple[str, Literal[1, -1]]] | None = None
    limit: PositiveInt | None = None
    pipeline: list[dict[str, Any]] | None = Field(None, description="An aggregation instead.")
    version_query: list[dict[str, Any]] | None = Field(
        None,
        description=(
            "An aggregation pipeline on the collection returning one document with one "
            'field besides _id, e.g. [{"$group": {"_id": null, "v": {"$max": "$updated_at"}}}]'
            ": a replay from a later step reads the source again only when its value "
            "changed since the cached read."
        ),
    )
    max_age: PositiveInt | None = Field(None, description=MAX_AGE_HELP)

    @model_validator(mode="after")
    def find_or_aggregate(self):
        if self.pipeline is not None and (self.filter or self.projection or self.sort):
            raise ValueError("pipeline: give an aggregation pipeline or filter/projection/sort")
        if self.version_query == []:
            raise ValueError("version_query: give at least one stage or leave it out")
        return self

    def query(self) -> dict:
        """The connector query: an aggregation, or a find; the limit is passed apart."""
        if self.pipeline is not None:
            return {"collection": self.collection, "pipeline": self.pipeline}
        return self.model_dump(
            include={"collection", "filter", "projection", "sort"}, exclude_none=True
        )


@register
class MongoStep(DatabaseRead):
    """Read documents from MongoDB with a find or an aggregation (no writing stages).

    A run from the first step always reads the collection; a replay from a later step
    reuses the cached read unless `version_query` returns another value or the read is
    older than `max_age`. The run's log says which rule decided.
    """

    slug = "mongo"
    label = "MongoDB collection"
    Params = MongoParams
    noun = "documents"

    def query(self, params: MongoParams) -> dict:
        return params.query()

    def version_request(self, params: MongoParams) -> dict | None:
        if params.version_query is None:
            return None
        return {"collection": params.collection, "pipeline": params.version_query}

    def read_from(self, source: DataSource, params: MongoParams) -> str:
        return f"{source.name}.{params.collection}"


class SaveTableParams(SourceParams):
    table: str = Field(pattern=IDENTIFIER)
    mode: Literal["fail", "append", "replace"] = "fail"
    source: Literal["data", "predictions"] = Field("data", description="What to save.")
    lineage_columns: bool = Field(
        True,
        description="Saving predictions: add mlops_run_id and mlops_model_uri columns "
        "naming the run and the model that made each row.",
    )

    @field_validator("datasource")
    @classmethod
    def source_allows_writes(cls, value):
        if not resolve_source(value).allow_writes:
            raise ValueError(f"data source {value!r} does not allow writes")
        return value


@register
class SaveTable(SourceStep):
    """Write the data or the predictions to a table of a data source that allows writes.

    Saved predictions get `mlops_run_id` and `mlops_model_uri` columns, the run and the
    model that made each row, unless `lineage_columns` is off; the run's page lists the
    table written either way (the design is in `pipelines.lineage`).
    """

    slug = "save_table"
    kind = StepKind.SAVE
    label = "Save to a data source table"
    Params = SaveTableParams
    requires = ("data",)
    produces = ()

    @classmethod
    def required_keys(cls, params: dict) -> tuple[str, ...]:
        return ((params or {}).get("source") or "data",)

    def run(self, context, params: SaveTableParams, log):
        source = resolve_source(params.datasource)
        made_by = lineage.producer(context, params.source, params.lineage_columns)
        frame = made_by.stamp(context[params.source])
        written = source.connector().write(frame, params.table, params.mode)
        made_by.record(
            RunOutput.Kind.TABLE,
            datasource=source.name,
            table=params.table,
            mode=params.mode,
            rows=written,
        )
        context["_summary"] = {
            "datasource": source.name,
            "table": params.table,
            "mode": params.mode,
            "rows": written,
        }
        log(f"wrote {written} rows to {source.name}.{params.table} ({params.mode})")
        return context


def _column_name(column: str) -> str:
    if not column.replace("_", "").isalnum():
        raise ValueError(f"columns: {column!r} is not a plain column name")
    return column


def single_value(frame: pd.DataFrame) -> str:
    """The one value of a one-row, one-column result, as text.

    NULL for a missing value or no row at all (a MongoDB $group over an empty collection
    returns no document where SQL's MAX returns NULL).
    """
    rows, columns = frame.shape
    if rows == 0:
        return "NULL"
    if rows > 1 or columns != 1:
        returned = "several rows" if rows > 1 else "a row"
        raise ValueError(
            "version_query: must return one value (one row, one column); it returned "
            f"{returned} of {columns} column(s)"
        )
    value = frame.iat[0, 0]
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return "NULL"
    return str(value.item() if isinstance(value, np.generic) else value)


def format_age(seconds: float) -> str:
    """A duration in its largest unit and the next: `45 s`, `12 m 5 s`, `2 h`, `3 d 4 h`."""
    rest, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if parts or count:
            parts.append((count, unit))
    return " ".join(f"{count} {unit}" for count, unit in parts[:2] if count) or "0 s"


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
