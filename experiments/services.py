"""What the experiment pages show, read from MLflow through `tracking`.

Each function returns plain data for a template, or raises `tracking.TrackingUnavailable`
(the store cannot be reached) or ValueError (a filter or sort the user typed is refused,
with a message that says why).
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db.models import Q

from experiments import tracking
from pipelines.models import Pipeline, PipelineRun

# The main metric of an experiment: the first of these its newest runs have, and whether a
# higher value is better (accuracy for classifiers, r2 for regressors, ...).
MAIN_METRICS = {"accuracy": True, "r2": True, "silhouette": True, "rmse": False}
# The list page finds an experiment's main metric and pipeline in its newest runs...
RUNS_SAMPLED_FOR_SUMMARY = 25
# ...and, when the store cannot count runs (a tracking server), counts this many at most
# (newest first); more are shown as "1,000+".
RUNS_READ_FOR_SUMMARY = 1000
# Runs that are not nested in another (search trials are).
TOP_LEVEL = "tags.`mlflow.parentRunId` IS NULL"
RUNS_PER_PAGE = 25
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
FILTER_OPERATORS = (">=", "<=", "!=", "=", "<", ">")
_FILTER = re.compile(r"\s*(?P<key>[\w.\-/]+)\s*(?P<op>[<>!=~]+)\s*(?P<value>\S+)\s*")
_SORT = re.compile(r"(?P<kind>metrics|params|attributes)\.(?P<key>[\w.\-/]+)")
_SORTABLE_ATTRIBUTES = {"start_time", "end_time", "run_name", "status"}
# MLflow's run statuses as the site's status badges draw them.
STATUS_BADGES = {
    "FINISHED": "succeeded",
    "FAILED": "failed",
    "RUNNING": "running",
    "SCHEDULED": "queued",
    "KILLED": "cancelled",
}


@dataclass
class ExperimentSummary:
    id: str
    name: str
    run_count: int = 0
    more_runs: bool = False
    last_run_at: datetime | None = None
    main_metric: str = ""
    best: float | None = None
    pipeline: Pipeline | None = None


@dataclass
class RunPage:
    runs: list[dict]
    metric_keys: list[str]
    param_keys: list[str]
    next_token: str | None
    filters: list[str] = field(default_factory=list)


def experiment_summaries() -> list[ExperimentSummary]:
    """Every experiment with its run count, last run, best main metric and pipeline.

    Two small searches an experiment and one count for all: reading every run of an
    experiment of 5,000 runs to summarise it took seconds.
    """
    tracking.refresh_query_statistics()
    experiments = tracking.list_experiments()
    counts = tracking.count_runs([experiment["id"] for experiment in experiments])
    summaries, pipeline_ids = [], {}
    for experiment in experiments:
        runs, token = tracking.search_runs(
            [experiment["id"]],
            filter_string=TOP_LEVEL,
            order_by=["attributes.start_time DESC"],
            max_results=RUNS_READ_FOR_SUMMARY if counts is None else RUNS_SAMPLED_FOR_SUMMARY,
        )
        summary = _summarize(experiment, runs, more=counts is None and token is not None)
        if counts is not None:
            summary.run_count = counts[experiment["id"]]
        pipeline_ids[summary.id] = experiment["tags"].get("mlops.pipeline_id") or next(
            (
                run["tags"]["mlops.pipeline_id"]
                for run in runs
                if "mlops.pipeline_id" in run["tags"]
            ),
            None,
        )
        summaries.append(summary)
    _attach_pipelines(summaries, pipeline_ids)
    return summaries


def _summarize(experiment: dict, runs: list[dict], more: bool) -> ExperimentSummary:
    summary = ExperimentSummary(experiment["id"], experiment["name"], len(runs), more)
    if runs:
        summary.last_run_at = _moment(runs[0]["start_time"])
    present = {key for run in runs for key in run["metrics"]}
    summary.main_metric = next((key for key in MAIN_METRICS if key in present), "")
    if summary.main_metric:
        summary.best = _best(experiment["id"], summary.main_metric)
    return summary


def _best(experiment_id: str, metric: str) -> float | None:
    """The best value of a metric over all top-level runs: one search ordered by it
    (MLflow puts runs without the metric, or with NaN, last either way)."""
    order = "DESC" if MAIN_METRICS[metric] else "ASC"
    runs, _ = tracking.search_runs(
        [experiment_id],
        filter_string=TOP_LEVEL,
        order_by=[f"metrics.`{metric}` {order}"],
        max_results=1,
    )
    value = runs[0]["metrics"].get(metric) if runs else None
    return value if value is not None and value == value else None


def _attach_pipelines(summaries: list[ExperimentSummary], pipeline_ids: dict) -> None:
    """Link each experiment to its pipeline, by run tag or by `pipeline/<name>`: one query."""
    ids = {int(value) for value in pipeline_ids.values() if value and value.isdigit()}
    names = {s.name.removeprefix("pipeline/") for s in summaries if s.name.startswith("pipeline/")}
    experiments = {s.name for s in summaries}
    found = Pipeline.objects.filter(
        Q(pk__in=ids) | Q(name__in=names) | Q(mlflow_experiment__in=experiments)
    ).only("pk", "name", "mlflow_experiment")
    by_id = {str(pipeline.pk): pipeline for pipeline in found}
    by_experiment = {pipeline.experiment_name: pipeline for pipeline in found}
    for summary in summaries:
        tagged = by_id.get(pipeline_ids.get(summary.id) or "")
        summary.pipeline = tagged or by_experiment.get(summary.name)


def experiment_runs(
    experiment_id: str,
    status: str = "",
    condition: str = "",
    sort: str = "",
    descending: bool = False,
    page_token: str | None = None,
) -> RunPage:
    """One page of an experiment's runs, filtered and sorted in MLflow."""
    tracking.refresh_query_statistics()
    filters = []
    if status:
        if status not in RUN_STATUSES:
            raise ValueError(f"Unknown status “{status}”; pick one of {', '.join(RUN_STATUSES)}.")
        filters.append(f"attributes.status = '{status}'")
    if condition:
        filters.append(metric_filter(condition))
    order_by = [sort_clause(sort, descending)] if sort else ["attributes.start_time DESC"]
    runs, token = tracking.search_runs(
        [experiment_id],
        filter_string=" AND ".join(filters),
        order_by=order_by,
        max_results=RUNS_PER_PAGE,
        page_token=page_token or None,
    )
    _link_pipeline_runs(runs)
    metric_keys = sorted({key for run in runs for key in run["metrics"]})
    param_keys = sorted({key for run in runs for key in run["params"]})
    return RunPage(runs, metric_keys, param_keys, token, filters)


