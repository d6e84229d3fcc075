"""Actions on user dashboards, their charts and share links.

One function per action, shared by the pages, the admin and (later) the API. Chart data
comes from `dashboards.aggregate`, which validates the options against the source and
aggregates on the server; nothing here reads data itself.
"""

import csv
import io
import re
import secrets
from dataclasses import dataclass, field
from numbers import Number

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from dashboards.aggregate import (
    ChartData,
    ChartInvalid,
    ChartSource,
    ChartSpec,
    chart_csv_rows,
    chart_data,
    source_columns,
)
from dashboards.choices import Aggregation, SourceKind
from dashboards.models import Chart, Dashboard, ShareLink, hash_token
from pipelines.templatetags.mlops_format import sig3

# Fields of a Chart that `save_chart` takes from a form.
CHART_FIELDS = (
    "title", "kind", "source_kind", "dataset", "dataset_version", "pipeline", "datasource",
    "table", "x", "y", "aggregation", "time_grain", "group_by", "filters", "sort", "limit",
    "stacked",
)  # fmt: skip
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Kinds Chart.js draws; a KPI, a table and a heat map are HTML.
CANVAS_KINDS = ("line", "bar", "area", "scatter", "pie")


def create_dashboard(owner, title: str, description: str = "") -> Dashboard:
    return Dashboard.objects.create(owner=owner, title=title, description=description)


def update_dashboard(dashboard: Dashboard, title: str, description: str, shared_with) -> None:
    """Rename it, describe it, and set who (besides the owner and staff) may view it."""
    dashboard.title, dashboard.description = title, description
    dashboard.save(update_fields=["title", "description", "updated_at"])
    dashboard.shared_with.set(shared_with)


def copy_title(title: str) -> str:
    return f"{title} (copy)"[: Dashboard._meta.get_field("title").max_length]


@transaction.atomic
def duplicate_dashboard(dashboard: Dashboard, owner, title: str = "") -> Dashboard:
    """A copy with the same charts, owned by `owner`: not shared with anyone, no links."""
    copy = create_dashboard(owner, title or copy_title(dashboard.title), dashboard.description)
    charts = list(dashboard.charts.all())
    for chart in charts:
        chart.pk, chart.dashboard = None, copy
    Chart.objects.bulk_create(charts)
    return copy


def delete_dashboard(dashboard: Dashboard) -> None:
    dashboard.delete()


def chart_source(chart: Chart) -> ChartSource:
    kind = chart.source_kind
    return ChartSource(
        kind=kind,
        dataset=chart.dataset if kind == SourceKind.DATASET else "",
        dataset_version=chart.dataset_version if kind == SourceKind.DATASET else None,
        pipeline_id=chart.pipeline_id if kind == SourceKind.PREDICTIONS else None,
        datasource=chart.datasource if kind == SourceKind.TABLE else "",
        table=chart.table if kind == SourceKind.TABLE else "",
    )


def chart_spec(chart: Chart) -> ChartSpec:
    return ChartSpec(
        kind=chart.kind,
        x=chart.x,
        y=tuple(chart.y),
        aggregation=chart.aggregation,
        time_grain=chart.time_grain,
        group_by=chart.group_by,
        filters=tuple(chart.filters),
        sort=chart.sort,
        limit=chart.limit,
        stacked=chart.stacked,
    )


def columns_of(chart: Chart) -> dict[str, str]:
    """The chart's source's columns and their types; {} when it cannot be read."""
    try:
        return source_columns(chart_source(chart))
    except ChartInvalid:
        return {}


def build_chart(dashboard: Dashboard, values: dict, chart: Chart | None = None) -> Chart:
    """`chart` (or a new chart of `dashboard`) with the form's `values`, not saved."""
    chart = chart or Chart(dashboard=dashboard)
    for name in CHART_FIELDS:
        setattr(chart, name, values[name])
    return chart


def save_chart(dashboard: Dashboard, values: dict, chart: Chart | None = None) -> Chart:
    """Add or change a chart; ChartInvalid (and nothing saved) when its options are bad."""
    chart = build_chart(dashboard, values, chart)
    chart_data(chart_source(chart), chart_spec(chart))
    if chart.pk is None:
        last = dashboard.charts.aggregate(last=Max("position"))["last"]
        chart.position = 1 if last is None else last + 1
    chart.save()
    dashboard.save(update_fields=["updated_at"])
    return chart


def delete_chart(chart: Chart) -> None:
    chart.delete()
    chart.dashboard.save(update_fields=["updated_at"])


@transaction.atomic
def reorder_charts(dashboard: Dashboard, chart_ids: list[int]) -> None:
    """Put the charts in the order of `chart_ids`.

    A page opened before a chart was added sends an incomplete list: the charts it does
    not name keep their order after the ones it does; ids of other dashboards are ignored.
    """
    charts = {chart.pk: chart for chart in dashboard.charts.all()}
    named = [charts.pop(pk) for pk in dict.fromkeys(chart_ids) if pk in charts]
    ordered = named + sorted(charts.values(), key=lambda c: (c.position, c.pk))
    for position, chart in enumerate(ordered, start=1):
        chart.position = position
    Chart.objects.bulk_update(ordered, ["position"])


