from django.urls import include, path

from dashboards.views import overview

app_name = "dashboards"
urlpatterns = [
    path("", overview.overview, name="overview"),
    path("dashboards/", include("dashboards.dashboard_urls")),
    path("share/", include("dashboards.share_urls")),
]
