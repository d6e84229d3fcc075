"""A user dashboard built in a real browser (Debian's Chromium, Playwright): a monthly
line chart over an uploaded dataset and a bar chart over the demo pipeline's predictions,
both drawn; reordered by dragging; shared by link to a logged-out browser; revoked."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashboards import dashboards
from dashboards.models import Dashboard
from pipelines.demo import seed_demo
from pipelines.models import Pipeline
from pipelines.runs import start_run
from pipelines.tests.browser import PASSWORD, chromium_page, log_in

pytestmark = pytest.mark.django_db(transaction=True)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def revenue_frame() -> pd.DataFrame:
    """Two years of daily orders in three regions, with a seasonal swing."""
    rng = np.random.default_rng(3)
    days = pd.date_range("2023-01-01", "2024-12-31", freq="D")
    rows = len(days) * 3
    when = np.repeat(days, 3)
    season = 1 + 0.3 * np.sin(2 * np.pi * when.day_of_year.to_numpy() / 365)
    return pd.DataFrame(
        {
            "order_date": when.strftime("%Y-%m-%d"),
            "region": np.tile(["North", "South", "West"], len(days)),
            "amount": (rng.gamma(4, 30, rows) * season).round(2),
            "items": rng.integers(1, 8, rows),
        }
    )


@pytest.fixture
def predicted_demo(db):
    seed_demo()
    pipeline = Pipeline.objects.get(name="diabetes-regressor")
    run = start_run(pipeline, wait=True)
    assert run.status == "succeeded", run.error_message
    return pipeline


@pytest.fixture
def browser_page(live_server, django_user_model, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    django_user_model.objects.create_user("analyst", password=PASSWORD)
    with chromium_page() as page:
        page.set_default_timeout(20_000)
        log_in(page, live_server.url, "analyst", next_path="/dashboards/")
        yield page


def choose(page, field: str, *values: str):
    """Pick a value and wait for htmx to answer with the editor again."""
    with page.expect_response(re.compile(r"/charts/preview/$")):
        page.select_option(f"#id_{field}", list(values))
    # The response comes before htmx swaps it in: wait until the new editor is in place.
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-settling')")
    chosen = page.locator(f"#id_{field} option:checked").evaluate_all("os => os.map(o => o.value)")
    assert chosen == list(values)


def drawn_points(page, canvas) -> int:
    return canvas.evaluate(
        "c => { const chart = Chart.getChart(c);"
        " return chart ? chart.data.datasets.reduce((n, d) => n + d.data.length, 0) : 0; }"
    )


def add_chart(page, title: str, kind: str, source: dict, x: str, y: str, aggregation: str, **more):
    page.get_by_role("link", name="Add chart").first.click()
    page.fill("#id_title", title)
    choose(page, "kind", kind)
    for field, value in source.items():
        choose(page, field, value)
    choose(page, "x", x)
    choose(page, "y", y)
    choose(page, "aggregation", aggregation)
    for field, value in more.items():
        choose(page, field, value)
    preview = page.locator("#chart-editor canvas")
    preview.wait_for()
    assert drawn_points(page, preview) > 0
    page.get_by_role("button", name="Save chart").click()
    page.get_by_text(f"Chart {title} saved.").wait_for()


@pytest.mark.slow
def test_build_a_dashboard_share_it_and_revoke_the_link(
    live_server, browser_page, make_dataset, predicted_demo
):
    page = browser_page
    make_dataset(revenue_frame(), name="revenue")
    page.get_by_text("You have no dashboards yet.").wait_for()
    page.get_by_role("link", name="New dashboard").first.click()
    page.fill("#id_title", "Sales and model")
    page.get_by_role("button", name="Create dashboard").click()
    page.get_by_text("This dashboard has no charts yet.").wait_for()

    add_chart(
        page,
        "Monthly mean order",
        "line",
        {"dataset": "revenue"},
        x="order_date",
        y="amount",
        aggregation="mean",
        time_grain="month",
    )
    add_chart(
        page,
        "Predicted progression by sex",
        "bar",
        {"source_kind": "predictions", "pipeline": str(predicted_demo.pk)},
        x="sex",
        y="prediction",
        aggregation="mean",
    )

    canvases = page.locator(".chart-card canvas")
    assert canvases.count() == 2
    line, bar = canvases.nth(0), canvases.nth(1)
    assert drawn_points(page, line) == 24  # two years of months
    assert drawn_points(page, bar) == 2
    assert line.evaluate("c => Chart.getChart(c).config.type") == "line"
    assert bar.evaluate("c => Chart.getChart(c).config.type") == "bar"

    # Drag the bar chart first; the order is saved and survives a reload.
    cards = page.locator("article.chart-card")
    with page.expect_response(re.compile(r"/reorder/$")):
        cards.nth(1).locator(".drag-handle").drag_to(cards.nth(0).locator(".chart-head h2"))
    page.get_by_text("Order saved.").wait_for()
    page.reload()
    titles = page.locator("article.chart-card h2").all_inner_texts()
    assert titles == ["Predicted progression by sex", "Monthly mean order"]

    # Share it; a browser that never logged in sees it, drawn.
    page.get_by_role("link", name="Share").click()
    page.get_by_role("button", name="Create share link").click()
    url = page.locator("#new-share-url").input_value()
    assert url.startswith(f"{live_server.url}/share/")
    outsider = page.context.browser.new_context().new_page()
    response = outsider.goto(url)
    assert response.status == 200
    outsider.get_by_role("heading", name="Sales and model").wait_for()
    shared = outsider.locator(".chart-card canvas")
    assert shared.count() == 2
    outsider.wait_for_function("() => Chart.getChart(document.querySelector('canvas'))")
    assert drawn_points(outsider, shared.nth(1)) == 24
    assert outsider.locator("nav").count() == 0

    page.get_by_role("button", name=re.compile("Revoke share link")).click()
    page.get_by_text("revoked: it now answers").wait_for()
    assert outsider.goto(url).status == 404


@pytest.mark.screenshots
def test_write_screenshots_of_a_dashboard_and_the_chart_editor(
    live_server, browser_page, make_dataset, predicted_demo, django_user_model
):
    page = browser_page
    make_dataset(revenue_frame(), name="revenue")
    owner = django_user_model.objects.get(username="analyst")
    board = dashboards.create_dashboard(
        owner, "Sales and model", "Order revenue by month and region, and what the model predicts."
    )
    base = {"source_kind": "dataset", "dataset": "revenue", "dataset_version": None}
    base |= {"pipeline": None, "datasource": "", "table": "", "filters": [], "sort": ""}
    base |= {"limit": None, "stacked": False, "group_by": "", "time_grain": "", "y": []}
    charts = [
        {"title": "Revenue", "kind": "kpi", "x": "", "y": ["amount"], "aggregation": "sum"},
        {"title": "Mean order by month", "kind": "line", "x": "order_date", "y": ["amount"],
         "aggregation": "mean", "time_grain": "month", "group_by": "region"},
        {"title": "Revenue by region and month", "kind": "bar", "x": "order_date",
         "y": ["amount"], "aggregation": "sum", "time_grain": "month", "group_by": "region",
         "stacked": True, "filters": ["order_date >= 2024-07-01"]},
        {"title": "Share of revenue", "kind": "pie", "x": "region", "y": ["amount"],
         "aggregation": "sum"},
        {"title": "Revenue heat map, second half of 2024", "kind": "heatmap",
         "x": "order_date", "y": ["amount"], "aggregation": "sum", "time_grain": "month",
         "group_by": "region", "filters": ["order_date >= 2024-07-01"]},
        {"title": "Predicted progression by sex", "kind": "bar", "x": "sex",
         "y": ["prediction"], "aggregation": "mean", "source_kind": "predictions",
         "pipeline": predicted_demo},
        {"title": "Largest orders", "kind": "table", "x": "", "y": ["amount", "order_date",
         "region"], "aggregation": "count", "sort": "-y", "limit": 5},
    ]  # fmt: skip
    for chart in charts:
        dashboards.save_chart(board, base | chart)

    page.goto(f"{live_server.url}/dashboards/{board.pk}/")
    page.wait_for_function(
        "() => document.querySelectorAll('canvas').length === 4"
        " && [...document.querySelectorAll('canvas')].every(Chart.getChart)"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "dashboard.png", full_page=True)

    chart = board.charts.get(title="Revenue by region and month")
    page.goto(f"{live_server.url}/dashboards/{board.pk}/charts/{chart.pk}/edit/")
    page.locator("#chart-editor canvas").wait_for()
    choose(page, "aggregation", "median")
    page.wait_for_function("() => Chart.getChart(document.querySelector('#chart-editor canvas'))")
    assert Dashboard.objects.count() == 1
    page.screenshot(path=SCREENSHOTS / "dashboard-chart-editor.png", full_page=True)


def download_png(page, title: str) -> bytes:
    """Click the PNG link of the chart titled `title`; the downloaded file's bytes."""
    heading = page.get_by_role("heading", name=title, exact=True)
    card = page.locator("article.chart-card", has=heading)
    with page.expect_download() as download:
        card.get_by_role("link", name="PNG").click()
    assert download.value.suggested_filename == f"{title}.png"
    return Path(download.value.path()).read_bytes()