def move_chart(chart: Chart, offset: int) -> None:
    """Move a chart `offset` places (-1 earlier, 1 later): the buttons beside the drag."""
    ids = list(chart.dashboard.charts.values_list("pk", flat=True))
    index = ids.index(chart.pk)
    ids.insert(max(0, index + offset), ids.pop(index))
    reorder_charts(chart.dashboard, ids)


def create_share_link(dashboard: Dashboard, user, expires_at=None) -> tuple[ShareLink, str]:
    """A new link and its token: 256 random bits, of which only the hash is kept."""
    token = secrets.token_urlsafe(32)
    link = ShareLink.objects.create(
        dashboard=dashboard, token_hash=hash_token(token), created_by=user, expires_at=expires_at
    )
    return link, token


def revoke_share_link(link: ShareLink) -> None:
    if link.revoked_at is None:
        link.revoked_at = timezone.now()
        link.save(update_fields=["revoked_at"])


def resolve_share_token(token: str) -> Dashboard | None:
    """The dashboard an active (unrevoked, unexpired) link opens, or None."""
    link = ShareLink.objects.active().filter(token_hash=hash_token(token)).first()
    return link.dashboard if link else None


@dataclass
class ChartView:
    """A chart as a page draws it: its data, or why there is none."""

    chart: Chart
    data: ChartData | None = None
    error: str = ""
    payload: dict = field(default_factory=dict)
    heatmap: dict | None = None

    @property
    def canvas(self) -> bool:
        """Drawn by Chart.js on a canvas (so also downloadable as PNG)."""
        return self.data is not None and self.chart.kind in CANVAS_KINDS


def view_chart(chart: Chart, raising: bool = False) -> ChartView:
    """The chart's data for a page; a ChartInvalid becomes its message (or is raised)."""
    try:
        data = chart_data(chart_source(chart), chart_spec(chart))
    except ChartInvalid as exc:
        if raising:
            raise
        return ChartView(chart, error="; ".join(exc.errors.values()) or str(exc))
    view = ChartView(chart, data=data, payload=chart_payload(chart, data))
    if chart.kind == "heatmap":
        view.heatmap = heatmap_cells(chart, data)
    return view


def chart_payload(chart: Chart, data: ChartData) -> dict:
    """What the page's script needs to draw a Chart.js chart: bounded, already aggregated."""
    return {
        "kind": chart.kind,
        "labels": [shown_label(label, chart) for label in data.labels],
        "series": data.series,
        "stacked": chart.stacked,
        "x_title": axis_title(chart.x, chart.time_grain),
        "y_title": value_title(chart),
    }


def shown_label(label, chart: Chart):
    """A label as an axis shows it: "2024-07" for a month, 3 figures for a number (a
    scatter plot keeps numbers, for its number axis). The CSV keeps the value itself."""
    if chart.time_grain == "month" and isinstance(label, str) and label.endswith("-01"):
        return label[:7]
    if isinstance(label, float) and chart.kind != "scatter":
        return sig3(label)
    return label


def axis_title(column: str, grain: str = "") -> str:
    return f"{column} (by {grain})" if column and grain else column


def value_title(chart: Chart) -> str:
    if chart.kind == "scatter":  # rows as they are: nothing is aggregated
        return ", ".join(chart.y)
    if chart.aggregation == Aggregation.COUNT and not chart.y:
        return "count of rows"
    label = Aggregation(chart.aggregation).label.lower()
    return f"{label} of {', '.join(chart.y)}" if chart.y else label


def heatmap_cells(chart: Chart, data: ChartData) -> dict:
    """A matrix (series × labels) with each cell's share of the range, for its colour."""
    numbers = [v for s in data.series for v in s["values"] if _is_number(v)]
    # From zero when nothing is negative: 30 next to 31 should look alike, not opposite.
    low, high = (min(0, *numbers), max(numbers)) if numbers else (0, 0)
    spread = (high - low) or 1

    def shade(value):
        return round((value - low) / spread, 3) if _is_number(value) else None

    rows = [{"name": s["name"], "cells": [(v, shade(v)) for v in s["values"]]} for s in data.series]
    return {
        "columns": [shown_label(x, chart) for x in data.labels],
        "rows": rows,
        "low": low,
        "high": high,
    }


def _is_number(value) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def csv_cell(value) -> str:
    """A cell a spreadsheet shows as text, never runs: formulas get a leading apostrophe.

    Numbers stay numbers: -3.5 is not a formula, and spreadsheets read it as a number."""
    if _is_number(value):
        return str(value)
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def file_name(title: str) -> str:
    """`title` as a download's file name: no path separators or control characters."""
    return re.sub(r"[\\/\x00-\x1f\x7f]", "_", title).strip() or "chart"


def chart_csv(chart: Chart) -> str:
    """The chart's data (what it shows, not the source) as CSV; ChartInvalid when unreadable."""
    data = chart_data(chart_source(chart), chart_spec(chart))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in chart_csv_rows(data):
        writer.writerow([csv_cell(value) for value in row])
    return buffer.getvalue()
