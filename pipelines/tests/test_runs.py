"""The run lifecycle in this process: limits, cancellation, retries, time limits, reaping."""

import threading
import time
from datetime import timedelta

import pandas as pd
import pytest
from django.db import connection
from django.utils import timezone

from experiments import tracking
from pipelines import runs, tasks
from pipelines.choices import RunStatus, StepRunStatus
from pipelines.engine.registry import STEP_TYPES
from pipelines.models import PipelineRun


@pytest.fixture(autouse=True)
def diagnostic_steps():
    """The sleep/noop step types, as MLOPS_STEP_MODULES=pipelines.testing registers them."""
    if "sleep" not in STEP_TYPES:
        import pipelines.testing  # noqa: F401


@pytest.fixture
def enqueued(monkeypatch):
    """The ids of the runs handed to the task queue, in order, instead of enqueueing them."""
    handed = []
    monkeypatch.setattr(runs, "enqueue", handed.append)
    return handed


def sleep_pipeline(make_pipeline, seconds=0.0, name="sleeper", **fields):
    return make_pipeline(
        [{"type": "sleep", "params": {"seconds": seconds}}, {"type": "noop"}], name=name, **fields
    )


def failing_pipeline(make_pipeline, **fields):
    return make_pipeline(
        [
            {"type": "sleep", "params": {"seconds": 0}},
            {"type": "drop_columns", "params": {"columns": ["missing"]}},
        ],
        name="flaky",
        **fields,
    )


def fail_first_attempt(make_pipeline, **fields):
    """A run of a new failing pipeline, executed as a worker would: its retry waits."""
    pipeline = failing_pipeline(make_pipeline, max_retries=1, retry_backoff_seconds=30, **fields)
    first = runs.start_run(pipeline)
    tasks.execute_run(first.pk)
    first.refresh_from_db()
    return pipeline, first, first.retries.get()


def make_due(run):
    """Move a retry's not-before time to now, as if its backoff had passed."""
    PipelineRun.objects.filter(pk=run.pk).update(not_before=timezone.now())


def trigger_concurrently(pipeline, count):
    """Trigger `pipeline` from `count` threads at once, each on its own connection."""
    outcomes, lock, barrier = [], threading.Lock(), threading.Barrier(count)

    def trigger():
        try:
            barrier.wait()
            run = runs.start_run(pipeline)
            result = ("queued", run.pk, run.dispatched_at is not None)
        except runs.PipelineBusy as exc:
            result = ("refused", str(exc), False)
        finally:
            connection.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=trigger) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_twenty_simultaneous_triggers_queue_behind_one_active_run(make_pipeline):
    pipeline = sleep_pipeline(make_pipeline)

    outcomes = trigger_concurrently(pipeline, 20)

    assert [o[0] for o in outcomes].count("queued") == 20
    assert sum(1 for o in outcomes if o[2]) == 1  # exactly one handed to a worker
    assert pipeline.runs.occupying().count() == 1
    assert pipeline.runs.waiting().count() == 19


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_twenty_simultaneous_triggers_refused_name_the_active_run(make_pipeline):
    pipeline = sleep_pipeline(make_pipeline, concurrency_policy="refuse")

    outcomes = trigger_concurrently(pipeline, 20)

    queued = [o for o in outcomes if o[0] == "queued"]
    refused = [o for o in outcomes if o[0] == "refused"]
    assert len(queued) == 1 and len(refused) == 19
    assert f"run #{queued[0][1]} is queued" in refused[0][1]
    assert PipelineRun.objects.count() == 1


def test_limit_of_two_dispatches_two(make_pipeline, django_capture_on_commit_callbacks):
    pipeline = sleep_pipeline(make_pipeline, max_active_runs=2)

    with django_capture_on_commit_callbacks() as callbacks:
        started = [runs.start_run(pipeline) for _ in range(3)]

    assert [r.dispatched_at is not None for r in started] == [True, True, False]
    assert len(callbacks) == 2
    assert "Waiting: the pipeline is at its active-run limit." in started[2].logs


def test_finishing_a_run_dispatches_the_next_waiting_one(
    make_pipeline, django_capture_on_commit_callbacks
):
    pipeline = sleep_pipeline(make_pipeline)
    first, second = runs.start_run(pipeline), runs.start_run(pipeline)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        runs.execute_run(first.pk, isolated=False)

    second.refresh_from_db()
    assert second.dispatched_at is not None
    assert len(callbacks) == 1


