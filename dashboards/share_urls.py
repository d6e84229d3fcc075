from django.urls import path

from dashboards.views import share

urlpatterns = [
    path("<str:token>/", share.shared_dashboard, name="share"),
    path("<str:token>/charts/<int:chart_pk>.csv", share.shared_chart_csv, name="share_csv"),
]
