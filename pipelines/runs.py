"""The run lifecycle: start, dispatch, execute, retry, cancel, reap.

Every trigger (page, API, admin, command, schedule) starts runs through `start_run`;
workers execute them through `execute_run`.
"""

from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from experiments import tracking
from pipelines.choices import ConcurrencyPolicy, RunStatus, RunTrigger, StepRunStatus
from pipelines.engine.cache import StepCache
from pipelines.engine.runner import PipelineEngine
from pipelines.models import Pipeline, PipelineRun, StepRun
from pipelines.supervisor import supervise
from pipelines.validation import PipelineInvalid, StepError, ensure_valid


class PipelineBusy(Exception):
    """The pipeline is at its active-run limit and its policy refuses new runs."""


def start_run(
    pipeline: Pipeline,
    *,
    trigger: str = RunTrigger.MANUAL,
    user=None,
    from_step: int | None = None,
    to_step: int | None = None,
    wait: bool = False,
    idempotency_key: str = "",
) -> PipelineRun:
    """Validate, freeze the definition into a new run, and queue or execute it.

    Without `wait` a worker picks the run up once the transaction that created it has
    committed (or later, when the pipeline is at its active-run limit and queues). With
    `wait` (the command line) it executes in this process and needs a free slot.
    An `idempotency_key` already used by the same user within a day returns that run,
    with `replayed` set so the caller can say it is not new.

    `from_step` starts at that step, reusing the fresh cache of the steps before it;
    `to_step` stops after that step. Both together with one order run that step alone.
    """
    definition = pipeline.definition()
    ensure_valid(definition["steps"])
    _check_step_range(definition["steps"], from_step, to_step)
    with transaction.atomic():
        locked = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
        earlier = _run_with_key(locked, user, idempotency_key)
        if earlier is not None:
            earlier.replayed = True
            return earlier
        free = locked.runs.occupying().count() < locked.max_active_runs
        if not free and (wait or locked.concurrency_policy == ConcurrencyPolicy.REFUSE):
            raise PipelineBusy(_busy_message(locked))
        run = PipelineRun.objects.create(
            pipeline=locked,
            trigger=trigger,
            started_by=user if user and user.is_authenticated else None,
            definition=definition,
            start_step=from_step,
            stop_step=to_step,
            dispatched_at=timezone.now() if free else None,
            idempotency_key=idempotency_key if user and user.is_authenticated else "",
        )
        if not free:
            run.append_log("Waiting: the pipeline is at its active-run limit.")
        elif not wait:
            transaction.on_commit(partial(enqueue, run.pk))
    if wait:
        execute_run(run.pk, isolated=settings.MLOPS_ISOLATE_RUNS)
        run.refresh_from_db()
    return run


def rerun(run: PipelineRun, **options) -> PipelineRun:
    """Start `run`'s pipeline again over the same steps ("Run again" on the pages, rerun
    in the API). It runs the pipeline as it is now, not the run's frozen definition.

    `options` are start_run's: trigger, user, idempotency_key.
    """
    return start_run(run.pipeline, from_step=run.start_step, to_step=run.stop_step, **options)


def _check_step_range(steps: list[dict], from_step: int | None, to_step: int | None) -> None:
    errors = [
        error
        for field, order in (("from_step", from_step), ("to_step", to_step))
        if order is not None
        for error in _step_choice_errors(steps, field, order)
    ]
    if not errors and None not in (from_step, to_step) and to_step < from_step:
        errors.append(StepError(to_step, "to_step", f"comes before from_step ({from_step})"))
    if errors:
        raise PipelineInvalid(errors)


def _step_choice_errors(steps: list[dict], field: str, order: int) -> list[StepError]:
    step = next((s for s in steps if s["order"] == order), None)
    if step is None:
        return [StepError(order, field, "no step has this order")]
    if not step.get("enabled", True):
        return [StepError(order, field, "this step is disabled")]
    return []


