from django.urls import include, path

app_name = "data"
urlpatterns = [
    path("datasets/", include("datasources.dataset_urls")),
    path("sources/", include("datasources.source_urls")),
]
