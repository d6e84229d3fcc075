"""The Compare runs page: MLflow runs side by side; the work is in `experiments.compare`.

Every control on the page belongs to one GET form, so the page works without JavaScript;
with HTMX a control swaps only its own part of the page, named by the request's target.
"""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

from experiments import compare as comparing
from experiments import tracking
from mlops_site.htmx import htmx_partial

# The parts of the page an HTMX request may ask for, by the id of their container.
FRAGMENTS = {
    "compare-table": "experiments/htmx/compare_table.html",
    "compare-scatter": "experiments/htmx/compare_scatter.html",
    "compare-diff": "experiments/htmx/compare_diff.html",
}


@login_required
def compare_runs(request):
    query = request.GET
    context = {"only_differences": query.get("diff") == "1", "max_runs": comparing.MAX_RUNS}
    try:
        runs = comparing.load_runs(query.getlist("runs"))
    except comparing.BadSelection as error:
        return _page(request, {**context, "problem": str(error)}, status=400)
    except comparing.RunsNotFound as error:
        return _page(request, {**context, "problem": str(error)}, status=404)
    except tracking.TrackingUnavailable as error:
        context.update(store=tracking.store_name(), store_error=str(error))
        return _page(request, context)
    context.update(
        runs=runs,
        table=comparing.side_by_side(runs, context["only_differences"]),
        charts=comparing.metric_charts(runs),
        scatter=comparing.scatter(runs, query.get("param", ""), query.get("metric", "")),
        diff=comparing.definitions_diff(runs, query.get("a", ""), query.get("b", "")),
    )
    return _page(request, context)


def _page(request, context: dict, status: int = 200):
    template = "experiments/compare.html"
    if htmx_partial(request) and request.htmx.target in FRAGMENTS and "runs" in context:
        template = FRAGMENTS[request.htmx.target]
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response
