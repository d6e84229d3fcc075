"""Pages of user dashboards: the list, a dashboard, its charts, its share links.

Who may do what: the owner and staff edit; users it is shared with view; anyone else
gets 404, as if it did not exist (ids are guessable, titles may be confidential). A
viewer who tries to edit gets 403 with the reason. Each view parses the request, calls one
function of `dashboards.dashboards` and picks a template.
"""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from dashboards import dashboards as services
from dashboards.aggregate import ChartInvalid, ChartSource, source_columns
from dashboards.forms import ChartForm, DashboardForm, DashboardSettingsForm, ShareLinkForm
from dashboards.models import Chart, Dashboard
from mlops_site.htmx import htmx_partial


def with_dashboard(edit: bool = False):
    """Pass the dashboard `pk` names, if the user may see it (and edit it, when `edit`)."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, pk, *args, **kwargs):
            visible = Dashboard.objects.visible_to(request.user).select_related("owner")
            dashboard = get_object_or_404(visible, pk=pk)
            if edit and not dashboard.can_edit(request.user):
                context = {"dashboard": dashboard}
                return render(request, "dashboards/dashboard_forbidden.html", context, status=403)
            return view(request, dashboard, *args, **kwargs)

        return wrapped

    return decorator


@login_required
@require_safe
def dashboard_list(request):
    listed = Dashboard.objects.select_related("owner").annotate(chart_count=Count("charts"))
    context = {
        "mine": listed.filter(owner=request.user),
        "shared": listed.filter(shared_with=request.user).exclude(owner=request.user),
    }
    return render(request, "dashboards/dashboard_list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def dashboard_new(request):
    form = DashboardForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        dashboard = services.create_dashboard(request.user, **form.cleaned_data)
        messages.success(request, f"Dashboard {dashboard} created: add its first chart.")
        return redirect("dashboards:detail", pk=dashboard.pk)
    return render(request, "dashboards/dashboard_new.html", {"form": form})


@with_dashboard()
@require_safe
def dashboard_detail(request, dashboard):
    charts = dashboard.charts.select_related("pipeline")
    context = {
        "dashboard": dashboard,
        "views": [services.view_chart(chart) for chart in charts],
        "can_edit": dashboard.can_edit(request.user),
    }
    return render(request, "dashboards/dashboard_detail.html", context)


@with_dashboard(edit=True)
@require_http_methods(["GET", "POST"])
def dashboard_edit(request, dashboard):
    """Rename, describe, and choose who may view."""
    initial = {
        "title": dashboard.title,
        "description": dashboard.description,
        "shared_with": ", ".join(u.get_username() for u in dashboard.shared_with.all()),
    }
    form = DashboardSettingsForm(request.POST or None, initial=initial, owner=dashboard.owner)
    if request.method == "POST" and form.is_valid():
        services.update_dashboard(dashboard, **form.cleaned_data)
        messages.success(request, f"Dashboard {dashboard} saved.")
        return redirect("dashboards:detail", pk=dashboard.pk)
    return render(request, "dashboards/dashboard_edit.html", {"dashboard": dashboard, "form": form})


@with_dashboard()
@require_http_methods(["GET", "POST"])
def dashboard_duplicate(request, dashboard):
    """Anyone who may view a dashboard may copy it as their own."""
    title = request.POST.get("title", "").strip()[:200]
    if request.method == "GET":
        context = {"dashboard": dashboard, "title": services.copy_title(dashboard.title)}
        return render(request, "dashboards/dashboard_duplicate.html", context)
    copy = services.duplicate_dashboard(dashboard, request.user, title)
    messages.success(request, f"Dashboard {dashboard} duplicated as {copy}.")
    return redirect("dashboards:detail", pk=copy.pk)


@with_dashboard(edit=True)
@require_http_methods(["GET", "POST"])
def dashboard_delete(request, dashboard):
    if request.method == "GET":
        context = {"dashboard": dashboard, "chart_count": dashboard.charts.count()}
        return render(request, "dashboards/dashboard_delete.html", context)
    services.delete_dashboard(dashboard)
    messages.success(request, f"Dashboard {dashboard} deleted.")
    return redirect("dashboards:list")


@require_POST
@with_dashboard(edit=True)
def dashboard_reorder(request, dashboard):
    """The order the drag and drop left: the grid's `order` inputs, first to last."""
    ids = [_number(value) for value in request.POST.getlist("order")]
    services.reorder_charts(dashboard, ids)
    if request.htmx:
        return HttpResponse("Order saved.")
    return redirect("dashboards:detail", pk=dashboard.pk)


@require_POST
@with_dashboard(edit=True)
def chart_move(request, dashboard, chart_pk):
    chart = get_object_or_404(dashboard.charts, pk=chart_pk)
    services.move_chart(chart, -1 if request.POST.get("direction") == "up" else 1)
    return redirect(f"{dashboard.get_absolute_url()}#chart-{chart.pk}")


@with_dashboard(edit=True)
@require_http_methods(["GET", "POST"])
def chart_new(request, dashboard):
    return _chart_form(request, dashboard, None)