def metric_filter(condition: str) -> str:
    """`accuracy > 0.9` as MLflow's `metrics.`accuracy` > 0.9`; ValueError saying why not."""
    match = _FILTER.fullmatch(condition)
    if match is None:
        raise ValueError(
            f"“{condition}” is not a metric condition; write it as "
            "<metric> <operator> <number>, for example “accuracy > 0.9”."
        )
    if match["op"] not in FILTER_OPERATORS:
        raise ValueError(
            f"Unknown operator “{match['op']}”; use one of {' '.join(FILTER_OPERATORS)}."
        )
    try:
        value = float(match["value"])
    except ValueError:
        raise ValueError(
            f"“{match['value']}” is not a number; compare the metric with a number."
        ) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"“{match['value']}” is not a finite number.")
    return f"metrics.`{match['key']}` {match['op']} {value!r}"


def sort_clause(sort: str, descending: bool) -> str:
    """`metrics.accuracy` as MLflow's order_by clause; ValueError for anything else."""
    match = _SORT.fullmatch(sort)
    if match is None or (
        match["kind"] == "attributes" and match["key"] not in _SORTABLE_ATTRIBUTES
    ):
        raise ValueError(f"Cannot sort by “{sort}”; sort by a metric, e.g. metrics.accuracy.")
    key = match["key"] if match["kind"] == "attributes" else f"`{match['key']}`"
    return f"{match['kind']}.{key} {'DESC' if descending else 'ASC'}"


def _link_pipeline_runs(runs: list[dict]) -> None:
    """Set each run's `pipeline_run_id` when its mlops.run_id tag names a run that exists."""
    tagged = {run["tags"].get("mlops.run_id", "") for run in runs}
    ids = {int(value) for value in tagged if value.isdigit()}
    existing = {
        str(pk) for pk in PipelineRun.objects.filter(pk__in=ids).values_list("pk", flat=True)
    }
    for run in runs:
        run_id = run["tags"].get("mlops.run_id", "")
        run["pipeline_run_id"] = int(run_id) if run_id in existing else None
        run["started_at"] = _moment(run["start_time"])
        run["nested"] = "mlflow.parentRunId" in run["tags"]
        run["badge"] = STATUS_BADGES.get(run["status"], "")


def _moment(milliseconds: int | None) -> datetime | None:
    if milliseconds is None:
        return None
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
