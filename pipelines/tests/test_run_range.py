"""Run ranges: run up to a step, or one step alone on the previous step's cached output."""

import pytest

from pipelines import runs
from pipelines.choices import RunStatus, StepRunStatus
from pipelines.engine.cache import StepCache
from pipelines.engine.runner import PipelineEngine
from pipelines.models import PipelineRun, PipelineStep
from pipelines.validation import PipelineInvalid


def run_now(pipeline, **kwargs):
    return runs.start_run(pipeline, wait=True, **kwargs)


def statuses(run):
    return [(s.order, s.status) for s in run.step_runs.order_by("order")]


def test_run_up_to_a_step_stops_after_it_and_records_nothing_later(classifier_pipeline):
    run = run_now(classifier_pipeline, to_step=2)

    assert run.status == RunStatus.SUCCEEDED
    assert (run.start_step, run.stop_step) == (None, 2)
    assert statuses(run) == [(1, StepRunStatus.SUCCEEDED), (2, StepRunStatus.SUCCEEDED)]
    assert "Stopped after step 2 as asked." in run.logs
    assert "Running 2 step(s)." in run.logs
    cache = StepCache(classifier_pipeline.pk)
    assert cache.read_meta(2) is not None and cache.read_meta(3) is None


def test_run_only_one_step_reuses_the_cache_before_it(classifier_pipeline):
    run_now(classifier_pipeline)

    only = run_now(classifier_pipeline, from_step=3, to_step=3)

    assert only.status == RunStatus.SUCCEEDED
    assert (only.start_step, only.stop_step) == (3, 3)
    assert statuses(only) == [
        (1, StepRunStatus.REUSED),
        (2, StepRunStatus.REUSED),
        (3, StepRunStatus.SUCCEEDED),
    ]
    assert "Starting from step 3 (Train)." in only.logs
    assert "Stopped after step 3 as asked." in only.logs
    assert "Running step 4" not in only.logs
    assert "accuracy" in only.metrics


def test_run_only_one_step_runs_from_the_first_stale_step(classifier_pipeline):
    run_now(classifier_pipeline)
    PipelineStep.objects.filter(pipeline=classifier_pipeline, order=2).update(params={"how": "all"})

    only = run_now(classifier_pipeline, from_step=3, to_step=3)

    assert statuses(only) == [
        (1, StepRunStatus.REUSED),
        (2, StepRunStatus.SUCCEEDED),
        (3, StepRunStatus.SUCCEEDED),
    ]
    assert "Cache of step 2 (Clean) is stale: its parameters changed." in only.logs
    assert "Starting from step 2 (Clean)." in only.logs


def test_run_only_the_last_step_needs_no_stop(classifier_pipeline):
    run_now(classifier_pipeline)

    only = run_now(classifier_pipeline, from_step=4, to_step=4)

    assert [status for _, status in statuses(only)] == [StepRunStatus.REUSED] * 3 + [
        StepRunStatus.SUCCEEDED
    ]
    assert "Stopped after" not in only.logs


def test_a_failure_inside_the_range_skips_only_the_steps_up_to_the_stop(
    make_dataset, make_pipeline, classification_frame, classifier_steps
):
    make_dataset(classification_frame, "data")
    classifier_steps[1]["params"] = {"columns": ["no_such_column"]}
    pipeline = make_pipeline(classifier_steps, name="broken")

    run = run_now(pipeline, to_step=3)

    assert run.status == RunStatus.FAILED
    assert statuses(run) == [
        (1, StepRunStatus.SUCCEEDED),
        (2, StepRunStatus.FAILED),
        (3, StepRunStatus.SKIPPED),
    ]


def test_a_retry_keeps_the_range(make_dataset, make_pipeline, classification_frame):
    make_dataset(classification_frame, "data")
    steps = [
        {"type": "csv", "params": {"dataset": "data"}},
        {"type": "drop_na", "params": {"columns": ["no_such_column"]}},
        {"type": "drop_duplicates"},
    ]
    pipeline = make_pipeline(steps, name="flaky", max_retries=1)

    run = run_now(pipeline, to_step=2)

    retry = run.retries.get()
    assert (retry.start_step, retry.stop_step) == (None, 2)


def test_the_engine_reads_the_stop_from_the_run_like_the_worker_does(classifier_pipeline):
    # The worker's child process calls execute(start_at=run.start_step) only.
    run = runs.start_run(classifier_pipeline, to_step=1)
    assert run.claim()

    PipelineEngine(run).execute(start_at=run.start_step)

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert statuses(run) == [(1, StepRunStatus.SUCCEEDED)]


@pytest.mark.parametrize(
    "from_step, to_step, error",
    [
        (3, 2, (2, "to_step", "comes before from_step (3)")),
        (None, 9, (9, "to_step", "no step has this order")),
        (1, 4, (4, "to_step", "this step is disabled")),
    ],
)
def test_a_range_that_names_no_runnable_step_is_refused(
    classifier_pipeline, from_step, to_step, error
):
    PipelineStep.objects.filter(pipeline=classifier_pipeline, order=4).update(enabled=False)

    with pytest.raises(PipelineInvalid) as refused:
        runs.start_run(classifier_pipeline, from_step=from_step, to_step=to_step)

    assert [(e.order, e.field, e.message) for e in refused.value.errors] == [error]
    assert not PipelineRun.objects.exists()


def test_the_cache_record_names_the_columns_passed_on(classifier_pipeline):
    run_now(classifier_pipeline, to_step=2)

    meta = StepCache(classifier_pipeline.pk).read_meta(2)

    assert meta["columns"] == ["x1", "x2", "colour", "label"]
