from django.urls import include, path

app_name = "experiments"
urlpatterns = [
    path("", include("experiments.experiment_urls")),
    path("runs/", include("experiments.artifact_urls")),
]
