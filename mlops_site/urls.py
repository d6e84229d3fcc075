from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("", include("dashboards.urls")),
    path("pipelines/", include("pipelines.urls")),
    path("runs/", include("pipelines.run_urls")),
    path("data/", include("datasources.urls")),
    path("experiments/", include("experiments.urls")),
    path("models/", include(("experiments.model_urls", "models"))),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/models/", include(("experiments.api_urls", "models-api"))),
    path("api/", include("pipelines.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