def test_kpi_table_and_heat_map_download_as_png(
    live_server, browser_page, make_dataset, django_user_model, tmp_path
):
    """Not drawn on a canvas, they are redrawn on one for the PNG, also on the share page."""
    page = browser_page
    make_dataset(revenue_frame(), name="revenue")
    owner = django_user_model.objects.get(username="analyst")
    board = dashboards.create_dashboard(owner, "Revenue", "")
    base = {"source_kind": "dataset", "dataset": "revenue", "dataset_version": None}
    base |= {"pipeline": None, "datasource": "", "table": "", "filters": [], "sort": ""}
    base |= {"limit": None, "stacked": False, "group_by": "", "time_grain": "", "y": []}
    charts = [
        {"title": "Revenue", "kind": "kpi", "x": "", "y": ["amount"], "aggregation": "sum"},
        {"title": "Revenue heat map", "kind": "heatmap", "x": "order_date", "y": ["amount"],
         "aggregation": "sum", "time_grain": "month", "group_by": "region",
         "filters": ["order_date >= 2024-07-01"]},
        {"title": "Largest orders", "kind": "table", "x": "", "y": ["amount", "order_date",
         "region"], "aggregation": "count", "sort": "-y", "limit": 5},
    ]  # fmt: skip
    for chart in charts:
        dashboards.save_chart(board, base | chart)

    page.goto(f"{live_server.url}/dashboards/{board.pk}/")
    for title in ("Revenue", "Revenue heat map", "Largest orders"):
        image = download_png(page, title)
        assert image[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(image) > 1024
        (tmp_path / f"{title}.png").write_bytes(image)  # to look at

    _, token = dashboards.create_share_link(board, owner)
    page.goto(f"{live_server.url}/share/{token}/")
    assert download_png(page, "Revenue heat map")[:8] == b"\x89PNG\r\n\x1a\n"
