"""Served at /api/v1/ (namespace pipelines-api) and, for one release, at /api/.

The /api/ alias is a second instance of these URLs (namespace pipelines-api-legacy): the
same views, while every link they give (`url`, `Location`) points at /api/v1/.
"""

from django.urls import path
from rest_framework.routers import SimpleRouter

from datasources.api import datasets
from datasources.api import sources as datasources
from pipelines.api import outputs, pipelines, runs, schedules, step_types, steps, tokens

app_name = "pipelines-api"

router = SimpleRouter()
router.register("pipelines", pipelines.PipelineViewSet, basename="pipeline")
router.register("runs", runs.RunViewSet, basename="run")
router.register("step-types", step_types.StepTypeViewSet, basename="step-type")
router.register("tokens", tokens.TokenViewSet, basename="token")
router.register("schedules", schedules.ScheduleViewSet, basename="schedule")
router.register("datasources", datasources.DataSourceViewSet, basename="datasource")
router.register("datasets", datasets.DatasetViewSet, basename="dataset")
# Resources with paths of their own (nested under a pipeline) add them below.
urlpatterns = [*router.urls]
urlpatterns += [
    path("pipelines/<str:reference>/steps/", steps.StepListView.as_view(), name="pipeline-steps"),
    path(
        "pipelines/<str:reference>/steps/reorder/",
        steps.StepReorderView.as_view(),
        name="pipeline-steps-reorder",
    ),
    path(
        "pipelines/<str:reference>/steps/<int:order>/",
        steps.StepDetailView.as_view(),
        name="pipeline-step",
    ),
]
urlpatterns += [
    path(
        "pipelines/<str:reference>/steps/<int:order>/output/",
        outputs.StepOutputView.as_view(),
        name="step-output",
    ),
    path(
        "pipelines/<str:reference>/steps/<int:order>/output/rows/",
        outputs.StepRowsView.as_view(),
        name="step-output-rows",
    ),
]
