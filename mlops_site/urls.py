from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

api_v1 = [
    path("models/", include(("experiments.api_urls", "models-api"), namespace="models-api-v1")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("pipelines.api.urls")),
]

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
    path("api/v1/", include(api_v1)),
    # The unversioned API, kept for one release: the same views (the schema lists only
    # /api/v1/; links in answers point there).
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema-unversioned"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema")),
    path("api/", include("pipelines.api.urls", namespace="pipelines-api-legacy")),
]

# Under /api/ an unknown path is answered in the API's error body, not an HTML page.
handler404 = "pipelines.api.errors.page_not_found"
