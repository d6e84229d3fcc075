"""The experiments pages: every MLflow experiment, and one experiment's runs."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

from experiments import services, tracking


def _partial(request) -> bool:
    """An HTMX request for a fragment; a history restore wants the whole page."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def _unreachable(error: tracking.TrackingUnavailable) -> dict:
    return {"store": tracking.store_name(), "store_error": str(error)}


@login_required
def experiment_list(request):
    try:
        context = {"experiments": services.experiment_summaries()}
    except tracking.TrackingUnavailable as error:
        context = _unreachable(error)
    return render(request, "experiments/experiment_list.html", context)


@login_required
def experiment_detail(request, experiment_id):
    try:
        experiment = tracking.get_experiment(experiment_id)
    except tracking.TrackingUnavailable as error:
        return render(request, "experiments/experiment_detail.html", _unreachable(error))
    if experiment is None:
        raise Http404("No such experiment")
    context = {"experiment": experiment, **_run_table(request, experiment_id)}
    template = "experiments/experiment_detail.html"
    if _partial(request):
        template = "experiments/htmx/experiment_runs.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _run_table(request, experiment_id) -> dict:
    """The runs page for the query string, or the error that says what to fix."""
    query = {
        "status": request.GET.get("status", ""),
        "condition": request.GET.get("filter", "").strip(),
        "sort": request.GET.get("sort", ""),
        "descending": request.GET.get("desc") == "1",
    }
    context = {
        **query,
        "chosen_params": request.GET.getlist("param"),
        "statuses": services.RUN_STATUSES,
        "page_number": _page_number(request),
        "filtered": bool(query["status"] or query["condition"]),
    }
    try:
        page = services.experiment_runs(
            experiment_id, page_token=request.GET.get("page_token"), **query
        )
    except ValueError as error:
        return {**context, "query_error": str(error)}
    except tracking.TrackingUnavailable as error:
        return {**context, **_unreachable(error)}
    for run in page.runs:
        run["metric_cells"] = [run["metrics"].get(key) for key in page.metric_keys]
        run["param_cells"] = [run["params"].get(key) for key in context["chosen_params"]]
    return {**context, "page": page, **_page_links(request)}


def _page_links(request) -> dict:
    """Query values of the Next and Previous links. MLflow's page tokens only lead
    forward, so each link carries the tokens of the pages before it (`prev`, oldest
    first; the first page's is empty) and Previous pops the last one."""
    earlier = request.GET.getlist("prev")
    links = {"next_prev": [*earlier, request.GET.get("page_token", "")]}
    if earlier:
        links["back_token"] = earlier[-1] or None
        links["back_prev"] = earlier[:-1]
        links["back_page"] = _page_number(request) - 1 if _page_number(request) > 2 else None
    return links


def _page_number(request) -> int:
    number = request.GET.get("page", "1")
    return int(number) if number.isdigit() and int(number) > 0 else 1
