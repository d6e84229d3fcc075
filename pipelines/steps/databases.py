"""Extraction from registered data sources, and saving results back to them.

The steps name a DataSource; its connector enforces read-only access and time limits.
Secrets stay in the DataSource: step params, run snapshots and MLflow never see them.
"""

import hashlib
import json
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from datasources.connectors.base import ConnectorError
from datasources.models import DataSource
from pipelines.choices import StepKind
from pipelines.engine.registry import StepParams, StepType, register

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$"


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


class SqlParams(SourceParams):
    query: str | None = Field(None, description="One read-only SELECT statement.")
    table: str | None = Field(None, pattern=IDENTIFIER, description="Or a table to read.")
    columns: list[str] | None = Field(None, description="With table: columns to read.")
    limit: PositiveInt | None = None
    watermark: str | None = Field(
        None, pattern=IDENTIFIER, description="A column whose max marks new data (cache key)."
    )

    @model_validator(mode="after")
    def query_or_table(self):
        if bool(self.query and self.query.strip()) == bool(self.table):
            raise ValueError("query: give either a query or a table, not both")
        if self.columns and not self.table:
            raise ValueError("columns: only used with table")
        return self

    def sql(self) -> str:
        if self.query:
            return self.query
        columns = ", ".join(_column_name(column) for column in self.columns or []) or "*"
        return f"SELECT {columns} FROM {self.table}"


@register
class SqlStep(StepType):
    """Read rows from MySQL/MariaDB, PostgreSQL or CrateDB with one read-only query."""

    slug = "sql"
    kind = StepKind.EXTRACTION
    label = "SQL query on a data source"
    Params = SqlParams
    requires = ()

    def source_version(self, params: SqlParams) -> str:
        source = resolve_source(params.datasource)
        probe = f"SELECT COUNT(*) AS n FROM ({params.sql()}) AS q"
        if params.watermark:
            probe = f"SELECT COUNT(*) AS n, MAX({params.watermark}) AS w FROM ({params.sql()}) AS q"
        try:
            state = source.connector().read(probe).iloc[0].to_dict()
        except ConnectorError as exc:
            state = {"unavailable": str(exc)}
        return _digest({"source": source.pk, "query": params.sql(), "state": state})

    def run(self, context, params: SqlParams, log):
        source = resolve_source(params.datasource)
        frame = source.connector().read(params.sql(), limit=params.limit)
        context["data"] = frame
        context["_summary"] = {"datasource": source.name}
        log(f"read {len(frame)} rows from {source.name}")
        return context


class MongoParams(SourceParams):
    collection: str = Field(min_length=1)
    filter: dict[str, Any] = Field(default_factory=dict)
    projection: dict[str, Any] | None = None
    sort: list[tuple[str, Literal[1, -1]]] | None = None
    limit: PositiveInt | None = None
    pipeline: list[dict[str, Any]] | None = Field(None, description="An aggregation instead.")

    @model_validator(mode="after")
    def find_or_aggregate(self):
        if self.pipeline is not None and (self.filter or self.projection or self.sort):
            raise ValueError("pipeline: give an aggregation pipeline or filter/projection/sort")
        return self

    def query(self) -> dict:
        return self.model_dump(exclude={"datasource"}, exclude_none=True)


@register
class MongoStep(StepType):
    """Read documents from MongoDB with a find or an aggregation (no writing stages)."""

    slug = "mongo"
    kind = StepKind.EXTRACTION
    label = "MongoDB collection"
    Params = MongoParams
    requires = ()

    def source_version(self, params: MongoParams) -> str:
        return _digest({"source": resolve_source(params.datasource).pk, "query": params.query()})

    def run(self, context, params: MongoParams, log):
        source = resolve_source(params.datasource)
        frame = source.connector().read(params.query(), limit=params.limit)
        context["data"] = frame
        context["_summary"] = {"datasource": source.name}
        log(f"read {len(frame)} documents from {source.name}.{params.collection}")
        return context


class SaveTableParams(SourceParams):
    table: str = Field(pattern=IDENTIFIER)
    mode: Literal["fail", "append", "replace"] = "fail"
    source: Literal["data", "predictions"] = Field("data", description="What to save.")

    @field_validator("datasource")
    @classmethod
    def source_allows_writes(cls, value):
        if not resolve_source(value).allow_writes:
            raise ValueError(f"data source {value!r} does not allow writes")
        return value


@register
class SaveTable(StepType):
    """Write the data or the predictions to a table of a data source that allows writes."""

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
        frame = context[params.source]
        written = source.connector().write(frame, params.table, params.mode)
        context["_summary"] = {"datasource": source.name, "table": params.table, "rows": written}
        log(f"wrote {written} rows to {source.name}.{params.table} ({params.mode})")
        return context


def _column_name(column: str) -> str:
    if not column.replace("_", "").isalnum():
        raise ValueError(f"columns: {column!r} is not a plain column name")
    return column


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
