"""Analyst pages for pipelines: the list and its actions (new, import, duplicate, export,
delete, run).

Each view parses the request, calls one function of `pipelines.services` (runs start
through `pipelines.runs.start_run`, the same function every other trigger uses) and picks
a template or redirects. An HTMX request gets the fragment of the page it swaps.
"""

import json
import re
from urllib.parse import urlencode, urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_vary_headers
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from mlops_site.htmx import htmx_partial
from mlops_site.permissions import permission_needed
from pipelines import services
from pipelines.choices import RunStatus, RunTrigger
from pipelines.models import Pipeline
from pipelines.runs import PipelineBusy, start_run
from pipelines.validation import PipelineInvalid

PAGE_SIZE = 25
IMPORT_MAX_BYTES = 1_000_000
NEVER_RUN = "never"
STATUS_CHOICES = [(NEVER_RUN, "Never run"), *RunStatus.choices]


@login_required
@require_safe
def pipeline_list(request):
    context = _list_context(request.GET)
    template = "pipelines/htmx/pipeline_table.html" if htmx_partial(request) else None
    response = render(request, template or "pipelines/pipeline_list.html", context)
    # The same URL answers a fragment to htmx and the page to a browser: caches must
    # not serve one for the other.
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@permission_needed("pipelines.add_pipeline", "create pipelines")
@require_http_methods(["GET", "POST"])
def pipeline_new(request):
    context = {"values": {"name": "", "description": ""}, "errors": {}, "other_errors": []}
    if request.method == "POST":
        values = context["values"] = {key: request.POST.get(key, "") for key in context["values"]}
        try:
            pipeline = services.create_pipeline(
                values["name"], values["description"], owner=request.user, user=request.user
            )
        except PipelineInvalid as exc:
            context["errors"] = {e.field: e.message for e in exc.errors if e.field in values}
            context["other_errors"] = [e for e in exc.errors if e.field not in values]
        else:
            messages.success(request, f"Pipeline {pipeline.name} created: add its steps.")
            return redirect("pipelines:detail", pk=pipeline.pk)
    return render(request, "pipelines/pipeline_new.html", context)


@login_required
@permission_needed("pipelines.add_pipeline", "import pipelines")
@require_http_methods(["GET", "POST"])
def pipeline_import(request):
    context = {"problem": "", "errors": [], "max_bytes": IMPORT_MAX_BYTES}
    if request.method == "POST":
        upload = request.FILES.get("file")
        try:
            data = _uploaded_json(upload)
            pipeline = services.import_pipeline(data, owner=request.user, user=request.user)
        except UnreadableUpload as exc:
            context["problem"] = str(exc)
        except PipelineInvalid as exc:
            context["problem"] = f"{upload.name} is not a valid pipeline; nothing was imported."
            context["errors"] = exc.errors
        else:
            messages.success(request, f"Pipeline {pipeline.name} imported.")
            return redirect("pipelines:detail", pk=pipeline.pk)
    return render(request, "pipelines/pipeline_import.html", context)


@login_required
@permission_needed("pipelines.add_pipeline", "duplicate pipelines")
@require_http_methods(["GET", "POST"])
def pipeline_duplicate(request, pk):
    pipeline = get_object_or_404(Pipeline, pk=pk)
    name = request.POST.get("name", "").strip()
    context = {"pipeline": pipeline, "name": name or services.copy_name(pipeline.name)}
    if request.method == "GET":
        return render(request, "pipelines/pipeline_duplicate.html", context)
    try:
        copy = services.duplicate_pipeline(pipeline, name or None, request.user)
    except PipelineInvalid as exc:
        if request.htmx:
            problem = "; ".join(str(error) for error in exc.errors)
            return _table(request, "error", f"{pipeline} was not duplicated: {problem}")
        context["errors"] = exc.errors
        return render(request, "pipelines/pipeline_duplicate.html", context)
    done = f"Pipeline {pipeline} duplicated as {copy}."
    if request.htmx:
        return _table(request, "success", done)
    messages.success(request, done)
    return redirect("pipelines:list")


@login_required
@require_safe
def pipeline_export(request, pk):
    """The pipeline as a JSON file that Import (or `manage.py import_pipeline`) reads back."""
    pipeline = get_object_or_404(Pipeline, pk=pk)
    body = json.dumps(services.export_pipeline(pipeline), indent=2, ensure_ascii=False)
    response = HttpResponse(body + "\n", content_type="application/json")
    filename = re.sub(r"[\\/\x00-\x1f\x7f]", "_", pipeline.name) + ".json"
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