def test_cancel_queued_run_drops_it_and_frees_the_slot(make_pipeline):
    pipeline = sleep_pipeline(make_pipeline)
    first, second = runs.start_run(pipeline), runs.start_run(pipeline)

    assert runs.cancel_run(first) == "cancelled"

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == RunStatus.CANCELLED
    assert first.error_message == "Cancelled before it started."
    assert second.dispatched_at is not None
    assert runs.execute_run(first.pk, isolated=False) is None  # a late delivery does nothing


def test_cancel_running_run_stops_before_next_step_and_keeps_finished_work(make_pipeline):
    pipeline = sleep_pipeline(make_pipeline)
    run = runs.start_run(pipeline)
    run.claim()
    PipelineRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    # The engine checks the flag before each step; here it is set before the first.
    from pipelines.engine.runner import PipelineEngine

    PipelineEngine(run).execute()

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.error_message == "Cancelled before step 1 (sleep)."
    assert [s.status for s in run.step_runs.all()] == [StepRunStatus.SKIPPED] * 2


def test_cancel_finished_run_reports_it(make_pipeline):
    run = runs.start_run(sleep_pipeline(make_pipeline), wait=True)

    assert runs.cancel_run(run) == "finished"


def test_failed_run_is_retried_with_doubling_backoff_then_fails(make_pipeline):
    pipeline = failing_pipeline(make_pipeline, max_retries=2, retry_backoff_seconds=5)
    backoffs = []

    runs.execute_run(runs.start_run(pipeline).pk, isolated=False)
    while (retry := PipelineRun.objects.filter(status=RunStatus.QUEUED).first()) is not None:
        backoffs.append(round((retry.not_before - retry.retry_of.finished_at).total_seconds()))
        make_due(retry)
        runs.execute_run(retry.pk, isolated=False)

    attempts = list(PipelineRun.objects.order_by("pk"))
    assert [(r.attempt, r.status) for r in attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
    ]
    assert [r.retry_of_id for r in attempts] == [None, attempts[0].pk, attempts[1].pk]
    assert backoffs == [5, 10]
    assert f"Retrying as run #{attempts[1].pk} (attempt 2) at " in attempts[0].logs
    assert "Retrying as run #" not in attempts[2].logs


def test_failed_run_frees_its_worker_at_once_and_queues_its_retry_for_later(make_pipeline):
    started = time.monotonic()
    pipeline, first, retry = fail_first_attempt(make_pipeline)

    assert time.monotonic() - started < 10  # not the 30 s backoff
    assert first.status == RunStatus.FAILED
    assert (retry.status, retry.attempt, retry.dispatched_at) == (RunStatus.QUEUED, 2, None)
    assert retry.retry_of_id == first.pk
    for field in ("trigger", "started_by_id", "definition", "start_step"):
        assert getattr(retry, field) == getattr(first, field)
    wait = retry.not_before - first.finished_at
    assert timedelta(seconds=30) <= wait < timedelta(seconds=35)
    due = f"{retry.not_before:%H:%M:%S} UTC"
    assert f"Retrying as run #{retry.pk} (attempt 2) at {due}." in first.logs
    assert f"Retry 1 of run #{first.pk}; starts at {due} or soon after." in retry.logs
    assert list(pipeline.runs.occupying()) == [retry]  # it keeps the pipeline's slot
    assert not pipeline.runs.waiting().exists()


def test_retry_is_not_handed_to_the_queue_before_it_is_due_even_with_a_free_slot(
    make_pipeline, enqueued, django_capture_on_commit_callbacks
):
    pipeline, _, retry = fail_first_attempt(make_pipeline, max_active_runs=2)

    with django_capture_on_commit_callbacks(execute=True):
        runs.reap_lost_runs()
        runs.dispatch_waiting(pipeline.pk)

    retry.refresh_from_db()
    assert (retry.dispatched_at, enqueued) == (None, [])


