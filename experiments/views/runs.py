"""The page of one MLflow run: what it logged, its trials, and its pipeline run; and the
registration of its model."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from experiments import registry, runs, tracking
from mlops_site.htmx import htmx_partial
from mlops_site.permissions import forbidden, permission_needed


@login_required
def run_detail(request, mlflow_run_id: str):
    try:
        context = runs.run_detail(mlflow_run_id)
    except runs.RunNotFound as error:
        raise Http404(str(error)) from None
    except tracking.TrackingUnavailable as error:
        return _unreachable(request, mlflow_run_id, error)
    return render(request, "experiments/run_detail.html", context)


@login_required
@require_POST
@permission_needed("experiments.register_model", "register a run’s model in the model registry")
def run_register(request, mlflow_run_id: str):
    """Register the run's model under the posted name, optionally with an alias."""
    form = {key: request.POST.get(key, "").strip() for key in ("name", "alias", "description")}
    if form["alias"] and not request.user.has_perm("experiments.set_alias"):
        return forbidden(
            request, "experiments.set_alias", "set an alias on the version you register"
        )
    try:
        version = registry.register_run_model(
            mlflow_run_id, form["name"], form["alias"] or None, form["description"], request.user
        )
    except registry.RegistrationRefused as error:
        errors = {error.field or "run": str(error)}
        return _register_outcome(request, mlflow_run_id, form=form, errors=errors)
    except tracking.TrackingUnavailable as error:
        return _unreachable(request, mlflow_run_id, error)
    done = {"name": form["name"], "version": version, "alias": form["alias"]}
    return _register_outcome(request, mlflow_run_id, done=done)


def _register_outcome(request, mlflow_run_id: str, form=None, errors=None, done=None):
    """Success: the model panel with the outcome (HTMX), or a message and the run page
    again. Refused: the form again with the message beside its field, on the panel
    (HTMX) or on the whole page (status 400)."""
    if done and not htmx_partial(request):
        messages.success(request, _registered(done))
        return redirect("experiments:run", mlflow_run_id=mlflow_run_id)
    partial = htmx_partial(request)
    try:
        context = (
            runs.registration_panel(mlflow_run_id) if partial else runs.run_detail(mlflow_run_id)
        )
    except runs.RunNotFound as error:
        raise Http404(str(error)) from None
    if form is not None:
        context["register"]["form"] = form
    context["register"].update(errors=errors or {}, done=done)
    if not partial:
        return render(request, "experiments/run_detail.html", context, status=400)
    response = render(request, "experiments/htmx/run_register.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _unreachable(request, mlflow_run_id: str, error: tracking.TrackingUnavailable):
    context = {
        "mlflow_run_id": mlflow_run_id,
        "store": tracking.store_name(),
        "store_error": str(error),
    }
    if htmx_partial(request):
        # HTMX swaps only successful answers: the notice replaces the model panel.
        return render(request, "experiments/htmx/experiment_unreachable.html", context)
    return render(request, "experiments/run_detail.html", context, status=503)


def _registered(done: dict) -> str:
    url = reverse("models:detail", kwargs={"name": done["name"]})
    alias = f", alias {done['alias']} moved to it" if done["alias"] else ""
    return format_html(
        'Registered {} version {}{}. <a href="{}">Open {}</a>',
        done["name"],
        done["version"],
        alias,
        url,
        done["name"],
    )
