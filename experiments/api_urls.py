"""/api/models/: online prediction with registered models (namespace models-api)."""

from django.urls import re_path

from experiments import api

# A model name may hold dots and dashes; the trailing slash is optional, as clients of
# other model servers post to `.../predict`.
urlpatterns = [
    re_path(
        r"^(?P<name>[^/@]+)@(?P<alias>[\w-]+)/predict/?$",
        api.PredictByAliasView.as_view(),
        name="predict-alias",
    ),
    re_path(
        r"^(?P<name>[^/@]+)/(?P<version>[0-9]+)/predict/?$",
        api.PredictByVersionView.as_view(),
        name="predict-version",
    ),
]
