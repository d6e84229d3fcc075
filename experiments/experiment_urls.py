from django.urls import path

from experiments.views import experiments

urlpatterns = [
    path("", experiments.experiment_list, name="list"),
    path("<str:experiment_id>/", experiments.experiment_detail, name="detail"),
]
