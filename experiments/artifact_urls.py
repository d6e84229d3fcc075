from django.urls import path

from experiments.views import artifacts

urlpatterns = [
    path("<str:mlflow_run_id>/artifacts/", artifacts.artifact_list, name="artifacts"),
    path(
        "<str:mlflow_run_id>/artifacts/download/<path:path>",
        artifacts.artifact_download,
        name="artifact_download",
    ),
]
