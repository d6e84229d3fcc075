from django.urls import path

from experiments.views import compare

urlpatterns = [path("", compare.compare_runs, name="compare")]
