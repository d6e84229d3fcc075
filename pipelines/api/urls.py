from rest_framework.routers import SimpleRouter

from pipelines.api import views

app_name = "pipelines-api"

router = SimpleRouter()
router.register("pipelines", views.PipelineViewSet, basename="pipeline")
router.register("runs", views.RunViewSet, basename="run")
urlpatterns = router.urls