@login_required
@permission_needed("pipelines.delete_pipeline", "delete pipelines")
@require_http_methods(["GET", "POST"])
def pipeline_delete(request, pk):
    pipeline = get_object_or_404(Pipeline, pk=pk)
    if request.method == "GET":
        return render(request, "pipelines/pipeline_delete.html", _delete_context(pipeline))
    try:
        services.delete_pipeline(pipeline, request.user)
    except services.PipelineInUse as exc:
        level, text = "error", f"{pipeline} was not deleted: {exc}"
    else:
        level, text = "success", f"Pipeline {pipeline} deleted."
    if request.htmx:
        return _table(request, level, text)
    messages.add_message(request, messages.ERROR if level == "error" else messages.SUCCESS, text)
    return redirect("pipelines:list")


@require_POST
@login_required
@permission_required("pipelines.add_pipelinerun", raise_exception=True)
def run_pipeline(request, pk):
    pipeline = get_object_or_404(Pipeline, pk=pk)
    outcome = {"pipeline": pipeline, "run": None, "refusal": "", "errors": []}
    try:
        outcome["run"] = start_run(pipeline, trigger=RunTrigger.MANUAL, user=request.user)
    except PipelineBusy as exc:
        outcome["refusal"] = str(exc)
    except PipelineInvalid as exc:
        outcome["errors"] = exc.errors
    if request.htmx:
        return render(request, "pipelines/htmx/run_outcome.html", outcome)
    _add_message(request, **outcome)
    return redirect("pipelines:list")


class UnreadableUpload(Exception):
    """An uploaded file that is missing, too large or not JSON."""


def _uploaded_json(upload):
    if upload is None:
        raise UnreadableUpload("Choose a JSON file to import.")
    if upload.size > IMPORT_MAX_BYTES:
        raise UnreadableUpload(
            f"{upload.name} is {upload.size:,} bytes; the limit is {IMPORT_MAX_BYTES:,}."
        )
    try:
        return json.loads(upload.read())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise UnreadableUpload(f"{upload.name} is not valid JSON: {exc}") from None


def _list_context(query: QueryDict) -> dict:
    q, status = query.get("q", "").strip(), query.get("status", "")
    pipelines = Pipeline.objects.for_list_page()
    if q:
        pipelines = pipelines.filter(name__icontains=q)
    if status == NEVER_RUN:
        pipelines = pipelines.filter(last_run_status__isnull=True)
    elif status in RunStatus.values:
        pipelines = pipelines.filter(last_run_status=status)
    else:
        status = ""
    # get_page: a page past the end shows the last one, a malformed number the first.
    asked = query.get("page", "")
    page = Paginator(pipelines, PAGE_SIZE).get_page(asked)
    filters = {key: value for key, value in (("q", q), ("status", status)) if value}
    return {
        "page": page,
        "page_note": asked if asked and asked != str(page.number) else "",
        "q": q,
        "status": status,
        "status_choices": STATUS_CHOICES,
        "filtered": bool(filters),
        # Ends with "&" so that the template appends "page=N".
        "filter_query": f"{urlencode(filters)}&" if filters else "",
    }


def _table(request, level: str, text: str):
    """The table fragment as the page showed it (search, filter, page), with an outcome."""
    query = QueryDict(urlsplit(request.htmx.current_url or "").query)
    context = {**_list_context(query), "notice": {"level": level, "text": text}}
    return render(request, "pipelines/htmx/pipeline_table.html", context)


def _delete_context(pipeline: Pipeline) -> dict:
    return {
        "pipeline": pipeline,
        "active_run": pipeline.runs.active().order_by("created_at", "pk").first(),
        "run_count": pipeline.runs.count(),
        "schedule_count": pipeline.schedules.count(),
        "version_count": pipeline.versions.count(),
    }


def _add_message(request, pipeline, run, refusal, errors) -> None:
    if run is not None:
        messages.success(request, f"Run #{run.pk} of {pipeline} queued.")
    else:
        problem = refusal or "; ".join(str(error) for error in errors)
        messages.error(request, f"{pipeline} was not started: {problem}")
