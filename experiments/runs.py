"""What the MLflow run page shows, read through `tracking`: the run, its metric
histories as bounded chart data, its nested runs and the pipeline run that recorded it.

Any run the tracking store holds is shown, whether or not a pipeline run here recorded
it. Functions raise `tracking.TrackingUnavailable` when the store cannot be reached.
"""

import math
import re
from datetime import UTC, datetime

from django.utils import timezone

from experiments import artifacts, registry, tracking
from experiments.services import STATUS_BADGES
from pipelines.models import PipelineRun

# A chart draws at most this many points; longer histories are sampled evenly.
MAX_CHART_POINTS = 500
# Each metric's history is one request to the store: a run with more metrics gets
# history charts for the first ones (by name) only.
MAX_HISTORIES = 30
MAX_NESTED_RUNS = 100
# MLflow's run ids; anything else is no run, and never reaches a filter string.
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_SYSTEM_TAG_PREFIX = "mlflow."


class RunNotFound(LookupError):
    """The tracking store holds no run with this id."""


def run_detail(mlflow_run_id: str) -> dict:
    """Everything the run page shows, as template context; RunNotFound for no such run."""
    run = _find(mlflow_run_id)
    _add_times(run)
    tags = run["tags"]
    pipeline_run = linked_pipeline_run(tags)
    metrics = metric_rows(run["id"], run["metrics"])
    context = {
        "run": run,
        "experiment": tracking.get_experiment(run["experiment_id"]),
        "parent_id": tags.get("mlflow.parentRunId", ""),
        "pipeline_run": pipeline_run,
        "params": sorted(run["params"].items()),
        "metrics": metrics,
        "charted": any(row["chart"] for row in metrics),
        "max_histories": MAX_HISTORIES,
        "tags": sorted((k, v) for k, v in tags.items() if not k.startswith(_SYSTEM_TAG_PREFIX)),
        "system_tags": sorted((k, v) for k, v in tags.items() if k.startswith(_SYSTEM_TAG_PREFIX)),
        **nested_runs(run["id"], run["experiment_id"]),
        "register": registration(run, pipeline_run),
    }
    # The artifact browser serves only MLflow runs a pipeline run here recorded.
    if pipeline_run is not None and pipeline_run.mlflow_run_id == run["id"]:
        context["artifacts"] = {"mlflow_run_id": run["id"], **artifacts.browse(run["id"], "")}
    return context


def registration_panel(mlflow_run_id: str) -> dict:
    """Only the model panel of the run page, for its HTMX answers; RunNotFound as above."""
    run = _find(mlflow_run_id)
    return {"run": run, "register": registration(run, linked_pipeline_run(run["tags"]))}


def _find(mlflow_run_id: str) -> dict:
    run = tracking.run_details(mlflow_run_id) if _RUN_ID.fullmatch(mlflow_run_id) else None
    if run is None:
        raise RunNotFound(f"The tracking store has no MLflow run {mlflow_run_id}.")
    return run


def registration(run: dict, pipeline_run: PipelineRun | None, form: dict | None = None) -> dict:
    """The run page's model panel: the model the run logged, the registered versions made
    from it (newest first), and the register form's values (`form`, as posted, or the
    suggested name) with the existing model names to pick from."""
    versions = tracking.run_model_versions(run["id"])
    for version in versions:
        version["created_at"] = _moment(version["created"])
    model_uri = run["tags"].get("mlops.model_uri", "")
    return {
        "run_id": run["id"],
        "model_uri": model_uri,
        "versions": versions,
        "form": form or {"name": suggested_model_name(versions, pipeline_run), "alias": ""},
        "model_names": tracking.registered_model_names() if model_uri else [],
        "gated_alias": registry.GATED_ALIAS,
        "suggested_aliases": registry.SUGGESTED_ALIASES,
    }


def suggested_model_name(versions: list[dict], pipeline_run: PipelineRun | None) -> str:
    """The name this run's model was last registered under, else its pipeline's name
    made a valid model name ("iris search" -> "iris-search")."""
    if versions:
        return versions[0]["name"]
    if pipeline_run is None:
        return ""
    name = re.sub(r"[^\w.-]+", "-", pipeline_run.pipeline.name).strip("-.")
    return name[:256] if registry.MODEL_NAME.fullmatch(name[:256]) else ""