def _run_with_key(pipeline: Pipeline, user, key: str) -> PipelineRun | None:
    """The run this user already started with this key in the last 24 h, if any.

    Called under the pipeline's row lock, so two retries of one request cannot both
    miss it and create two runs.
    """
    if not key or not (user and user.is_authenticated):
        return None
    since = timezone.now() - timedelta(hours=24)
    earlier = pipeline.runs.filter(started_by=user, idempotency_key=key, created_at__gte=since)
    return earlier.order_by("-created_at").first()


def enqueue(run_pk: int) -> None:
    async_task("pipelines.tasks.execute_run", run_pk, task_name=f"pipeline-run-{run_pk}")


def execute_run(run_pk: int, isolated: bool = True) -> PipelineRun | None:
    """Claim a queued run that is due and execute it; any other run is left alone.

    A failure with retries left queues the next attempt for later and returns: no worker
    waits out a backoff. `isolated` runs the engine in a child process, watched for
    heartbeat, timeout and cancellation; without it the engine runs in this process
    (debugging, tests).
    """
    run = PipelineRun.objects.select_related("pipeline").get(pk=run_pk)
    if not run.claim():
        return None
    try:
        if isolated:
            supervise(run)
        else:
            PipelineEngine(run).execute(start_at=run.start_step, stop_at=run.stop_step)
        run.refresh_from_db()
        _queue_retry(run)
    finally:
        dispatch_waiting(run.pipeline_id)
    return run


def dispatch_waiting(pipeline_id: int) -> list[int]:
    """Hand waiting runs to the queue while the pipeline has free slots, oldest first.

    A due retry of the pipeline goes first: it already holds its slot.
    """
    dispatch_due_retries(timezone.now(), pipeline_id=pipeline_id)
    with transaction.atomic():
        locked = Pipeline.objects.select_for_update().get(pk=pipeline_id)
        free = locked.max_active_runs - locked.runs.occupying().count()
        if free <= 0:
            return []
        waiting = list(
            locked.runs.waiting().order_by("created_at", "pk").values_list("pk", flat=True)[:free]
        )
        PipelineRun.objects.filter(pk__in=waiting).update(dispatched_at=timezone.now())
        for run_pk in waiting:
            transaction.on_commit(partial(enqueue, run_pk))
    return waiting


def dispatch_due_retries(now=None, pipeline_id: int | None = None) -> list[int]:
    """Hand to the queue, once each, the retries whose not-before time has come.

    The conditional update is the claim: of two reapers that see the same retry, only
    the one whose update matched enqueues it.
    """
    now = now or timezone.now()
    due = PipelineRun.objects.due_retries(now)
    if pipeline_id is not None:
        due = due.filter(pipeline_id=pipeline_id)
    dispatched = []
    for run_pk in due.values_list("pk", flat=True):
        if PipelineRun.objects.due_retries(now).filter(pk=run_pk).update(dispatched_at=now):
            transaction.on_commit(partial(enqueue, run_pk))
            dispatched.append(run_pk)
    return dispatched


def cancel_run(run: PipelineRun) -> str:
    """Drop a queued run, or ask a running one to stop before its next step."""
    if PipelineRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.CANCELLED,
        finished_at=timezone.now(),
        error_message="Cancelled before it started.",
    ):
        run.append_log("Cancelled before it started.")
        dispatch_waiting(run.pipeline_id)
        return "cancelled"
    if PipelineRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        cancel_requested=True
    ):
        run.append_log("Cancellation requested; the run stops before its next step.")
        return "cancelling"
    return "finished"


