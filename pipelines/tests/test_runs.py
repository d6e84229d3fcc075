"""The run lifecycle in this process: limits, cancellation, retries, time limits, reaping."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from experiments import tracking
from pipelines import runs
from pipelines.choices import RunStatus, StepRunStatus
from pipelines.engine.registry import STEP_TYPES
from pipelines.models import PipelineRun


@pytest.fixture(autouse=True)
def diagnostic_steps():
    """The sleep/noop step types, as MLOPS_STEP_MODULES=pipelines.testing registers them."""
    if "sleep" not in STEP_TYPES:
        import pipelines.testing  # noqa: F401


def sleep_pipeline(make_pipeline, seconds=0.0, name="sleeper", **fields):
    return make_pipeline(
        [{"type": "sleep", "params": {"seconds": seconds}}, {"type": "noop"}], name=name, **fields
    )


def trigger_concurrently(pipeline, count):
    outcomes, lock = [], threading.Lock()

    def trigger():
        try:
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


@pytest.mark.django_db(transaction=True)
def test_twenty_simultaneous_triggers_queue_behind_one_active_run(make_pipeline):
    pipeline = sleep_pipeline(make_pipeline)

    outcomes = trigger_concurrently(pipeline, 20)

    assert [o[0] for o in outcomes].count("queued") == 20
    assert sum(1 for o in outcomes if o[2]) == 1  # exactly one handed to a worker
    assert pipeline.runs.occupying().count() == 1
    assert pipeline.runs.waiting().count() == 19


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


def test_failed_run_is_retried_with_backoff_then_fails(make_pipeline):
    pipeline = make_pipeline(
        [
            {"type": "sleep", "params": {"seconds": 0}},
            {"type": "drop_columns", "params": {"columns": ["missing"]}},
        ],
        name="flaky",
        max_retries=2,
        retry_backoff_seconds=0,
    )

    run = runs.start_run(pipeline, wait=True)

    attempts = list(PipelineRun.objects.order_by("pk"))
    assert [(r.attempt, r.status) for r in attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
    ]
    assert attempts[1].retry_of_id == attempts[0].pk
    assert "Retrying as run #" in run.logs
    assert pipeline.retry_delay(2) == 0


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


def test_run_settings_beyond_the_worker_task_limit_are_refused(make_pipeline, settings):
    settings.Q_TIMEOUT = 1000
    with pytest.raises(runs.PipelineInvalid) as error:
        sleep_pipeline(make_pipeline, timeout_seconds=400, max_retries=2, retry_backoff_seconds=10)

    assert "run_settings.timeout_seconds: A run and its retries may take 1230 s" in str(error.value)
    assert not PipelineRun.objects.exists()
