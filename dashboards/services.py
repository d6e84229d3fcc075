"""The operational overview: pipelines, their latest run, and recent runs."""

from django.db.models import Count, OuterRef, Subquery

from pipelines.models import Pipeline, PipelineRun


def overview_data(recent: int = 20) -> dict:
    latest = PipelineRun.objects.filter(pipeline=OuterRef("pk")).order_by("-created_at", "-pk")
    pipelines = Pipeline.objects.annotate(
        step_count=Count("steps", distinct=True),
        last_status=Subquery(latest.values("status")[:1]),
        last_run_at=Subquery(latest.values("created_at")[:1]),
    )
    runs = PipelineRun.objects.select_related("pipeline", "started_by")[:recent]
    return {"pipelines": pipelines, "runs": runs}
