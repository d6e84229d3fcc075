from django.urls import path

from experiments.views import models

# Registered model names may hold dots and, from other MLflow clients, slashes: `path`,
# with the action URLs first so that a name never swallows them.
urlpatterns = [
    path("", models.model_list, name="list"),
    path("<path:name>/aliases/", models.model_alias, name="alias"),
    path("<path:name>/gate/", models.model_gate, name="gate"),
    path("<path:name>/", models.model_detail, name="detail"),
]
