"""What the Compare runs page shows: MLflow runs side by side, charted and diffed.

`load_runs` reads the selection once; the other functions take its result and return
plain data for a template. Errors: `BadSelection` (the selection itself is wrong: too
few or too many runs), `RunsNotFound` (ids the store does not hold) and
`tracking.TrackingUnavailable`.
"""

import math
import re

from experiments import tracking
from experiments.services import STATUS_BADGES
from pipelines.models import PipelineRun
from pipelines.progress import definition_diff

MIN_RUNS, MAX_RUNS = 2, 20
# A page of charts stays readable (and its embedded data small) with this many metrics;
# the table above still lists every metric.
MAX_METRIC_CHARTS = 12
# Chart labels longer than this are cut: a bar's label is not the place for a long name.
LABEL_LENGTH = 24
# Metrics where a lower value is better, recognised by a word in their name.
_LOWER_IS_BETTER = re.compile(r"(^|[_.\-])(rmse|mse|mae|mape|loss|error|log_loss)($|[_.\-])")
# A run id as MLflow makes them (uuid4 hex) or any other store could: no spaces, no quotes.
_RUN_ID = re.compile(r"[\w-]{1,64}")


class BadSelection(ValueError):
    """The selection cannot be compared as it is (too few or too many runs)."""


class RunsNotFound(LookupError):
    """Ids in the selection that name no run in the tracking store."""


def load_runs(run_ids: list[str]) -> list[dict]:
    """The selected runs in the order given, each with its `label`, status `badge` and
    `pipeline_run` (the PipelineRun its mlops.run_id tag names, or None)."""
    ids = list(dict.fromkeys(value.strip() for value in run_ids if value.strip()))
    if len(ids) < MIN_RUNS:
        raise BadSelection(
            f"Pick at least {MIN_RUNS} runs to compare; {_count(len(ids))} selected."
        )
    if len(ids) > MAX_RUNS:
        raise BadSelection(f"Pick at most {MAX_RUNS} runs to compare; {_count(len(ids))} selected.")
    found = tracking.get_runs([run_id for run_id in ids if _RUN_ID.fullmatch(run_id)])
    missing = [run_id for run_id in ids if run_id not in found]
    if missing:
        raise RunsNotFound(
            f"No MLflow run has the id {', '.join(missing)}: it may have been deleted, "
            "or the link was cut short."
        )
    runs = [found[run_id] for run_id in ids]
    _attach_pipeline_runs(runs)
    for run in runs:
        run["label"] = run["name"] or run["id"][:8]
        run["badge"] = STATUS_BADGES.get(run["status"], "")
    return runs


def _count(number: int) -> str:
    return "none" if number == 0 else f"only {number}" if number < MIN_RUNS else str(number)


def _attach_pipeline_runs(runs: list[dict]) -> None:
    """One query for the pipeline runs the MLflow runs record (their frozen definitions)."""
    tagged = [run["tags"].get("mlops.run_id", "") for run in runs]
    pks = {int(value) for value in tagged if value.isdigit()}
    by_pk = {str(found.pk): found for found in PipelineRun.objects.filter(pk__in=pks)}
    for run, pk in zip(runs, tagged, strict=True):
        run["pipeline_run"] = by_pk.get(pk)


def side_by_side(runs: list[dict], only_differences: bool = False) -> dict:
    """Rows of params and of metrics, one cell per run; rows whose values are all equal
    are left out when `only_differences`, and counted."""
    params = [_row(key, [run["params"].get(key) for run in runs]) for key in _keys(runs, "params")]
    metrics = [
        _metric_row(key, [run["metrics"].get(key) for run in runs])
        for key in _keys(runs, "metrics")
    ]
    hidden = 0
    if only_differences:
        hidden = sum(1 for row in params + metrics if not row["differs"])
        params = [row for row in params if row["differs"]]
        metrics = [row for row in metrics if row["differs"]]
    return {"params": params, "metrics": metrics, "hidden": hidden}


def _keys(runs: list[dict], kind: str) -> list[str]:
    return sorted({key for run in runs for key in run[kind]})


def _row(key: str, values: list) -> dict:
    cells = [{"value": value, "best": False} for value in values]
    return {"key": key, "cells": cells, "differs": len(set(values)) > 1}


