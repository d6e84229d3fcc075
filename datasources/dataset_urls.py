"""/data/datasets/: the list, upload, a dataset's page, download and delete.

The dataset name comes last in every URL with an action prefix before it, so that no
name (which may contain "/" or be "upload") is ever mistaken for another page.
"""

from django.urls import path

from datasources.views import datasets as views

urlpatterns = [
    path("", views.dataset_list, name="dataset_list"),
    path("upload/", views.dataset_upload, name="dataset_upload"),
    path("view/<path:name>/", views.dataset_detail, name="dataset_detail"),
    path("download/<int:version>/<path:name>/", views.dataset_download, name="dataset_download"),
    path(
        "delete/<int:version>/<path:name>/",
        views.dataset_version_delete,
        name="dataset_version_delete",
    ),
    path("delete/all/<path:name>/", views.dataset_delete, name="dataset_delete"),
]
