"""The read-only page a share link opens, without a login.

The token opens one dashboard and the CSV of its own charts, nothing else: the page has
its own template without the site's navigation, and no other view accepts a token. A
revoked, expired or unknown token is 404, the same answer as a link that never existed.
"""

from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe

from dashboards import dashboards as services
from dashboards.views.dashboards import csv_response


def _shared(token: str):
    dashboard = services.resolve_share_token(token)
    if dashboard is None:
        raise Http404("This share link does not exist, was revoked or has expired.")
    return dashboard


def _private(response):
    # The token is in the URL: keep it out of Referer headers, search engines and caches.
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Cache-Control"] = "private, no-store"
    return response


@require_safe
def shared_dashboard(request, token):
    dashboard = _shared(token)
    charts = dashboard.charts.select_related("pipeline")
    context = {
        "dashboard": dashboard,
        "views": [services.view_chart(chart) for chart in charts],
        "token": token,
    }
    return _private(render(request, "dashboards/share.html", context))


@require_safe
def shared_chart_csv(request, token, chart_pk):
    dashboard = _shared(token)
    return _private(csv_response(get_object_or_404(dashboard.charts, pk=chart_pk)))
