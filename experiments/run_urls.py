from django.urls import path

from experiments.views import runs

urlpatterns = [
    path("<str:mlflow_run_id>/", runs.run_detail, name="run"),
    path("<str:mlflow_run_id>/register/", runs.run_register, name="register"),
]
