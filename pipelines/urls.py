from django.urls import path

from pipelines.views import editor
from pipelines.views import inspector as inspector_views
from pipelines.views import pipelines as views
from pipelines.views import settings as settings_views

app_name = "pipelines"
urlpatterns = [
    path("", views.pipeline_list, name="list"),
    path("new/", views.pipeline_new, name="new"),
    path("import/", views.pipeline_import, name="import"),
    path("<int:pk>/", editor.pipeline_editor, name="detail"),
    path("<int:pk>/steps/new/", editor.step_new, name="step_new"),
    path("<int:pk>/run-steps/", editor.run_steps, name="run_steps"),
    path("<int:pk>/duplicate/", views.pipeline_duplicate, name="duplicate"),
    path("<int:pk>/export/", views.pipeline_export, name="export"),
    path("<int:pk>/delete/", views.pipeline_delete, name="delete"),
    path("<int:pk>/run/", views.run_pipeline, name="run"),
    # The Settings and History tabs: run settings, schedules, versions.
    path("<int:pk>/settings/", settings_views.pipeline_settings, name="settings"),
    path("<int:pk>/history/", settings_views.pipeline_history, name="history"),
    path("<int:pk>/schedules/add/", settings_views.schedule_add, name="schedule_add"),
    path("<int:pk>/schedules/preview/", settings_views.schedule_preview, name="schedule_preview"),
    path(
        "<int:pk>/schedules/<int:schedule_pk>/pause/",
        settings_views.schedule_pause,
        name="schedule_pause",
    ),
    path(
        "<int:pk>/schedules/<int:schedule_pk>/resume/",
        settings_views.schedule_resume,
        name="schedule_resume",
    ),
    path(
        "<int:pk>/schedules/<int:schedule_pk>/fire/",
        settings_views.schedule_fire,
        name="schedule_fire",
    ),
    path(
        "<int:pk>/schedules/<int:schedule_pk>/delete/",
        settings_views.schedule_delete,
        name="schedule_delete",
    ),
    # The step inspector: a step's cached output, its profile and model summary.
    path("<int:pk>/steps/<int:order>/", inspector_views.step_inspector, name="step"),
    path("<int:pk>/steps/<int:order>/csv/", inspector_views.step_csv, name="step_csv"),
]