def reap_lost_runs(now=None) -> list[int]:
    """Fail running runs whose worker stopped sending heartbeats, and free their slots.

    Every pass (each minute) also hands due retries and lost tasks to the queue again.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.MLOPS_HEARTBEAT_TIMEOUT)
    silent = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    reaped = []
    for run in PipelineRun.objects.filter(status=RunStatus.RUNNING).filter(silent):
        last = run.heartbeat_at or run.started_at
        if run.mark_failed(f"Worker lost: no heartbeat since {last:%Y-%m-%d %H:%M:%S} UTC."):
            close_interrupted(run, "worker lost")
            reaped.append(run.pk)
    dispatch_due_retries(now)
    _redispatch_unclaimed(now)
    for pipeline_id in set(PipelineRun.objects.waiting().values_list("pipeline_id", flat=True)):
        dispatch_waiting(pipeline_id)
    return reaped


def _redispatch_unclaimed(now) -> None:
    """Enqueue again the runs handed to the queue long ago that no worker claimed.

    A broker can lose a task (a Redis worker that died after popping it); the run would
    hold its pipeline's slot for ever. A duplicate task is harmless: only one claims.
    """
    cutoff = now - timedelta(seconds=settings.MLOPS_REDISPATCH_SECONDS)
    stale = PipelineRun.objects.filter(
        status=RunStatus.QUEUED, dispatched_at__lt=cutoff, heartbeat_at__isnull=True
    )
    for run_pk in stale.values_list("pk", flat=True):
        if PipelineRun.objects.filter(pk=run_pk, status=RunStatus.QUEUED).update(dispatched_at=now):
            enqueue(run_pk)


def close_interrupted(run: PipelineRun, reason: str) -> None:
    """Tidy up after a run whose engine was stopped from outside mid-step."""
    run.refresh_from_db()
    now = timezone.now()
    StepRun.objects.filter(run=run, status=StepRunStatus.RUNNING).update(
        status=StepRunStatus.FAILED, finished_at=now, summary={"error": reason}
    )
    done = set(run.step_runs.values_list("order", flat=True))
    StepRun.objects.bulk_create(
        StepRun(
            run=run,
            order=step["order"],
            step_type=step["type"],
            name=step.get("name", ""),
            status=StepRunStatus.SKIPPED,
        )
        for step in run.definition.get("steps", [])
        if step.get("enabled", True) and step["order"] not in done
    )
    if run.mlflow_run_id:
        tracking.terminate(run.mlflow_run_id, killed=run.status == RunStatus.CANCELLED)
    StepCache(run.pipeline_id).remove_partial_files()
    run.append_log(f"Run ended: {reason}.")


def _queue_retry(run: PipelineRun) -> PipelineRun | None:
    """After a failure with retries left, queue the next attempt to start after the backoff.

    The retry holds the pipeline's slot while it waits; `dispatch_due_retries` hands it
    to a worker once due (within a reaper pass, or when another run of the pipeline ends).
    """
    pipeline = run.pipeline
    if run.status != RunStatus.FAILED or run.attempt > pipeline.max_retries:
        return None
    not_before = timezone.now() + timedelta(seconds=pipeline.retry_delay(run.attempt + 1))
    retry = PipelineRun.objects.create(
        pipeline=pipeline,
        trigger=run.trigger,
        started_by=run.started_by,
        definition=run.definition,
        start_step=run.start_step,
        stop_step=run.stop_step,
        attempt=run.attempt + 1,
        retry_of=run,
        not_before=not_before,
    )
    at = f"{not_before:%H:%M:%S} UTC"
    run.append_log(f"Retrying as run #{retry.pk} (attempt {retry.attempt}) at {at}.")
    retry.append_log(f"Retry {retry.attempt - 1} of run #{run.pk}; starts at {at} or soon after.")
    return retry


def _busy_message(pipeline: Pipeline) -> str:
    active = pipeline.runs.occupying().order_by("created_at", "pk").first()
    state = active.status
    if active.status == RunStatus.QUEUED and active.not_before:
        state += f" (a retry, due at {active.not_before:%H:%M:%S} UTC)"
    return (
        f"{pipeline} is at its limit of {pipeline.max_active_runs} active run(s): "
        f"run #{active.pk} is {state}."
    )
