"""The step inspector (`/pipelines/<id>/steps/<order>/`): a step's cached output.

The views parse the request and call `pipelines.inspector`; HTMX requests for the data
table (paging, sorting, filtering) get that fragment only. Nothing here reads a cache.
"""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.text import slugify
from django.views.decorators.http import require_safe

from pipelines import inspector
from pipelines.inspector import OPERATORS, PAGE_SIZE, InspectError
from pipelines.models import Pipeline, PipelineRun

PAGE = "pipelines/inspector.html"
TABLE = "pipelines/htmx/inspector_table.html"
TABLE_ID = "inspector-data"
RUN = "pipelines.add_pipelinerun"
BAR_WIDTH, BAR_GAP, BAR_HEIGHT = 6, 1, 28


@login_required
@require_safe
def step_inspector(request, pk, order):
    pipeline = get_object_or_404(Pipeline, pk=pk)
    output = _output(pipeline, order)
    notes: list[str] = []
    context = {
        "pipeline": pipeline,
        "output": output,
        "order": order,
        "can_run": request.user.has_perm(RUN),
        "notes": notes,
        "operators": OPERATORS,
        "following": _followed_run(pipeline, request.GET.get("run")),
    }
    if output.ok and output.keys:
        key = _key(output, request.GET.get("key"), notes)
        context["key"] = key
        context["tabs"] = [(k, _url(pipeline, order, key=k.name)) for k in output.keys]
        if key.kind == "frame":
            context.update(_frame_context(request, pipeline, order, output, key))
        elif key.kind == "model":
            context["model"] = inspector.model_summary(pipeline, order, output=output)
    partial = request.htmx and request.htmx.target == TABLE_ID and "page" in context
    response = render(request, TABLE if partial else PAGE, context)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


@login_required
@require_safe
def step_csv(request, pk, order):
    """The rows of the current filter and sort as a streamed CSV file."""
    pipeline = get_object_or_404(Pipeline, pk=pk)
    output = _output(pipeline, order)
    query = _query(request.GET)
    try:
        lines = inspector.csv_rows(
            pipeline,
            order,
            query["key"],
            query["sort"],
            query["descending"],
            query["conditions"],
            output=output,
        )
        key = output.key(query["key"]).name
    except InspectError as exc:
        messages.error(request, f"The CSV file was not made: {exc}")
        return redirect(_url(pipeline, order))
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    name = f"{slugify(pipeline.name) or 'pipeline'}-step-{order}-{slugify(key) or 'data'}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _followed_run(pipeline, run_pk: str | None) -> PipelineRun | None:
    """The run this page was opened to follow ("Run only this step"), if it names one."""
    if not (run_pk or "").isdigit():
        return None
    return pipeline.runs.filter(pk=int(run_pk)).only("pk", "status").first()


def _output(pipeline, order):
    try:
        return inspector.step_output(pipeline, order)
    except LookupError as exc:
        raise Http404(str(exc)) from exc


def _key(output, asked: str | None, notes: list[str]):
    try:
        return output.key(asked)
    except InspectError as exc:
        notes.append(f"{str(exc)[:1].upper()}{str(exc)[1:]}; showing {output.key(None).name}.")
        return output.key(None)


def _frame_context(request, pipeline, order, output, key) -> dict:
    query = _query(request.GET)
    try:
        page = inspector.data_page(
            pipeline,
            order,
            key.name,
            query["page"],
            query["sort"],
            query["descending"],
            query["conditions"],
            output=output,
        )
    except InspectError as exc:
        return {"frame_problem": str(exc), "profile": output.profiles.get(key.name)}
    numeric = [page.kinds.get(column) == "number" for column in page.columns]
    state = {"key": key.name, "sort": page.sort, "desc": page.descending, "f": page.filters}
    profile = output.profiles.get(key.name) or {}
    return {
        "page": page,
        "profile": profile,
        "profile_columns": [_with_bars(column) for column in profile.get("columns", [])],
        "diff": inspector.output_diff(pipeline, order, key.name, output=output),
        "links": _links(pipeline, order, page, state),
        "headers": [
            (
                column,
                _sort_link(pipeline, order, state, column),
                _sorted(page, column),
                page.kinds.get(column) == "number",
            )
            for column in page.columns
        ],
        "filter_chips": [
            (text, _url(pipeline, order, **{**state, "f": [f for f in page.filters if f != text]}))
            for text in page.filters
        ],
        "table_rows": [
            (number, list(zip(cells, numeric, strict=True))) for number, cells in page.rows
        ],
        "asked": {name: request.GET.get(name, "") for name in ("column", "op", "value")},
        "table_id": TABLE_ID,
        "page_size": PAGE_SIZE,
    }


def _query(data) -> dict:
    """key, page, sort, desc and the conditions (`f` texts, or the form's column, op and
    value) of a request."""
    conditions: list = list(data.getlist("f"))
    column, op = data.get("column", "").strip(), data.get("op", "").strip()
    if column or op:
        value = data.get("value", "")
        if op in ("in", "not_in"):
            value = [v.strip() for v in value.split(",") if v.strip()]
        conditions.append({"column": column, "op": op, "value": value})
    return {
        "key": data.get("key") or None,
        "page": data.get("page", 1),
        "sort": data.get("sort") or None,
        "descending": data.get("desc") in ("1", "true", "on"),
        "conditions": conditions,
    }


def _url(pipeline, order, name="pipelines:step", **state) -> str:
    params = [
        (name_, value)
        for name_, value in (
            ("key", state.get("key")),
            ("sort", state.get("sort")),
            ("desc", "1" if state.get("desc") and state.get("sort") else None),
        )
        if value
    ]
    params += [("f", text) for text in state.get("f") or []]
    if state.get("page") and state["page"] != 1:
        params.append(("page", state["page"]))
    base = reverse(name, args=[pipeline.pk, order])
    return f"{base}?{urlencode(params)}" if params else base


def _links(pipeline, order, page, state) -> dict:
    def at(number):
        return _url(pipeline, order, **state, page=number)

    return {
        "first": at(1) if page.page > 1 else None,
        "previous": at(page.page - 1) if page.page > 1 else None,
        "next": at(page.page + 1) if page.page < page.pages else None,
        "last": at(page.pages) if page.page < page.pages else None,
        "csv": _url(pipeline, order, "pipelines:step_csv", **state),
        "clear": _url(pipeline, order, key=state["key"]),
        "action": reverse("pipelines:step", args=[pipeline.pk, order]),
    }


def _sort_link(pipeline, order, state, column) -> str:
    descending = state["sort"] == column and not state["desc"]
    return _url(pipeline, order, **{**state, "sort": column, "desc": descending})


def _sorted(page, column) -> str:
    if page.sort != column:
        return "none"
    return "descending" if page.descending else "ascending"


def _with_bars(column: dict) -> dict:
    """A profile column with its histogram as SVG bars (x, y, height, title)."""
    histogram = column.get("histogram")
    if not histogram:
        return column
    counts, edges = histogram["counts"], histogram["edges"]
    peak = max(counts) or 1
    bars = []
    for index, count in enumerate(counts):
        height = max(1, round(BAR_HEIGHT * count / peak)) if count else 0
        title = f"{edges[index]:.4g} to {edges[index + 1]:.4g}: {count:,} rows"
        bars.append(
            {
                "x": index * (BAR_WIDTH + BAR_GAP),
                "y": BAR_HEIGHT - height,
                "height": height,
                "title": title,
            }
        )
    width = len(counts) * (BAR_WIDTH + BAR_GAP)
    return {**column, "bars": bars, "bars_width": width, "bar_width": BAR_WIDTH}
