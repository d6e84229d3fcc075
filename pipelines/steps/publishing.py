"""Publishing steps: results other pipelines and dashboards read.

`register_model` puts the run's model in the MLflow model registry, where a later
pipeline's predict step finds it by name and alias; `save_dataset` stores a frame as
the next version of a named Dataset, which a later pipeline's csv step reads by name.
"""

import io
from typing import Literal

import pandas as pd
from django.core.exceptions import ValidationError
from pydantic import Field, field_validator

from datasources.models import Dataset
from datasources.services import add_dataset
from experiments import registry, tracking
from pipelines import lineage
from pipelines.choices import StepKind
from pipelines.engine.context import require_columns
from pipelines.engine.registry import StepParams, StepType, register
from pipelines.models import RunOutput

# MLflow keeps "latest" and "v<number>" to name versions, so they are no aliases.
RESERVED_ALIAS = registry.RESERVED_ALIAS


class RegisterModelParams(StepParams):
    name: str = Field(
        pattern=r"^[\w-][\w.-]*$",
        max_length=256,
        description="Registered model name: letters, digits, _ - and dots.",
    )
    alias: str | None = Field(
        None,
        pattern=r"^[\w-]+$",
        max_length=255,
        description="Alias to move to the new version, e.g. champion: letters, digits, _ and -.",
    )
    description: str = Field("", description="Description of the new version.")

    @field_validator("alias")
    @classmethod
    def alias_not_reserved(cls, value: str | None):
        if value is not None and RESERVED_ALIAS.fullmatch(value):
            raise ValueError(f"{value!r} is reserved by MLflow for versions")
        return value


@register
class RegisterModel(StepType):
    """Register the model trained in this run as a new version in the MLflow registry."""

    slug = "register_model"
    kind = StepKind.SAVE
    label = "Register the model in MLflow"
    Params = RegisterModelParams
    # The engine logs every model a step produces and sets `model_uri` beside it.
    requires = ("model",)
    produces = ()

    def run(self, context, params: RegisterModelParams, log):
        # The registry checks the promotion gate before registering: a refused move of
        # the alias fails the step and leaves no new version.
        version = registry.register_version(
            context["model_uri"],
            params.name,
            params.alias,
            tags=tracking.active_run_tags(),
            description=params.description,
        )
        context["_summary"] = {"name": params.name, "version": version, "alias": params.alias}
        moved = f", alias {params.alias} moved to it" if params.alias else ""
        log(f"registered {context['model_uri']} as {params.name} version {version}{moved}")
        return context


class SaveDatasetParams(StepParams):
    name: str = Field(max_length=100, description="Dataset name; each run stores its next version.")
    source: Literal["data", "predictions"] = Field(
        "data", description="What to save: the data, or the rows with their predictions."
    )
    columns: list[str] | None = Field(
        None, min_length=1, description="Columns to save, in this order; all when empty."
    )
    lineage_columns: bool = Field(
        True,
        description="Saving predictions: add mlops_run_id and mlops_model_uri columns "
        "naming the run and the model that made each row.",
    )

    @field_validator("name")
    @classmethod
    def name_not_blank(cls, value: str):
        if not value.strip():
            raise ValueError("a dataset needs a name")
        return value.strip()


@register
class SaveDataset(StepType):
    """Store the data or the predictions as a new CSV version of a named dataset.

    Saved predictions get `mlops_run_id` and `mlops_model_uri` columns, the run and the
    model that made each row, unless `lineage_columns` is off; the run's page lists the
    version written either way (the design is in `pipelines.lineage`).
    """

    slug = "save_dataset"
    kind = StepKind.SAVE
    label = "Save as a dataset"
    Params = SaveDatasetParams
    requires = ("data",)
    produces = ()

    @classmethod
    def required_keys(cls, params: dict) -> tuple[str, ...]:
        return ((params or {}).get("source") or "data",)

    def run(self, context, params: SaveDatasetParams, log):
        frame = context[params.source]
        if params.columns:
            require_columns(frame, params.columns)
            frame = frame[params.columns]
        made_by = lineage.producer(context, params.source, params.lineage_columns)
        dataset = _store(made_by.stamp(frame), params)
        made_by.record(
            RunOutput.Kind.DATASET,
            dataset=dataset,
            dataset_label=str(dataset),
            rows=dataset.row_count,
        )
        context["_summary"] = {
            "dataset": str(dataset),
            "version": dataset.version,
            "checksum": dataset.checksum,
            "rows": dataset.row_count,
            "columns": dataset.column_count,
        }
        log(f"saved {dataset.row_count} rows of {params.source} as dataset {dataset}")
        return context


def _store(frame: pd.DataFrame, params: SaveDatasetParams) -> Dataset:
    """The new dataset version; add_dataset checks everything before it writes anything."""
    handle = io.BytesIO(frame.to_csv(index=False).encode())
    try:
        return add_dataset(handle, params.name, f"{params.name}.csv")
    except ValidationError as exc:
        # add_dataset names its own fields: the file is what `source` gave it.
        fields = {"name": "name", "file": params.source}
        problems = [
            f"{fields.get(field, field)}: {' '.join(messages)}"
            for field, messages in exc.message_dict.items()
        ]
        raise ValueError("; ".join(problems)) from None
