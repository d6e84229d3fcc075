"""The operational overview: pipelines, their latest run, and recent runs."""

from pipelines.models import Pipeline, PipelineRun


def overview_data(recent: int = 20) -> dict:
    pipelines = Pipeline.objects.with_run_summary()
    runs = PipelineRun.objects.select_related("pipeline", "started_by")[:recent]
    return {"pipelines": pipelines, "runs": runs}
