from django.urls import path

from dashboards.views import dashboards as views

urlpatterns = [
    path("", views.dashboard_list, name="list"),
    path("new/", views.dashboard_new, name="new"),
    path("<int:pk>/", views.dashboard_detail, name="detail"),
    path("<int:pk>/edit/", views.dashboard_edit, name="edit"),
    path("<int:pk>/duplicate/", views.dashboard_duplicate, name="duplicate"),
    path("<int:pk>/delete/", views.dashboard_delete, name="delete"),
    path("<int:pk>/reorder/", views.dashboard_reorder, name="reorder"),
    path("<int:pk>/charts/new/", views.chart_new, name="chart_new"),
    path("<int:pk>/charts/preview/", views.chart_preview, name="chart_preview"),
    path("<int:pk>/charts/<int:chart_pk>/edit/", views.chart_edit, name="chart_edit"),
    path("<int:pk>/charts/<int:chart_pk>/delete/", views.chart_delete, name="chart_delete"),
    path("<int:pk>/charts/<int:chart_pk>/move/", views.chart_move, name="chart_move"),
    path("<int:pk>/charts/<int:chart_pk>.csv", views.chart_csv, name="chart_csv"),
    path("<int:pk>/share/", views.share_links, name="share_links"),
    path("<int:pk>/share/<int:link_pk>/revoke/", views.share_revoke, name="share_revoke"),
]
