from django.urls import path

from datasources.views import sources as views

urlpatterns = [
    path("", views.source_list, name="source_list"),
    path("new/", views.source_new, name="source_new"),
    path("<int:pk>/", views.source_detail, name="source_detail"),
    path("<int:pk>/edit/", views.source_edit, name="source_edit"),
    path("<int:pk>/test/", views.source_test, name="source_test"),
    path("<int:pk>/table/", views.source_table, name="source_table"),
    path("<int:pk>/pipeline/", views.source_pipeline, name="source_pipeline"),
]