def _metric_row(key: str, values: list) -> dict:
    """A metric's row, its best value marked (every run that reaches it, when tied)."""
    row = _row(key, [_finite(value) for value in values])
    lower = lower_is_better(key)
    present = [value for value in values if _finite(value) is not None]
    row["lower_is_better"] = lower
    if row["differs"] and present:
        best = min(present) if lower else max(present)
        for cell in row["cells"]:
            cell["best"] = cell["value"] == best
    return row


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of the metric is better: errors and losses."""
    return bool(_LOWER_IS_BETTER.search(metric.lower()))


def _finite(value) -> float | None:
    """The metric as a float, or None for a missing, NaN or infinite one (JSON has none)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def metric_charts(runs: list[dict]) -> dict:
    """One bar chart per metric (at most MAX_METRIC_CHARTS), a bar per run, in the form
    static/js/charts.js draws: {"id", "labels", "values", "x", "y"}."""
    keys = _keys(runs, "metrics")
    labels = _chart_labels(runs)
    charts = [
        {
            "id": f"metric-chart-{number}",
            "metric": key,
            "lower_is_better": lower_is_better(key),
            "labels": labels,
            "values": [_finite(run["metrics"].get(key)) for run in runs],
            "x": "Run",
            "y": key,
        }
        for number, key in enumerate(keys[:MAX_METRIC_CHARTS], start=1)
    ]
    return {"charts": charts, "left_out": max(len(keys) - MAX_METRIC_CHARTS, 0)}


def _chart_labels(runs: list[dict]) -> list[str]:
    """Run labels for an axis: short, and unique (two runs may share a name)."""
    labels, seen = [], {}
    for run in runs:
        label = run["label"]
        if len(label) > LABEL_LENGTH:
            label = label[: LABEL_LENGTH - 1] + "…"
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return labels


def scatter(runs: list[dict], param: str = "", metric: str = "") -> dict:
    """One param against one metric, a point per run that has both.

    Without a choice (or with one the runs lack) the param is the first whose value
    differs between the runs and the metric the first one. A param whose values are all
    numbers is plotted on a number axis, any other on an axis of its values (sorted).
    """
    params, metrics = _keys(runs, "params"), _keys(runs, "metrics")
    if param not in params:
        differing = [key for key in params if len({run["params"].get(key) for run in runs}) > 1]
        param = (differing or params or [""])[0]
    if metric not in metrics:
        metric = (metrics or [""])[0]
    pairs = [(run, run["params"].get(param), _finite(run["metrics"].get(metric))) for run in runs]
    pairs = [(run, x, y) for run, x, y in pairs if x not in (None, "None") and y is not None]
    numeric = bool(pairs) and all(_number(x) is not None for _, x, _ in pairs)
    labels = _chart_labels([run for run, _, _ in pairs])
    points = [
        {"x": _number(x) if numeric else x, "y": y, "label": label}
        for (_, x, y), label in zip(pairs, labels, strict=True)
    ]
    return {
        "params": params,
        "metrics": metrics,
        "param": param,
        "metric": metric,
        "left_out": len(runs) - len(points),
        "chart": {
            "points": points,
            "numeric": numeric,
            "categories": [] if numeric else sorted({point["x"] for point in points}),
            "x": param,
            "y": metric,
        },
    }


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def definitions_diff(runs: list[dict], a: str = "", b: str = "") -> dict:
    """The diff of the frozen definitions of runs `a` and `b` (ids among `runs`; the
    first two by default), or what is missing to make one."""
    by_id = {run["id"]: run for run in runs}
    a = a if a in by_id else runs[0]["id"]
    b = b if b in by_id else next((run["id"] for run in runs if run["id"] != a), a)
    first, second = by_id[a], by_id[b]
    result = {"a": first, "b": second, "lines": [], "missing": [], "same_run": a == b}
    result["missing"] = [run for run in (first, second) if run["pipeline_run"] is None]
    if result["missing"] or result["same_run"]:
        return result
    lines = definition_diff(first["pipeline_run"].definition, second["pipeline_run"].definition)
    if lines:
        # The file headers name the two runs, as the history page's diff names versions.
        lines = [f"--- {first['label']}", f"+++ {second['label']}", *lines[2:]]
    result["lines"] = lines
    result["added"] = sum(1 for line in lines[2:] if line.startswith("+"))
    result["removed"] = sum(1 for line in lines[2:] if line.startswith("-"))
    return result
