"""Analyst pages for data sources: the list, new and edit, test connection, and the
schema browser with "new pipeline from this table".

Each view parses the request, calls one function of `datasources.sources` (shared with
the admin, the commands and the API) and picks a template. The secret is write-only:
no page, fragment or message shows it.
"""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from datasources import sources
from datasources.forms import DataSourceForm, option_help
from datasources.models import DataSource
from mlops_site.permissions import permission_needed
from pipelines.validation import PipelineInvalid


@login_required
@require_safe
def source_list(request):
    source_rows = list(DataSource.objects.all())
    tests = sources.last_tests(source_rows)
    rows = [(source, tests.get(source.pk)) for source in source_rows]
    return render(request, "datasources/source_list.html", {"rows": rows})


@login_required
@permission_needed("datasources.add_datasource", "register data sources")
@require_http_methods(["GET", "POST"])
@sensitive_post_parameters("secret")  # masked in error reports and logs
def source_new(request):
    return _source_form(request, None)


@login_required
@permission_needed("datasources.change_datasource", "change data sources")
@require_http_methods(["GET", "POST"])
@sensitive_post_parameters("secret")  # masked in error reports and logs
def source_edit(request, pk):
    return _source_form(request, get_object_or_404(DataSource, pk=pk))


def _source_form(request, source: DataSource | None):
    form = DataSourceForm(request.POST or None, source=source)
    original_name = source.name if source else ""
    if request.method == "POST" and form.is_valid():
        try:
            saved = sources.save_source(form.values(), form.new_secret(), source)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            verb = "saved" if source else "registered"
            messages.success(request, f"Data source {saved.name} {verb}: test its connection.")
            return redirect("data:source_list")
    context = {"form": form, "source": source, "original_name": original_name}
    context["kinds"] = option_help()
    return render(request, "datasources/source_form.html", context)


# Testing opens a connection with the stored secret and reveals the server and the
# account's rights: it takes the right to change the source, as in the admin.
@require_POST
@login_required
@permission_needed("datasources.change_datasource", "test data source connections")
def source_test(request, pk):
    source = get_object_or_404(DataSource, pk=pk)
    tested = sources.test_source(source)
    if request.htmx:
        context = {"source": source, "tested": tested, "check": tested.check}
        return render(request, "datasources/htmx/source_test_result.html", context)
    check = tested.check
    if not check.ok:
        messages.error(request, f"Data source {source.name}: {check.report}")
    elif check.worrying or check.refusal:
        messages.warning(request, f"Data source {source.name}: {check.report}")
    else:
        messages.success(request, f"Data source {source.name}: {check.report}")
    if request.POST.get("next") == "detail":
        return redirect("data:source_detail", pk=source.pk)
    return redirect("data:source_list")


@login_required
@require_safe
def source_detail(request, pk):
    source = get_object_or_404(DataSource, pk=pk)
    context = {"source": source, "tables": [], "problem": "", "preview": None}
    context["last"] = sources.last_tests([source]).get(source.pk)
    try:
        context["tables"] = sources.source_tables(source)
    except sources.SourceUnreadable as exc:
        context["problem"] = str(exc)
    table = request.GET.get("table", "")
    if table and not context["problem"]:
        context.update(_table_context(source, table))
    return render(request, "datasources/source_detail.html", context)


@login_required
@require_safe
def source_table(request, pk):
    """The columns and first rows of one table: the fragment htmx swaps into the page."""
    source = get_object_or_404(DataSource, pk=pk)
    table = request.GET.get("table", "")
    if not request.htmx or request.htmx.history_restore_request:
        detail = reverse("data:source_detail", args=[source.pk])
        return redirect(f"{detail}?{urlencode({'table': table})}")
    context = {"source": source, **_table_context(source, table)}
    response = render(request, "datasources/htmx/source_table.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _table_context(source: DataSource, table: str) -> dict:
    context = {"table": table, "preview": None, "table_problem": ""}
    try:
        context["preview"] = sources.table_preview(source, table)
    except sources.SourceUnreadable as exc:
        context["table_problem"] = str(exc)
    return context


@require_POST
@login_required
@permission_needed("pipelines.add_pipeline", "create pipelines")
def source_pipeline(request, pk):
    source = get_object_or_404(DataSource, pk=pk)
    table = request.POST.get("table", "")
    try:
        pipeline = sources.pipeline_from_table(source, table, request.user)
    except sources.SourceUnreadable as exc:
        messages.error(request, f"No pipeline was created: {exc}")
    except PipelineInvalid as exc:
        problem = "; ".join(str(error) for error in exc.errors)
        messages.error(request, f"No pipeline was created: {problem}")
    else:
        messages.success(
            request, f"Pipeline {pipeline.name} created: its first step reads {table}."
        )
        return redirect("pipelines:detail", pk=pipeline.pk)
    return redirect("data:source_detail", pk=source.pk)
