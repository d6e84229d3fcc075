"""Extraction steps: they start a context with `data`."""

from typing import Literal

import pandas as pd
from pydantic import Field, PositiveInt, field_validator

from datasources.models import Dataset
from datasources.services import read_dataset
from pipelines.choices import StepKind
from pipelines.engine.registry import DataReferences, StepParams, StepType, named_in, register


class CsvParams(StepParams):
    dataset: str | int = Field(description="Dataset name (latest version) or id.")
    columns: list[str] | None = Field(None, description="Columns to read; all when empty.")
    limit: PositiveInt | None = Field(None, description="Read at most this many rows.")

    @field_validator("dataset")
    @classmethod
    def dataset_exists(cls, value):
        if not Dataset.objects.matching(value).exists():
            raise ValueError(f"dataset {value!r} does not exist")
        return value


@register
class CsvStep(StepType):
    """Read an uploaded CSV dataset."""

    slug = "csv"
    kind = StepKind.EXTRACTION
    label = "Uploaded CSV dataset"
    Params = CsvParams
    requires = ()

    @classmethod
    def references(cls, params: dict) -> DataReferences:
        return DataReferences(datasets=named_in(params, "dataset"))

    def source_version(self, params: CsvParams) -> str:
        return Dataset.objects.resolve(params.dataset).checksum

    def run(self, context, params: CsvParams, log):
        dataset = Dataset.objects.resolve(params.dataset)
        try:
            context["data"] = read_dataset(dataset, params.columns or None, params.limit)
        except ValueError as exc:
            raise ValueError(f"columns: {exc}") from None
        context["_summary"] = {
            "dataset": str(dataset),
            "checksum": dataset.checksum,
            # The run page links the exact version read, while it is stored.
            "dataset_id": dataset.pk,
        }
        log(f"read {len(context['data'])} rows from dataset {dataset}")
        return context


SKLEARN_DATASETS = ("iris", "wine", "breast_cancer", "diabetes")


class SklearnDatasetParams(StepParams):
    name: Literal[SKLEARN_DATASETS] = Field(description="Bundled scikit-learn dataset.")


@register
class SklearnDatasetStep(StepType):
    """Load a demo dataset bundled with scikit-learn; the label is the `target` column."""

    slug = "sklearn_dataset"
    kind = StepKind.EXTRACTION
    label = "scikit-learn demo dataset"
    Params = SklearnDatasetParams
    requires = ()

    def source_version(self, params: SklearnDatasetParams) -> str:
        import sklearn

        return f"{params.name}@{sklearn.__version__}"

    def run(self, context, params: SklearnDatasetParams, log):
        import sklearn
        from sklearn import datasets

        loader = getattr(datasets, f"load_{params.name}")
        frame: pd.DataFrame = loader(as_frame=True).frame
        context["data"] = frame
        context["_summary"] = {"dataset": f"{params.name} (scikit-learn {sklearn.__version__})"}
        log(f"loaded {params.name}: {len(frame)} rows")
        return context