def test_task_delivered_before_the_retry_is_due_does_nothing(make_pipeline):
    _, _, retry = fail_first_attempt(make_pipeline)

    assert tasks.execute_run(retry.pk) is None

    retry.refresh_from_db()
    assert (retry.status, retry.started_at) == (RunStatus.QUEUED, None)
    assert not retry.step_runs.exists()


def test_due_retry_is_handed_to_the_queue_once_and_runs_attempt_two(
    make_pipeline, make_dataset, enqueued, django_capture_on_commit_callbacks
):
    make_dataset(pd.DataFrame({"value": [1, 2]}), "source")
    pipeline = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "source"}},
            {"type": "drop_columns", "params": {"columns": ["extra"]}},
        ],
        name="late-source",
        max_retries=1,
        retry_backoff_seconds=30,
    )
    first = runs.start_run(pipeline)
    assert tasks.execute_run(first.pk) == RunStatus.FAILED  # "extra" is missing
    retry = first.retries.get()

    with django_capture_on_commit_callbacks(execute=True):
        assert runs.dispatch_due_retries(retry.not_before - timedelta(seconds=1)) == []
        runs.reap_lost_runs(now=retry.not_before - timedelta(seconds=1))
    assert enqueued == []
    with django_capture_on_commit_callbacks(execute=True):
        runs.reap_lost_runs(now=retry.not_before)  # the periodic task, each minute
    assert enqueued == [retry.pk]
    assert runs.dispatch_due_retries(retry.not_before + timedelta(minutes=1)) == []

    make_dataset(pd.DataFrame({"value": [1, 2], "extra": [3, 4]}), "source")  # fixed upstream
    make_due(retry)
    assert tasks.execute_run(retry.pk) == RunStatus.SUCCEEDED

    retry.refresh_from_db()
    assert (retry.attempt, retry.retry_of_id, retry.status) == (2, first.pk, RunStatus.SUCCEEDED)
    assert not pipeline.runs.occupying().exists()


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_two_reapers_at_once_hand_a_due_retry_to_the_queue_once(make_pipeline, enqueued):
    _, _, retry = fail_first_attempt(make_pipeline)
    enqueued.clear()
    later = retry.not_before + timedelta(minutes=1)
    barrier, results = threading.Barrier(8), []

    def reaper():
        try:
            barrier.wait()
            results.append(runs.dispatch_due_retries(later))
        finally:
            connection.close()

    threads = [threading.Thread(target=reaper) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert enqueued == [retry.pk]
    assert sorted(results) == [[]] * 7 + [[retry.pk]]


def test_trigger_while_a_retry_waits_is_refused_naming_it(make_pipeline):
    pipeline, _, retry = fail_first_attempt(make_pipeline, concurrency_policy="refuse")

    with pytest.raises(runs.PipelineBusy) as busy:
        runs.start_run(pipeline)

    due = f"{retry.not_before:%H:%M:%S} UTC"
    assert f"run #{retry.pk} is queued (a retry, due at {due})." in str(busy.value)
    assert pipeline.runs.count() == 2


def test_cancelling_a_waiting_retry_hands_its_slot_to_the_next_run(make_pipeline, enqueued):
    pipeline, _, retry = fail_first_attempt(make_pipeline)
    enqueued.clear()
    queued = runs.start_run(pipeline)
    runs.reap_lost_runs()
    queued.refresh_from_db()
    assert (queued.dispatched_at, enqueued) == (None, [])  # it waits behind the retry

    assert runs.cancel_run(retry) == "cancelled"

    retry.refresh_from_db()
    queued.refresh_from_db()
    assert retry.status == RunStatus.CANCELLED
    assert "Cancelled before it started." in retry.logs
    assert queued.dispatched_at is not None
    assert runs.dispatch_due_retries(retry.not_before) == []


def test_retry_delay_doubles(make_pipeline):
    pipeline = sleep_pipeline(make_pipeline, retry_backoff_seconds=5)

    assert [pipeline.retry_delay(attempt) for attempt in (2, 3, 4)] == [5, 10, 20]


def test_reaper_fails_silent_runs_and_dispatches_waiting(
    make_pipeline, django_capture_on_commit_callbacks
):
    pipeline = sleep_pipeline(make_pipeline)
    lost, waiting = runs.start_run(pipeline), runs.start_run(pipeline)
    lost.claim()
    old = timezone.now() - timedelta(minutes=5)
    PipelineRun.objects.filter(pk=lost.pk).update(heartbeat_at=old)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        reaped = runs.reap_lost_runs()

    lost.refresh_from_db()
    waiting.refresh_from_db()
    assert reaped == [lost.pk]
    assert lost.status == RunStatus.FAILED
    assert lost.error_message.startswith("Worker lost: no heartbeat since")
    assert [s.status for s in lost.step_runs.all()] == [StepRunStatus.SKIPPED] * 2
    assert waiting.dispatched_at is not None and len(callbacks) == 1


def test_reaper_fails_run_that_never_sent_a_heartbeat(make_pipeline):
    run = runs.start_run(sleep_pipeline(make_pipeline))
    run.claim()
    PipelineRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(minutes=5))

    assert runs.reap_lost_runs() == [run.pk]


