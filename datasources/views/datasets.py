"""Analyst pages for uploaded datasets: the list, upload, a dataset's page (versions,
preview, column profile), download and delete.

Each view parses the request, calls a function of `datasources.services` (the same ones
the admin and the API use) and picks a template. An htmx request gets the fragment it swaps.
"""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_safe

from datasources import services
from datasources.models import Dataset
from mlops_site.htmx import htmx_partial
from mlops_site.permissions import permission_needed

PAGE_SIZE = 25
PREVIEW_ROWS = 20
ENCODING_CHOICES = ["utf-8", "cp1252", "latin-1", "iso-8859-15", "utf-8-sig"]
DELIMITER_LABELS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe", "": "—"}


@login_required
@require_safe
def dataset_list(request):
    context = _list_context(request)
    partial = htmx_partial(request)
    template = "datasources/htmx/dataset_table.html" if partial else "datasources/dataset_list.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@permission_needed("datasources.add_dataset", "upload datasets")
@require_http_methods(["GET", "POST"])
def dataset_upload(request):
    limit = settings.MLOPS_MAX_UPLOAD_BYTES
    context = {
        "values": {"name": request.GET.get("name", ""), "encoding": ""},
        "errors": {},
        "max_bytes": limit,
        "encodings": ENCODING_CHOICES,
        "names": services.latest_datasets().values_list("name", flat=True)[:500],
    }
    if request.method == "GET":
        return render(request, "datasources/dataset_upload.html", context)
    # Refused before the body is read: Django would otherwise spool it all to disk first.
    if int(request.META.get("CONTENT_LENGTH") or 0) > limit + services.FORM_OVERHEAD_BYTES:
        context["errors"] = {"file": [_too_large(limit)]}
        return render(request, "datasources/dataset_upload.html", context, status=413)
    values = context["values"] = {
        "name": request.POST.get("name", "").strip(),
        "encoding": request.POST.get("encoding", "").strip(),
    }
    upload = request.FILES.get("file")
    try:
        if upload is None:
            raise ValidationError({"file": "Choose a file to upload."})
        dataset = services.add_dataset(
            upload, values["name"], upload.name, request.user, encoding=values["encoding"]
        )
    except ValidationError as exc:
        context["errors"] = (
            exc.message_dict if hasattr(exc, "error_dict") else {"file": exc.messages}
        )
        return render(request, "datasources/dataset_upload.html", context, status=400)
    messages.success(
        request,
        f"Uploaded {dataset.original_filename} as {dataset.name} version {dataset.version}: "
        f"{dataset.row_count:,} rows, {dataset.column_count} columns.",
    )
    return redirect(_version_url(dataset))


@login_required
@require_safe
def dataset_detail(request, name):
    versions = list(services.dataset_versions(name))
    if not versions:
        raise Http404(f"No dataset is named {name!r}.")
    shown = _chosen_version(request, versions)
    for version in versions:
        version.delimiter_label = DELIMITER_LABELS.get(version.delimiter, version.delimiter)
    context = {
        "name": name,
        "versions": versions,
        "latest": versions[0],
        "shown": shown,
        "used_by": services.pipelines_reading([name])[name],
    }
    try:
        head = services.dataset_head(shown, PREVIEW_ROWS)
        profile = _with_null_percent(services.profile_dataset(shown), shown.row_count)
        numeric = [column["numeric"] for column in profile]
        context["preview_rows"] = [list(zip(row, numeric, strict=False)) for row in head["rows"]]
        context["profile"] = profile
    except (OSError, ValueError) as exc:  # the stored file is gone or unreadable
        context["read_error"] = str(exc)
    return render(request, "datasources/dataset_detail.html", context)


@login_required
@require_safe
def dataset_download(request, name, version):
    dataset = get_object_or_404(Dataset, name=name, version=version)
    try:
        handle = dataset.file.open("rb")
    except FileNotFoundError:
        raise Http404(f"The stored file of {dataset} is missing.") from None
    return FileResponse(
        handle,
        as_attachment=True,
        filename=services.download_filename(dataset),
        content_type=services.CONTENT_TYPES.get(dataset.format, "application/octet-stream"),
    )


@login_required
@permission_needed("datasources.delete_dataset", "delete datasets")
@require_http_methods(["GET", "POST"])
def dataset_version_delete(request, name, version):
    dataset = get_object_or_404(Dataset, name=name, version=version)
    count = Dataset.objects.filter(name=name).count()
    context = {"name": name, "dataset": dataset, "version_count": count}
    if request.method == "POST":
        try:
            services.delete_dataset(dataset)
        except ValidationError as exc:
            context["refusal"] = " ".join(exc.messages)
        else:
            messages.success(request, f"Deleted version {version} of {name}.")
            if count > 1:
                return redirect("data:dataset_detail", name=name)
            return redirect("data:dataset_list")
    else:
        context["used_by"] = services.pipelines_using(dataset)
    status = 409 if context.get("refusal") else 200
    return render(request, "datasources/dataset_delete.html", context, status=status)


@login_required
@permission_needed("datasources.delete_dataset", "delete datasets")
@require_http_methods(["GET", "POST"])
def dataset_delete(request, name):
    count = Dataset.objects.filter(name=name).count()
    if not count:
        raise Http404(f"No dataset is named {name!r}.")
    context = {"name": name, "dataset": None, "version_count": count}
    if request.method == "POST":
        try:
            deleted = services.delete_dataset_versions(name)
        except ValidationError as exc:
            context["refusal"] = " ".join(exc.messages)
        else:
            messages.success(request, f"Deleted {name} and its {deleted} version(s).")
            return redirect("data:dataset_list")
    else:
        context["used_by"] = [user["name"] for user in services.pipelines_reading([name])[name]]
    status = 409 if context.get("refusal") else 200
    return render(request, "datasources/dataset_delete.html", context, status=status)


def _list_context(request) -> dict:
    q = request.GET.get("q", "").strip()
    asked = request.GET.get("page", "")
    page = Paginator(services.latest_datasets(q), PAGE_SIZE).get_page(asked)
    rows = list(page.object_list)
    users = services.pipelines_reading(dataset.name for dataset in rows) if rows else {}
    for dataset in rows:
        dataset.used_by = users.get(dataset.name, [])
    return {
        "page": page,
        "rows": rows,
        "q": q,
        "filter_query": f"{urlencode({'q': q})}&" if q else "",
        "page_note": asked if asked and asked != str(page.number) else "",
    }


def _chosen_version(request, versions: list[Dataset]) -> Dataset:
    asked = request.GET.get("version", "")
    if not asked:
        return versions[0]
    for dataset in versions:
        if str(dataset.version) == asked:
            return dataset
    raise Http404(f"{versions[0].name} has no version {asked!r}.")


def _version_url(dataset: Dataset) -> str:
    from django.urls import reverse

    url = reverse("data:dataset_detail", kwargs={"name": dataset.name})
    return f"{url}?{urlencode({'version': dataset.version})}"


def _too_large(limit: int) -> str:
    return f"The file is larger than the upload limit of {filesizeformat(limit)} ({limit:,} bytes)."


def _with_null_percent(profile: list[dict], rows: int) -> list[dict]:
    """The profile with each column's share of nulls, and whether it holds numbers."""
    return [
        {
            **column,
            "null_percent": 100 * column["nulls"] / (rows or 1),
            "numeric": column["dtype"].startswith(("int", "float", "uint", "Int", "Float")),
        }
        for column in profile
    ]
