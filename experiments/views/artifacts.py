"""The artifact pages of a pipeline run's MLflow run: browse, preview and download.

Only runs a PipelineRun of this platform recorded are served, and only paths that
`safe_artifact_path` accepts; the work is in `experiments.artifacts`.
"""

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponseBadRequest
from django.shortcuts import render

from experiments import artifacts, tracking


@login_required
def artifact_list(request, mlflow_run_id: str):
    context = {"mlflow_run_id": mlflow_run_id, "store": tracking.store_name()}
    try:
        path = artifacts.safe_artifact_path(request.GET.get("path", ""))
        artifacts.check_run(mlflow_run_id)
        context.update(artifacts.browse(mlflow_run_id, path))
    except artifacts.ArtifactPathRefused as exc:
        return _page(request, {**context, "refused": str(exc)}, status=400)
    except artifacts.ArtifactNotFound as exc:
        raise Http404(str(exc)) from None
    except tracking.TrackingUnavailable:
        return _page(request, {**context, "unavailable": True}, status=503)
    context["crumbs"] = artifacts.breadcrumbs(context["folder"])
    return _page(request, context)


def _page(request, context: dict, status: int = 200):
    template = "experiments/artifacts.html"
    if request.htmx and not request.htmx.history_restore_request:
        template = "experiments/htmx/artifact_panel.html"
    return render(request, template, context, status=status)


@login_required
def artifact_download(request, mlflow_run_id: str, path: str):
    try:
        path = artifacts.safe_artifact_path(path)
        artifacts.check_run(mlflow_run_id)
        local = artifacts.open_artifact(mlflow_run_id, path)
    except artifacts.ArtifactPathRefused as exc:
        return HttpResponseBadRequest(f"Refused artifact path: {exc}.", content_type="text/plain")
    except artifacts.ArtifactNotFound as exc:
        raise Http404(str(exc)) from None
    except tracking.TrackingUnavailable:
        message = f"The MLflow tracking store at {tracking.store_name()} cannot be reached."
        return HttpResponseBadRequest(message, content_type="text/plain", status=503)
    response = FileResponse(
        local.open("rb"),
        as_attachment=True,
        filename=local.name,
        content_type=artifacts.content_type(path),
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response
