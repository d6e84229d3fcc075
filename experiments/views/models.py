"""The model registry pages: every registered model, one model's versions, and the
actions on it (set, move or remove an alias; the promotion gate). The work is done by
`experiments.registry`; these views parse the request and pick a template."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST

from experiments import registry, tracking
from mlops_site.htmx import htmx_partial
from mlops_site.permissions import permission_needed


def _unreachable(error: tracking.TrackingUnavailable) -> dict:
    return {"store": tracking.store_name(), "store_error": str(error)}


@login_required
def model_list(request):
    try:
        context = {"models": registry.model_summaries()}
    except tracking.TrackingUnavailable as error:
        context = _unreachable(error)
    return render(request, "experiments/model_list.html", context)


@login_required
def model_detail(request, name):
    context = _page_context(name)
    return render(request, "experiments/model_detail.html", context)


@login_required
@require_POST
@permission_needed("experiments.set_alias", "set, move or remove model aliases")
def model_alias(request, name):
    """Set or move an alias to the chosen version, or remove it (the Remove button)."""
    form = {
        "alias": request.POST.get("alias", "").strip(),
        "version": request.POST.get("version", ""),
        "override": request.POST.get("override") == "1",
        "reason": request.POST.get("reason", ""),
    }
    try:
        done = _change_alias(request, name, form)
    except (registry.AliasRefused, tracking.TrackingUnavailable) as error:
        return _outcome(request, name, "versions", error=str(error), form=form)
    return _outcome(request, name, "versions", done=done)


@login_required
@require_POST
@permission_needed("experiments.change_modelpolicy", "change a model's promotion gate")
def model_gate(request, name):
    metric = request.POST.get("gate_metric", "")
    higher = request.POST.get("higher_is_better", "1") == "1"
    try:
        _require_model(name)
        registry.save_policy(name, metric, higher, request.user)
    except (registry.AliasRefused, tracking.TrackingUnavailable) as error:
        gate_form = {"gate_metric": metric, "higher_is_better": higher}
        return _outcome(request, name, "gate", error=str(error), gate_form=gate_form)
    done = f"Promotion gate of {name}: " + (
        f"champion moves only to a version at least as good on {metric.strip()}."
        if metric.strip()
        else "off; champion may move to any version."
    )
    return _outcome(request, name, "gate", done=done)


def _change_alias(request, name: str, form: dict) -> str:
    if "remove" in request.POST:
        change = registry.remove_alias(name, form["alias"], request.user)
        return f"Alias {change.alias} removed from version {change.previous_version}."
    if not form["version"].isdigit():
        raise registry.AliasRefused("version: pick the version the alias should point at.")
    change = registry.set_alias(
        name, form["alias"], int(form["version"]), request.user, form["override"], form["reason"]
    )
    moved = f" (was version {change.previous_version})" if change.previous_version else ""
    overridden = " The promotion gate was overridden." if change.overridden else ""
    return f"Alias {change.alias} now points at version {change.version}{moved}.{overridden}"


def _outcome(request, name: str, part: str, done: str = "", error: str = "", **form):
    """An HTMX request gets the changed part of the page with the outcome in it; a plain
    form post gets a message and the page again."""
    if not htmx_partial(request):
        if error:
            messages.error(request, error)
        else:
            messages.success(request, done)
        return redirect("models:detail", name=name)
    context = {**_page_context(name), "done": done, "error": error, **form}
    response = render(request, f"experiments/htmx/model_{part}.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _page_context(name: str) -> dict:
    try:
        page = registry.model_page(name)
    except tracking.TrackingUnavailable as error:
        return {"name": name, **_unreachable(error)}
    except ValueError:
        page = None  # a name MLflow cannot even search for
    if page is None:
        raise Http404("No such registered model")
    return {
        "name": name,
        "page": page,
        "suggested_aliases": registry.SUGGESTED_ALIASES,
        "gated_alias": registry.GATED_ALIAS,
    }


def _require_model(name: str) -> None:
    if tracking.registered_model(name) is None:
        raise Http404("No such registered model")
