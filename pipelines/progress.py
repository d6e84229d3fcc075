"""What the run pages show of runs, as plain functions the API can reuse.

`run_progress` is what a page polling a run needs: its state, its steps and only the log
text it has not seen yet. `definition_diff` compares a run's frozen definition with the
pipeline as it is now. `run_page` is one page of the runs list, filtered.
"""

import difflib
import json
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.core.paginator import Page, Paginator
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce, Length, Substr
from django.utils import timezone

from pipelines.choices import ACTIVE_RUN_STATUSES, StepRunStatus
from pipelines.models import PipelineRun, StepRun

RUNS_PER_PAGE = 50
# The engine writes its last log lines just after it marks a run finished; a poller
# keeps asking this long after the end so that it receives them.
LOG_SETTLE = timedelta(seconds=3)
# Fields of a run that change while it runs, read again on every poll.
LIVE_FIELDS = (
    "status",
    "started_at",
    "finished_at",
    "error_message",
    "error_traceback",
    "metrics",
    "mlflow_run_id",
    "cancel_requested",
)
DONE_STEP_STATUSES = (StepRunStatus.SUCCEEDED, StepRunStatus.REUSED)


@dataclass
class RunProgress:
    """A run as a poller sees it: `log_text` is the log after the position it sent, and
    `log_position` the position to send next time. `finished` means nothing more will
    change (the run ended and its last log lines are in), so polling may stop."""

    run: PipelineRun
    status: str
    finished: bool
    step_runs: list[StepRun]
    log_text: str
    log_position: int
    metrics: dict
    pending_steps: list[dict] = field(default_factory=list)
    retries: list[PipelineRun] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_RUN_STATUSES

    @property
    def steps_done(self) -> int:
        return sum(1 for step_run in self.step_runs if step_run.status in DONE_STEP_STATUSES)

    @property
    def current_step(self) -> StepRun | None:
        """The step running now, if any."""
        running = (s for s in self.step_runs if s.status == StepRunStatus.RUNNING)
        return next(running, None)

    @property
    def elapsed(self) -> timedelta | None:
        """The run's duration, or its time so far while it runs."""
        if self.run.started_at is None:
            return None
        return (self.run.finished_at or timezone.now()) - self.run.started_at


def run_progress(run: PipelineRun, log_position: int = 0) -> RunProgress:
    """Bring `run` up to date and return its progress, with the log after `log_position`.

    The position counts characters of the run's log; only the new part leaves the
    database, so polling a long log stays cheap.
    """
    position = max(int(log_position), 0)
    live = (
        PipelineRun.objects.filter(pk=run.pk)
        .annotate(log_length=Length("logs"), log_tail=Substr("logs", position + 1))
        .values(*LIVE_FIELDS, "log_length", "log_tail")
        .get()
    )
    for name in LIVE_FIELDS:
        setattr(run, name, live[name])
    step_runs = list(run.step_runs.order_by("order"))
    # A position past the end (a log that was cut) gets nothing and the end's position.
    tail = (live["log_tail"] or "") if position < live["log_length"] else ""
    return RunProgress(
        run=run,
        status=run.status,
        finished=_settled(run),
        step_runs=step_runs,
        log_text=tail,
        log_position=live["log_length"],
        metrics=run.metrics or {},
        pending_steps=_pending_steps(run.definition, step_runs),
        # A failed run with retries left gets its next attempt when it ends.
        retries=list(run.retries.order_by("attempt", "pk").only("pk", "attempt", "retry_of")),
    )


def _settled(run: PipelineRun) -> bool:
    if run.status in ACTIVE_RUN_STATUSES:
        return False
    return run.finished_at is None or timezone.now() - run.finished_at >= LOG_SETTLE


def _pending_steps(definition: dict, step_runs: list[StepRun]) -> list[dict]:
    """The enabled steps of the frozen definition that have no StepRun (yet)."""
    recorded = {step_run.order for step_run in step_runs}
    steps = [
        step
        for step in (definition or {}).get("steps", [])
        if step.get("enabled", True) and step.get("order") not in recorded
    ]
    return sorted(steps, key=lambda step: step.get("order", 0))


def definition_diff(old: dict, new: dict) -> list[str]:
    """A unified diff of two pipeline definitions as pretty JSON; [] when identical.

    Keys are sorted so that only a change of content shows, never a change of key order.
    """
    return list(
        difflib.unified_diff(
            _pretty(old), _pretty(new), "definition the run ran", "pipeline now", lineterm=""
        )
    )


def _pretty(definition: dict) -> list[str]:
    return json.dumps(definition, indent=2, sort_keys=True, default=str).splitlines()


def enabled_step_count(definition: dict) -> int:
    return sum(1 for step in (definition or {}).get("steps", []) if step.get("enabled", True))


def filter_runs(
    *,
    pipeline=None,
    status: str = "",
    trigger: str = "",
    user=None,
    created_from: date | None = None,
    created_to: date | None = None,
):
    """Runs newest first, with their pipeline, who started them and their done steps.

    Dates are days in the current time zone, both ends included.
    """
    runs = PipelineRun.objects.all()
    if pipeline is not None:
        runs = runs.filter(pipeline=pipeline)
    if status:
        runs = runs.filter(status=status)
    if trigger:
        runs = runs.filter(trigger=trigger)
    if user is not None:
        runs = runs.filter(started_by=user)
    if created_from:
        runs = runs.filter(created_at__date__gte=created_from)
    if created_to:
        runs = runs.filter(created_at__date__lte=created_to)
    return _with_list_columns(runs).order_by("-created_at", "-pk")


def _with_list_columns(runs):
    # A subquery rather than Count() over a join: no GROUP BY over the JSON columns.
    done = (
        StepRun.objects.filter(run=OuterRef("pk"), status__in=DONE_STEP_STATUSES)
        .order_by()
        .values("run")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return (
        runs.select_related("pipeline", "started_by")
        .defer("logs", "error_traceback", "pipeline__description")
        .annotate(steps_done=Coalesce(Subquery(done, output_field=IntegerField()), 0))
    )


def run_page(runs, page_number, per_page: int = RUNS_PER_PAGE) -> Page:
    """One page of `runs`; a number past the end gives the last page, a bad one the first."""
    page = Paginator(runs, per_page).get_page(page_number)
    page.object_list = list(page.object_list)
    for run in page.object_list:
        run.steps_total = enabled_step_count(run.definition)
    return page