@with_dashboard(edit=True)
@require_http_methods(["GET", "POST"])
def chart_edit(request, dashboard, chart_pk):
    return _chart_form(request, dashboard, get_object_or_404(dashboard.charts, pk=chart_pk))


@require_POST
@with_dashboard(edit=True)
def chart_preview(request, dashboard):
    """The editor again, for the options as they stand: columns, errors and the chart."""
    chart = dashboard.charts.filter(pk=_number(request.POST.get("chart", ""))).first()
    context = _editor_context(request, dashboard, chart, save=False)
    return render(request, "dashboards/htmx/chart_editor.html", context)


@with_dashboard(edit=True)
@require_http_methods(["GET", "POST"])
def chart_delete(request, dashboard, chart_pk):
    chart = get_object_or_404(dashboard.charts, pk=chart_pk)
    if request.method == "GET":
        context = {"dashboard": dashboard, "chart": chart}
        return render(request, "dashboards/dashboard_chart_delete.html", context)
    services.delete_chart(chart)
    messages.success(request, f"Chart {chart} deleted.")
    return redirect("dashboards:detail", pk=dashboard.pk)


@with_dashboard()
@require_safe
def chart_csv(request, dashboard, chart_pk):
    return csv_response(get_object_or_404(dashboard.charts, pk=chart_pk))


@with_dashboard(edit=True)
@require_http_methods(["GET", "POST"])
def share_links(request, dashboard):
    """The dashboard's links; a POST makes one, whose URL this answer shows just once."""
    form = ShareLinkForm(request.POST or None)
    context = {"dashboard": dashboard, "form": form, "new_url": ""}
    if request.method == "POST" and form.is_valid():
        link, token = services.create_share_link(
            dashboard, request.user, form.cleaned_data["expires_at"]
        )
        context["new_url"] = request.build_absolute_uri(link_path(token))
        context["form"] = ShareLinkForm()
    context["links"] = dashboard.share_links.select_related("created_by")
    template = "dashboards/htmx/share_links.html" if htmx_partial(request) else None
    return render(request, template or "dashboards/dashboard_share.html", context)


@require_POST
@with_dashboard(edit=True)
def share_revoke(request, dashboard, link_pk):
    link = get_object_or_404(dashboard.share_links, pk=link_pk)
    services.revoke_share_link(link)
    messages.success(request, f"Share link #{link.pk} revoked: it now answers “not found”.")
    return redirect("dashboards:share_links", pk=dashboard.pk)


def link_path(token: str) -> str:
    return reverse("dashboards:share", args=[token])


def csv_response(chart: Chart) -> HttpResponse:
    try:
        body = services.chart_csv(chart)
    except ChartInvalid as exc:
        raise Http404(f"The chart's data cannot be read: {exc}") from None
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    filename = services.file_name(str(chart)) + ".csv"
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


def _chart_form(request, dashboard, chart):
    save = request.method == "POST" and "preview" not in request.POST
    context = _editor_context(request, dashboard, chart, save=save)
    if context.get("saved"):
        messages.success(request, f"Chart {context['saved']} saved.")
        return redirect(f"{dashboard.get_absolute_url()}#chart-{context['saved'].pk}")
    return render(request, "dashboards/dashboard_chart_form.html", context)


def _editor_context(request, dashboard, chart: Chart | None, save: bool) -> dict:
    """The chart form over its source's columns, with a preview, or the saved chart."""
    context = {"dashboard": dashboard, "chart": chart, "preview": None}
    if request.method == "GET":
        initial = _initial(chart or Chart(dashboard=dashboard))
        columns = services.columns_of(chart) if chart else {}
        context["form"] = form = ChartForm(initial=initial, columns=columns)
        if chart:
            context["preview"] = services.view_chart(chart)
        return context
    columns = _columns_for(request.POST)
    context["form"] = form = ChartForm(request.POST, columns=columns)
    if not form.is_valid():
        return context
    try:
        if save:
            context["saved"] = services.save_chart(dashboard, form.cleaned_data, chart)
            return context
        unsaved = services.build_chart(dashboard, form.cleaned_data)
        context["preview"] = services.view_chart(unsaved, raising=True)
    except ChartInvalid as exc:
        form.add_engine_errors(exc.errors)
    return context


def _initial(chart: Chart) -> dict:
    initial = {name: getattr(chart, name) for name in services.CHART_FIELDS}
    initial["filters"] = "\n".join(chart.filters)
    initial["pipeline"] = chart.pipeline_id
    return initial


def _columns_for(data) -> dict[str, str]:
    """The columns of the source the (not yet validated) form names; {} if unreadable."""
    source = ChartSource(
        kind=data.get("source_kind", ""),
        dataset=data.get("dataset", ""),
        dataset_version=_number(data.get("dataset_version", "")),
        pipeline_id=_number(data.get("pipeline", "")),
        datasource=data.get("datasource", ""),
        table=data.get("table", ""),
    )
    try:
        return source_columns(source)
    except ChartInvalid:
        return {}


def _number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None
