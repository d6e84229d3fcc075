from django.urls import path

from pipelines.views import pipelines as views

app_name = "pipelines"
urlpatterns = [
    path("", views.pipeline_list, name="list"),
    path("new/", views.pipeline_new, name="new"),
    path("import/", views.pipeline_import, name="import"),
    path("<int:pk>/", views.pipeline_detail, name="detail"),
    path("<int:pk>/duplicate/", views.pipeline_duplicate, name="duplicate"),
    path("<int:pk>/export/", views.pipeline_export, name="export"),
    path("<int:pk>/delete/", views.pipeline_delete, name="delete"),
    path("<int:pk>/run/", views.run_pipeline, name="run"),
]