def _add_times(run: dict) -> None:
    run["badge"] = STATUS_BADGES.get(run["status"], "")
    run["started_at"] = _moment(run["start_time"])
    run["ended_at"] = _moment(run["end_time"])
    if run["started_at"] is None:
        run["duration"] = None
    else:
        run["duration"] = (run["ended_at"] or timezone.now()) - run["started_at"]


def _moment(milliseconds: int | None) -> datetime | None:
    return None if milliseconds is None else datetime.fromtimestamp(milliseconds / 1000, tz=UTC)


def linked_pipeline_run(tags: dict) -> PipelineRun | None:
    """The pipeline run named by the run's mlops.run_id tag, when it still exists; for a
    search trial (which has no such tag), the pipeline run that recorded its parent."""
    found = PipelineRun.objects.select_related("pipeline")
    tagged = tags.get("mlops.run_id", "")
    if tagged.isdigit():
        return found.filter(pk=int(tagged)).first()
    parent = tags.get("mlflow.parentRunId", "")
    return found.filter(mlflow_run_id=parent).first() if parent else None


def metric_rows(mlflow_run_id: str, metrics: dict) -> list[dict]:
    """Each metric's latest value, with a history chart when it logged more than one."""
    rows = []
    for number, key in enumerate(sorted(metrics)):
        row = {"key": key, "value": metrics[key], "chart": None, "id": f"history-{number}"}
        row["history_read"] = number < MAX_HISTORIES
        if row["history_read"]:
            history = tracking.metric_history(mlflow_run_id, key)
            if len(history) > 1:
                row["chart"] = history_chart(key, history)
        rows.append(row)
    return rows


def history_chart(key: str, history: list[dict]) -> dict:
    """Chart data for a metric's history: at most MAX_CHART_POINTS {x, y} points.

    x is the step; a metric logged several times at the same step is drawn in the order
    it was logged instead, so its values do not pile up on one x.
    """
    steps = [point["step"] for point in history]
    by_step = len(set(steps)) == len(steps)
    points = [
        {"x": step if by_step else number, "y": _finite(point["value"])}
        for number, (step, point) in enumerate(zip(steps, history, strict=True), start=1)
    ]
    shown = downsample(points, MAX_CHART_POINTS)
    return {
        "x": "Step" if by_step else "Value number (in logging order)",
        "y": key,
        "points": shown,
        "total": len(points),
        "sampled": len(shown) < len(points),
    }


def downsample(points: list, limit: int) -> list:
    """Every k-th point, so that at most `limit` remain; the last point is always kept,
    since the latest value of a metric is the one people read off a curve."""
    if len(points) <= limit:
        return points
    kept = points[:: math.ceil(len(points) / limit)]
    kept[-1] = points[-1]
    return kept


def _finite(value: float) -> float | None:
    # JSON has no NaN or infinity; Chart.js leaves a gap for null.
    return value if math.isfinite(value) else None


def nested_runs(mlflow_run_id: str, experiment_id: str) -> dict:
    """The runs nested in this one (search trials), oldest first, with the union of their
    param and metric names for the table's columns."""
    nested, more = tracking.search_runs(
        [experiment_id],
        # The id matched _RUN_ID, so it holds no quote.
        filter_string=f"tags.mlflow.parentRunId = '{mlflow_run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=MAX_NESTED_RUNS,
    )
    for child in nested:
        child["badge"] = STATUS_BADGES.get(child["status"], "")
        child["best"] = child["tags"].get("mlops.best") == "True"
    param_keys = sorted({key for child in nested for key in child["params"]})
    columns = metric_columns({key for child in nested for key in child["metrics"]})
    for child in nested:
        child["param_cells"] = [child["params"].get(key) for key in param_keys]
        child["metric_cells"] = [
            (child["metrics"].get(column["key"]), child["metrics"].get(column["std_key"]))
            for column in columns
        ]
    return {
        "nested": nested,
        "nested_more": more is not None,
        "nested_param_keys": param_keys,
        "nested_metric_columns": columns,
    }


def metric_columns(keys: set[str]) -> list[dict]:
    """The trial table's metric columns: a cross-validated `<name>_mean` shares its column
    with its `<name>_std` ("0.958 ± 0.0118"), which halves the table's width."""
    columns = []
    for key in sorted(keys):
        name = key.removesuffix("_mean")
        if key.endswith("_std") and key.removesuffix("_std") + "_mean" in keys:
            continue
        std_key = f"{name}_std" if key.endswith("_mean") and f"{name}_std" in keys else None
        columns.append({"key": key, "std_key": std_key, "label": name if std_key else key})
    return columns
