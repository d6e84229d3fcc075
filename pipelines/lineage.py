"""Lineage: what a run read, what it wrote, and which model its predictions came from.

Two halves share the one vocabulary:

- The save steps (`save_table`, `save_dataset`) ask `producer()` who is saving: the run
  (from the mlops.* tags of the MLflow run the engine opened), the step running in it,
  and, when they save `predictions`, the model the predict step used. Saved predictions
  get two columns, `mlops_run_id` (the run's number, as on its page) and
  `mlops_model_uri` (the fixed MLflow URI of the model: `models:/<name>/<version>` when
  the predict step named a registered model, even through an alias, else the model
  logged by the run itself), so each row says where it came from wherever it is copied.
  The step's `lineage_columns` param turns the columns off for tables whose shape is
  fixed. Whatever they save, the steps record a `RunOutput` row: the run keeps what it
  wrote even when the rows carry no columns (saved data, or lineage columns off).
  Outside a run (a step called directly) nothing is added and nothing is recorded.

- `run_lineage(run)` is what the run page and the API show: the reads come from the
  extraction steps' summaries (dataset, version and checksum; or data source, query,
  version query result and time read), the writes from the RunOutput rows, the models
  from the predict and register_model summaries. Its queries do not grow with steps.
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime

import pandas as pd
from django.utils.dateparse import parse_datetime

from datasources.models import Dataset
from experiments import tracking
from pipelines.choices import StepKind, StepRunStatus
from pipelines.engine.registry import STEP_TYPES
from pipelines.models import PipelineRun, RunOutput, StepRun

RUN_ID_COLUMN = "mlops_run_id"
MODEL_URI_COLUMN = "mlops_model_uri"
# The context key where the predict step leaves the fixed URI of the model it used.
PREDICTION_MODEL_KEY = "prediction_model_uri"
DONE = (StepRunStatus.SUCCEEDED, StepRunStatus.REUSED)


@dataclass(frozen=True)
class Producer:
    """Who is saving rows: the run and its running step (None outside a run), the model
    that predicted them (saving predictions) and whether the rows get lineage columns."""

    run_id: int | None
    step_order: int | None
    model_uri: str
    columns: bool

    def stamp(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame with its lineage columns, replacing those of an earlier run."""
        if not self.columns:
            return frame
        return frame.assign(**{RUN_ID_COLUMN: self.run_id, MODEL_URI_COLUMN: self.model_uri})

    def record(self, kind: str, **fields) -> RunOutput | None:
        if self.run_id is None:
            return None
        return RunOutput.objects.create(
            run_id=self.run_id,
            step_order=self.step_order or 0,
            kind=kind,
            model_uri=self.model_uri,
            lineage_columns=self.columns,
            **fields,
        )


def producer(context: dict, source: str, lineage_columns: bool) -> Producer:
    """Who saves `context[source]` now; see the module docstring."""
    tag = tracking.active_run_tags().get("mlops.run_id", "")
    run_id = int(tag) if tag.isdigit() else None
    model_uri = ""
    if source == "predictions":
        # A training step that forecasts (train_forecaster) predicts with the model the
        # engine logged for it, which is `model_uri`.
        model_uri = context.get(PREDICTION_MODEL_KEY) or context.get("model_uri", "")
    return Producer(
        run_id=run_id,
        step_order=_running_step(run_id),
        model_uri=model_uri,
        columns=lineage_columns and source == "predictions" and run_id is not None,
    )


def _running_step(run_id: int | None) -> int | None:
    # The engine records a step as running before it runs it, one step at a time.
    if run_id is None:
        return None
    running = StepRun.objects.filter(run_id=run_id, status=StepRunStatus.RUNNING)
    return running.values_list("order", flat=True).first()


@dataclass
class SourceRead:
    """One extraction step's read: a dataset version, or a query on a data source."""

    order: int
    step: str
    reused: bool
    dataset: str = ""
    dataset_name: str = ""
    dataset_version: int | None = None
    checksum: str = ""
    datasource: str = ""
    query: str = ""
    source_version: str = ""
    read_at: datetime | None = None