def test_reaper_enqueues_again_a_run_no_worker_claimed(make_pipeline, settings):
    from django_q.models import OrmQ

    settings.MLOPS_REDISPATCH_SECONDS = 600
    pipeline = sleep_pipeline(make_pipeline, max_active_runs=2)
    lost = runs.start_run(pipeline)
    runs.start_run(pipeline)  # handed to the queue just now: left alone
    PipelineRun.objects.filter(pk=lost.pk).update(
        dispatched_at=timezone.now() - timedelta(minutes=11)
    )
    OrmQ.objects.all().delete()  # the broker lost the tasks

    runs.reap_lost_runs()

    [task] = OrmQ.objects.all()
    assert task.task["args"] == (lost.pk,)
    lost.refresh_from_db()
    assert lost.status == RunStatus.QUEUED
    assert timezone.now() - lost.dispatched_at < timedelta(minutes=1)
    assert runs.execute_run(lost.pk, isolated=False).status == RunStatus.SUCCEEDED
    assert runs.execute_run(lost.pk, isolated=False) is None  # a duplicate task does nothing


def test_reaper_leaves_live_runs_alone(make_pipeline):
    run = runs.start_run(sleep_pipeline(make_pipeline))
    run.claim()
    run.beat()

    assert runs.reap_lost_runs() == []


def test_run_pipeline_command_refuses_when_pipeline_busy(make_pipeline):
    from django.core.management import CommandError, call_command

    pipeline = sleep_pipeline(make_pipeline)
    active = runs.start_run(pipeline)

    with pytest.raises(CommandError, match=f"run #{active.pk} is queued"):
        call_command("run_pipeline", pipeline.name)


@pytest.mark.django_db(transaction=True)
def test_isolated_run_past_its_timeout_is_stopped(make_pipeline, settings):
    settings.MLOPS_ISOLATE_RUNS = True
    pipeline = sleep_pipeline(make_pipeline, seconds=30, timeout_seconds=1)

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.FAILED
    assert run.error_message == "Timed out after 1 s."
    assert [s.status for s in run.step_runs.all()] == [StepRunStatus.FAILED, StepRunStatus.SKIPPED]
    assert run.finished_at - run.started_at < timedelta(seconds=10)
    assert tracking.get_run(run.mlflow_run_id)["status"] == "FAILED"


@pytest.mark.django_db(transaction=True)
def test_isolated_run_succeeds_in_child_process_with_heartbeat(make_pipeline, settings):
    settings.MLOPS_ISOLATE_RUNS = True

    run = runs.start_run(sleep_pipeline(make_pipeline, seconds=0.2), wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.heartbeat_at is not None
    assert [s.status for s in run.step_runs.all()] == [StepRunStatus.SUCCEEDED] * 2


def test_run_time_limit_must_stay_under_the_worker_task_limit(make_pipeline, settings):
    settings.Q_TIMEOUT = 1000
    with pytest.raises(runs.PipelineInvalid) as error:
        sleep_pipeline(make_pipeline, timeout_seconds=1000)

    assert (
        "run_settings.timeout_seconds: A run may take 1000 s; it must stay under the worker "
        "task limit Q_TIMEOUT (1000 s)."
    ) in str(error.value)
    # Retries are tasks of their own: their attempts and backoffs do not add up.
    sleep_pipeline(make_pipeline, timeout_seconds=400, max_retries=2, retry_backoff_seconds=300)
