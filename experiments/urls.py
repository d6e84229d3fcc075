from django.urls import include, path

app_name = "experiments"
urlpatterns = [
    path("compare/", include("experiments.compare_urls")),
    path("runs/", include("experiments.artifact_urls")),
    path("runs/", include("experiments.run_urls")),
    path("", include("experiments.experiment_urls")),
]
