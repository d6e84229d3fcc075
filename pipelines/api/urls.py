"""Served at /api/v1/ (namespace pipelines-api) and, for one release, at /api/.

The /api/ alias is a second instance of these URLs (namespace pipelines-api-legacy): the
same views, while every link they give (`url`, `Location`) points at /api/v1/.
"""

from rest_framework.routers import SimpleRouter

from pipelines.api import step_types, tokens, views

app_name = "pipelines-api"

router = SimpleRouter()
router.register("pipelines", views.PipelineViewSet, basename="pipeline")
router.register("runs", views.RunViewSet, basename="run")
router.register("step-types", step_types.StepTypeViewSet, basename="step-type")
router.register("tokens", tokens.TokenViewSet, basename="token")
urlpatterns = router.urls
