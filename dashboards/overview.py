"""The operations overview (the home page): is the platform healthy, what runs, how models do.

Plain functions returning plain data (dicts, lists, numbers, datetimes) for the template.
Each one is a single aggregate query whatever the number of pipelines or runs (no loop
of queries over pipelines), plus, for the durations and the slowest steps, one small query
for the names of the pipelines shown; `section()` groups them as the page shows them and keeps each
group in the cache for `MLOPS_OVERVIEW_CACHE_SECONDS`.

Durations are computed by the database (`Seconds`), percentiles in Python over the one
column of durations the query returns: portable across SQLite, MariaDB and PostgreSQL.
"""

import json
import math
from datetime import datetime, time, timedelta
from itertools import pairwise

from django.conf import settings
from django.core.cache import cache
from django.db.models import (
    Avg,
    Count,
    FloatField,
    Func,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Substr
from django.utils import timezone

from experiments.models import LATENCY_BUCKETS_MS, ServingStat, latency_percentile
from experiments.services import MAIN_METRICS
from pipelines.choices import RunStatus, StepRunStatus
from pipelines.models import Pipeline, PipelineRun, PipelineSchedule, StepRun

HISTORY_DAYS = 30  # runs per day and the success rate
# Durations and step timings: a week of runs keeps the page's cost bounded (about 7,000
# runs and 35,000 step runs a week in bench/dashboards.py) and shows today's behaviour.
# 30 days cost about 50 ms more for the durations (30,000 rows to Python) and 150 ms more
# for the step timings (150,000 step runs) on SQLite: over the page's 200 ms target.
TIMING_DAYS = 7
FAILURE_DAYS = 7  # recent failures
TRAFFIC_HOURS = 24  # online prediction traffic
TREND_RUNS = 10  # a pipeline's main metric over its last succeeded runs
DURATION_ROWS = 12  # pipelines shown in the durations table (slowest p95 first)
SLOWEST_STEPS = 10
NEXT_SCHEDULED = 8
RECENT_FAILURES = 8
ERROR_PREVIEW_CHARS = 500  # read of each failure's message; the page shows its first line
BUCKET_FIELDS = [f"latency_le_{bound}ms" for bound in LATENCY_BUCKETS_MS] + ["latency_over_2500ms"]
# Status order of the stacked bars, bottom first.
DAY_STATUSES = [
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    RunStatus.RUNNING,
    RunStatus.QUEUED,
]


class Seconds(Func):
    """`end - start` in seconds (a float), computed by the database.

    Django's own DurationField subtraction calls a Python function per row on SQLite;
    `julianday` is native, so 30,000 durations cost milliseconds.
    """

    output_field = FloatField()
    arity = 2

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(
            compiler,
            connection,
            template="((julianday(%(expressions)s)) * 86400.0)",
            arg_joiner=") - julianday(",
            **extra,
        )

    def as_mysql(self, compiler, connection, **extra):
        # TIMESTAMPDIFF(unit, start, end): the arguments the other way round.
        swapped = self.copy()
        swapped.set_source_expressions(self.get_source_expressions()[::-1])
        return swapped.as_sql(
            compiler,
            connection,
            template="(TIMESTAMPDIFF(MICROSECOND, %(expressions)s) / 1000000.0)",
            arg_joiner=", ",  # as_sql() below would join them with " - "
            **extra,
        )

    def as_sql(self, compiler, connection, **extra):
        extra.setdefault("template", "EXTRACT(EPOCH FROM (%(expressions)s))")
        extra.setdefault("arg_joiner", " - ")
        return super().as_sql(compiler, connection, **extra)


def percentile(ordered: list[float], share: float) -> float | None:
    """Nearest-rank percentile of an ascending list: the smallest value with at least
    `share` of the values at or below it (p50 of 1..4 is 2, p95 of 1..20 is 19)."""
    if not ordered:
        return None
    rank = max(math.ceil(share * len(ordered)), 1)
    return ordered[rank - 1]


def _day_starts(days: int) -> list[datetime]:
    """Midnight (current time zone) of each of the last `days` days, oldest first, and of
    tomorrow: `days + 1` boundaries, right across a DST change."""
    today = timezone.localdate()
    zone = timezone.get_current_timezone()
    return [
        timezone.make_aware(datetime.combine(today - timedelta(days=back), time.min), zone)
        for back in range(days - 1, -2, -1)
    ]


# --- Runs: the last 30 days ---------------------------------------------------------


def runs_per_day(days: int = HISTORY_DAYS) -> dict:
    """Runs created on each of the last `days` days (current time zone) by status, and the
    success rate: succeeded / (succeeded + failed); cancelled runs are not counted.

    One query: a UNION ALL of one small GROUP BY status per day, each a range of the
    `run_timeline` index between two local midnights (time-zone and DST correct, no
    per-row date function or CASE: a binary-search CASE of the days cost 3x as much).
    """
    starts = _day_starts(days)
    per_day = [
        PipelineRun.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(day=Value(index, output_field=IntegerField()))
        .values_list("day", "status")
        .annotate(n=Count("pk"))
        .order_by()
        for index, (start, end) in enumerate(pairwise(starts))
    ]
    rows = per_day[0].union(*per_day[1:], all=True)
    counts = {status: [0] * days for status in DAY_STATUSES}
    for index, status, n in rows:
        counts.setdefault(status, [0] * days)[index] += n
    totals = {status: sum(values) for status, values in counts.items()}
    finished = totals[RunStatus.SUCCEEDED] + totals[RunStatus.FAILED]
    return {
        "days": days,
        "labels": [f"{start:%b} {start.day}" for start in starts[:-1]],
        "series": [
            {
                "status": str(status),
                "label": status.label,
                "values": counts[status],
                "total": totals[status],
            }
            for status in DAY_STATUSES
        ],
        "breakdown": [(totals[status], status.label) for status in DAY_STATUSES if totals[status]],
        "total": sum(totals.values()),
        "totals": {str(status): n for status, n in totals.items()},
        "succeeded": totals[RunStatus.SUCCEEDED],
        "failed": totals[RunStatus.FAILED],
        "success_rate": (100.0 * totals[RunStatus.SUCCEEDED] / finished) if finished else None,
    }


def run_durations(days: int = TIMING_DAYS, limit: int = DURATION_ROWS) -> dict:
    """p50 / p95 / max duration of each pipeline's succeeded runs created in the last
    `days` days; the `limit` pipelines with the slowest p95 first.

    One query returns (pipeline id, seconds) rows, read from the `run_timeline` index
    alone (no run row, no join for the name); the percentiles are taken in Python
    (nearest rank) and the names of the pipelines shown come from one small query.
    """
    since = timezone.now() - timedelta(days=days)
    rows = (
        PipelineRun.objects.filter(
            created_at__gte=since,
            status=RunStatus.SUCCEEDED,
            started_at__isnull=False,
            finished_at__isnull=False,
        )
        .annotate(seconds=Seconds("finished_at", "started_at"))
        .values_list("pipeline_id", "seconds")
        .order_by()
    )
    grouped: dict[int, list[float]] = {}
    for pipeline_id, seconds in rows:
        grouped.setdefault(pipeline_id, []).append(max(seconds or 0.0, 0.0))
    pipelines = []
    for pipeline_id, values in grouped.items():
        values.sort()
        pipelines.append(
            {
                "id": pipeline_id,
                "runs": len(values),
                "p50": percentile(values, 0.50),
                "p95": percentile(values, 0.95),
                "max": values[-1],
            }
        )
    pipelines.sort(key=lambda row: (-row["p95"], row["id"]))
    shown = pipelines[:limit]
    names = _pipeline_names(row["id"] for row in shown)
    longest = max((row["p95"] for row in shown), default=0) or 1
    for row in shown:
        row["name"] = names.get(row["id"], "")
        row["p50_share"] = round(100 * row["p50"] / longest, 1)
        row["p95_share"] = round(100 * row["p95"] / longest, 1)
    return {"days": days, "rows": shown, "pipelines": len(pipelines)}


def _pipeline_names(ids) -> dict[int, str]:
    """The names of a few pipelines by id: one query over the pipelines shown, where a
    join would fetch a name for each of thousands of rows."""
    return dict(Pipeline.objects.filter(pk__in=set(ids)).values_list("pk", "name"))


def slowest_steps(days: int = TIMING_DAYS, limit: int = SLOWEST_STEPS) -> list[dict]:
    """The steps (pipeline + step order) with the longest mean duration over the succeeded
    step runs of runs created in the last `days` days.

    `run IN (runs since ...)` lets the database walk from the created_at index to each
    run's step runs; a join filtered on the run's created_at scanned every step run.
    The pipelines' names come from one small query over the `limit` rows shown.
    """
    since = timezone.now() - timedelta(days=days)
    rows = list(
        StepRun.objects.filter(
            run_id__in=PipelineRun.objects.filter(created_at__gte=since).order_by().values("pk"),
            status=StepRunStatus.SUCCEEDED,
            started_at__isnull=False,
            finished_at__isnull=False,
        )
        .values_list("run__pipeline_id", "order")
        .annotate(
            step_name=Max("name"),
            step_type=Max("step_type"),
            runs=Count("pk"),
            mean=Avg(Seconds("finished_at", "started_at")),
            longest=Max(Seconds("finished_at", "started_at")),
        )
        .order_by("-mean", "run__pipeline_id", "order")[:limit]
    )
    names = _pipeline_names(row[0] for row in rows)
    return [
        {
            "pipeline_id": pipeline_id,
            "pipeline": names.get(pipeline_id, ""),
            "order": order,
            "name": step_name or step_type,
            "step_type": step_type,
            "runs": runs,
            "mean": max(mean or 0.0, 0.0),
            "max": max(longest or 0.0, 0.0),
        }
        for pipeline_id, order, step_name, step_type, runs, mean, longest in rows
    ]


# --- Now ----------------------------------------------------------------------------


def active_runs() -> dict:
    """Runs queued and running now, and how long the oldest queued run has waited."""
    now = timezone.now()
    # `pipeline IN (every pipeline)` lets the database seek the (pipeline, status) index
    # for each pipeline instead of reading every run for its status.
    found = PipelineRun.objects.filter(
        pipeline_id__in=Pipeline.objects.order_by().values("pk"),
        status__in=[RunStatus.QUEUED, RunStatus.RUNNING],
    ).aggregate(
        queued=Count("pk", filter=Q(status=RunStatus.QUEUED)),
        running=Count("pk", filter=Q(status=RunStatus.RUNNING)),
        oldest_queued=Min("created_at", filter=Q(status=RunStatus.QUEUED)),
        oldest_running=Min("started_at", filter=Q(status=RunStatus.RUNNING)),
    )
    oldest = found["oldest_queued"]
    running_since = found["oldest_running"]
    return {
        "queued": found["queued"],
        "running": found["running"],
        "oldest_queued_wait": (now - oldest).total_seconds() if oldest else None,
        "longest_running": (now - running_since).total_seconds() if running_since else None,
    }


def workers() -> dict:
    """django-q2's clusters that reported in the last seconds (`Stat.get_all()`) and
    their worker processes. `problem` says why the stats could not be read."""
    from django_q.conf import Conf
    from django_q.status import Stat

    try:
        stats = Stat.get_all()
    except Exception as error:  # The broker (Redis) or the cache is down: say so.
        return {"clusters": None, "workers": None, "problem": f"{type(error).__name__}: {error}"}
    alive = [stat for stat in stats if str(stat.status) != str(Conf.STOPPED)]
    return {
        "clusters": len(alive),
        "workers": sum(len(stat.workers or []) for stat in alive),
        "hosts": sorted({stat.host for stat in alive}),
        "problem": "",
    }


def task_queue() -> dict:
    """Tasks waiting in the django-q2 broker and the age of the oldest one.

    ORM broker: one query over its OrmQ table (a task is waiting while its lock time is
    in the past; a worker that takes it moves the lock into the future; the lock starts
    at the enqueue time). Redis broker: the list's length; Redis keeps no enqueue time,
    so the age is not known.
    """
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.models import OrmQ

    now = timezone.now()
    if Conf.ORM:
        found = (
            OrmQ.objects.using(Conf.ORM)
            .filter(key=Conf.CLUSTER_NAME)
            .aggregate(
                waiting=Count("pk", filter=Q(lock__lte=now)),
                taken=Count("pk", filter=Q(lock__gt=now)),
                oldest=Min("lock", filter=Q(lock__lte=now)),
            )
        )
        oldest = found["oldest"]
        return {
            "broker": "ORM",
            "depth": found["waiting"],
            "taken": found["taken"],
            "oldest_age": (now - oldest).total_seconds() if oldest else None,
            "age_known": True,
            "problem": "",
        }
    try:
        broker = get_broker()
        depth = broker.queue_size()
    except Exception as error:
        return {"broker": "Redis", "depth": None, "problem": f"{type(error).__name__}: {error}"}
    return {
        "broker": type(broker).__name__,
        "depth": depth,
        "taken": None,
        "oldest_age": None,
        "age_known": False,
        "problem": "",
    }


def next_scheduled(limit: int = NEXT_SCHEDULED) -> list[dict]:
    """The next ticks of enabled schedules, soonest first."""
    schedules = (
        PipelineSchedule.objects.filter(enabled=True, next_tick_at__isnull=False)
        .order_by("next_tick_at", "pk")
        .values(
            "pk",
            "pipeline_id",
            "pipeline__name",
            "cron",
            "timezone",
            "interval_seconds",
            "next_tick_at",
        )[:limit]
    )
    return [
        {
            "pipeline_id": row["pipeline_id"],
            "pipeline": row["pipeline__name"],
            "at": row["next_tick_at"],
            "every": (
                f"cron {row['cron']} ({row['timezone']})"
                if row["cron"]
                else f"every {row['interval_seconds']} s"
            ),
            "interval_seconds": None if row["cron"] else row["interval_seconds"],
        }
        for row in schedules
    ]


def recent_failures(days: int = FAILURE_DAYS, limit: int = RECENT_FAILURES) -> list[dict]:
    """The latest failed runs of the last `days` days, with the first line of the error."""
    since = timezone.now() - timedelta(days=days)
    runs = (
        PipelineRun.objects.filter(status=RunStatus.FAILED, created_at__gte=since)
        .annotate(error_start=Substr("error_message", 1, ERROR_PREVIEW_CHARS))
        .order_by("-created_at", "-pk")
        .values("pk", "pipeline_id", "pipeline__name", "created_at", "finished_at", "error_start")[
            :limit
        ]
    )
    return [
        {
            "pk": run["pk"],
            "pipeline_id": run["pipeline_id"],
            "pipeline": run["pipeline__name"],
            "at": run["finished_at"] or run["created_at"],
            "error": first_line(run["error_start"]),
        }
        for run in runs
    ]


def first_line(text: str | None) -> str:
    """The first non-blank line of an error message."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


# --- Models -------------------------------------------------------------------------


def main_metrics(last: int = TREND_RUNS) -> list[dict]:
    """Each pipeline's main metric (the first of MAIN_METRICS its latest succeeded run
    recorded, else the newest run that recorded one) with its latest value and its values
    over the pipeline's last `last` succeeded runs, oldest first.

    One query over the pipelines: the metrics of the k-th newest succeeded run as the
    k-th of `last` correlated subqueries (LIMIT 1 OFFSET k), each a short walk of the
    (pipeline, created_at) index. A window function over every run took 300 ms at
    100,000 runs on SQLite; this stays a few ms whatever the history.
    """
    succeeded = PipelineRun.objects.filter(
        pipeline=OuterRef("pk"), status=RunStatus.SUCCEEDED
    ).order_by("-created_at", "-pk")
    columns = {f"m{k}": Subquery(succeeded.values("metrics")[k : k + 1]) for k in range(last)}
    rows = (
        Pipeline.objects.annotate(
            latest_pk=Subquery(succeeded.values("pk")[:1]),
            latest_at=Subquery(succeeded.values("created_at")[:1]),
            **columns,
        )
        .filter(latest_pk__isnull=False)
        .order_by("name")
        .values("pk", "name", "latest_pk", "latest_at", *columns)
    )
    found = []
    for row in rows:
        history = [_metrics(row[f"m{k}"]) for k in range(last - 1, -1, -1)]  # oldest first
        history = [metrics for metrics in history if metrics is not None]
        newest = history[-1] if history else {}
        metric = next(
            (key for key in MAIN_METRICS if _number(newest.get(key)) is not None),
            next(
                (
                    key
                    for metrics in reversed(history)
                    for key in MAIN_METRICS
                    if _number(metrics.get(key)) is not None
                ),
                None,
            ),
        )
        if metric is None:
            continue
        values = [
            value for metrics in history if (value := _number(metrics.get(metric))) is not None
        ]
        higher_is_better = MAIN_METRICS[metric]
        change = values[-1] - values[-2] if len(values) > 1 else None
        if change is None or change == 0:
            direction, verdict = ("same" if change == 0 else ""), ""
        else:
            direction = "up" if change > 0 else "down"
            verdict = "better" if (change > 0) == higher_is_better else "worse"
        latest_has_it = _number(newest.get(metric)) is not None
        found.append(
            {
                "pipeline_id": row["pk"],
                "pipeline": row["name"],
                "metric": metric,
                "higher_is_better": higher_is_better,
                "latest": values[-1],
                # The run the latest value came from, when it is the latest succeeded run.
                "latest_run": row["latest_pk"] if latest_has_it else None,
                "latest_at": row["latest_at"],
                "values": values,
                "previous": values[-2] if len(values) > 1 else None,
                "change": change,
                "direction": direction,
                "verdict": verdict,
                "sparkline": sparkline(values),
            }
        )
    return found


def _metrics(value) -> dict | None:
    """A run's metrics from a subquery column: a dict, JSON text on some backends, or None
    when the pipeline has fewer succeeded runs."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def sparkline(values: list[float], width: int = 96, height: int = 24, pad: int = 3) -> str:
    """SVG polyline points drawing `values` left to right in a width x height box."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low
    step = (width - 2 * pad) / (len(values) - 1) if len(values) > 1 else 0
    points = []
    for index, value in enumerate(values):
        x = pad + index * step if len(values) > 1 else width / 2
        y = height / 2 if not span else pad + (high - value) / span * (height - 2 * pad)
        points.append(f"{x:.1f},{y:.1f}")
    return " ".join(points)


def serving_traffic(hours: int = TRAFFIC_HOURS) -> dict:
    """Online prediction traffic of each registered model over the last `hours` hours:
    requests, rows, errors, mean and p95 latency (p95 from the summed histogram)."""
    since = timezone.now() - timedelta(hours=hours)
    rows = (
        ServingStat.objects.filter(minute__gte=since)
        .values("model_name")
        .annotate(
            total_requests=Sum("requests"),
            total_errors=Sum("errors"),
            total_rows=Sum("rows"),
            latency_total=Sum("latency_ms_total"),
            latency_max=Max("latency_ms_max"),
            versions=Count("version", distinct=True),
            latest_version=Max("version"),
            **{f"sum_{field}": Sum(field) for field in BUCKET_FIELDS},
        )
        .order_by("-total_requests", "model_name")
    )
    models = []
    for row in rows:
        requests = row["total_requests"] or 0
        buckets = {field: row[f"sum_{field}"] or 0 for field in BUCKET_FIELDS}
        p95 = latency_percentile(buckets, 0.95)
        models.append(
            {
                "name": row["model_name"],
                "requests": requests,
                "rows": row["total_rows"] or 0,
                "errors": row["total_errors"] or 0,
                "error_rate": 100.0 * (row["total_errors"] or 0) / requests if requests else None,
                "mean_ms": (row["latency_total"] or 0) / requests if requests else None,
                # Beyond the last bucket's bound (2,500 ms): the page says "> 2,500 ms".
                "p95_ms": p95 if p95 is None or math.isfinite(p95) else None,
                "p95_over": p95 is not None and not math.isfinite(p95),
                "max_ms": row["latency_max"],
                "versions": row["versions"],
                "latest_version": row["latest_version"],
            }
        )
    return {"hours": hours, "models": models}


# --- Sections as the page shows them, cached ------------------------------------------


def now_section() -> dict:
    return {
        "active": active_runs(),
        "workers": workers(),
        "queue": task_queue(),
        "scheduled": next_scheduled(),
        "failures": recent_failures(),
        "failure_days": FAILURE_DAYS,
    }


def runs_section() -> dict:
    return {
        "per_day": runs_per_day(),
        "durations": run_durations(),
        "slowest_steps": slowest_steps(),
        "timing_days": TIMING_DAYS,
    }


def models_section() -> dict:
    return {"metrics": main_metrics(), "traffic": serving_traffic(), "trend_runs": TREND_RUNS}


SECTIONS = {"now": now_section, "runs": runs_section, "models": models_section}


def section(name: str) -> dict:
    """One section's data, from the cache when computed less than
    MLOPS_OVERVIEW_CACHE_SECONDS ago; `as_of` says when it was computed."""
    compute = SECTIONS[name]
    seconds = settings.MLOPS_OVERVIEW_CACHE_SECONDS
    if seconds <= 0:
        return {**compute(), "as_of": timezone.now()}
    # Days are cut in the current time zone: a zone's data is its own.
    key = f"mlops:overview:{name}:{timezone.get_current_timezone_name()}"
    data = cache.get(key)
    if data is None:
        data = {**compute(), "as_of": timezone.now()}
        cache.set(key, data, seconds)
    return data


def overview() -> dict:
    """Every section of the page."""
    return {name: section(name) for name in SECTIONS}