@dataclass
class Written:
    """One RunOutput as shown: `dataset_name`/`dataset_version` only while it is stored."""

    order: int
    kind: str
    dataset: str = ""
    dataset_name: str = ""
    dataset_version: int | None = None
    datasource: str = ""
    table: str = ""
    mode: str = ""
    rows: int | None = None
    model_uri: str = ""
    lineage_columns: bool = False


@dataclass
class PredictionModel:
    """The model a predict step used: `asked` is the URI it named (an alias, say)."""

    order: int
    model_uri: str
    asked: str
    trained_in_run: bool


@dataclass
class RegisteredModel:
    order: int
    name: str
    version: int | None
    alias: str | None


@dataclass
class RunLineage:
    reads: list[SourceRead] = field(default_factory=list)
    writes: list[Written] = field(default_factory=list)
    predictions: list[PredictionModel] = field(default_factory=list)
    registered: list[RegisteredModel] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.reads or self.writes or self.predictions or self.registered)

    def as_dict(self) -> dict:
        return asdict(self)


def run_lineage(run: PipelineRun, step_runs: list[StepRun] | None = None) -> RunLineage:
    """What `run` read and wrote, from its step runs (give them when already loaded).

    At most two queries besides the step runs: the datasets read, when a step read one,
    and the outputs, when a save step ran.
    """
    done = [
        s for s in (run.step_runs.all() if step_runs is None else step_runs) if s.status in DONE
    ]
    lineage = RunLineage(reads=_reads(done))
    for step_run in done:
        summary = step_run.summary or {}
        if step_run.step_type == "predict":
            lineage.predictions.append(_prediction_model(step_run.order, summary))
        elif step_run.step_type == "register_model" and summary.get("name"):
            registered = RegisteredModel(
                step_run.order, summary["name"], summary.get("version"), summary.get("alias")
            )
            lineage.registered.append(registered)
    if any(_kind(s) == StepKind.SAVE for s in done):
        lineage.writes = [_written(output) for output in run.outputs.select_related("dataset")]
    return lineage


def _kind(step_run: StepRun) -> str:
    step_class = STEP_TYPES.get(step_run.step_type)
    return step_class.kind if step_class else ""


def _reads(step_runs: list[StepRun]) -> list[SourceRead]:
    extractions = [s for s in step_runs if _kind(s) == StepKind.EXTRACTION]
    ids = [s.summary.get("dataset_id") for s in extractions if s.summary.get("dataset_id")]
    # Linked only while stored: a dataset version may be deleted after the run.
    stored = Dataset.objects.only("name", "version").in_bulk(ids) if ids else {}
    return [_read(s, stored.get(s.summary.get("dataset_id"))) for s in extractions]


def _read(step_run: StepRun, dataset: Dataset | None) -> SourceRead:
    summary = step_run.summary or {}
    read_at = summary.get("read_at")
    return SourceRead(
        order=step_run.order,
        step=step_run.name or step_run.step_type,
        reused=step_run.status == StepRunStatus.REUSED,
        dataset=summary.get("dataset", ""),
        dataset_name=dataset.name if dataset else "",
        dataset_version=dataset.version if dataset else None,
        checksum=summary.get("checksum", ""),
        datasource=summary.get("datasource", ""),
        query=summary.get("query", ""),
        source_version=summary.get("version", ""),
        # A database read records when it read; a dataset version never changes, so the
        # time the step ran is when it was read.
        read_at=parse_datetime(read_at) if read_at else step_run.started_at,
    )


def _written(output: RunOutput) -> Written:
    dataset = output.dataset
    return Written(
        order=output.step_order,
        kind=output.kind,
        dataset=output.dataset_label,
        dataset_name=dataset.name if dataset else "",
        dataset_version=dataset.version if dataset else None,
        datasource=output.datasource,
        table=output.table,
        mode=output.mode,
        rows=output.rows,
        model_uri=output.model_uri,
        lineage_columns=output.lineage_columns,
    )


def _prediction_model(order: int, summary: dict) -> PredictionModel:
    # A registered model's summary has the URI asked for and the version it resolved to;
    # the run's own model has its logged URI only.
    resolved = summary.get("resolved_uri")
    return PredictionModel(
        order=order,
        model_uri=resolved or summary.get("model_uri", ""),
        asked=summary.get("model_uri", "") if resolved else "",
        trained_in_run=not resolved,
    )
