"""User dashboards' pages: create, rename, duplicate, delete; charts added through the
form (with the engine's errors beside their fields and a live preview); the order kept;
who may view and who may edit; the CSV export and its formula escaping."""

import csv
import io
import json
import re

import pandas as pd
import pytest
from django.urls import reverse

from dashboards import aggregate, dashboards
from dashboards.choices import Aggregation, ChartKind, TimeGrain
from dashboards.models import Chart, Dashboard

FORMULA = "=cmd|' /C calc'!A0"


@pytest.fixture
def sales(make_dataset):
    days = pd.date_range("2024-01-01", periods=120, freq="D")
    frame = pd.DataFrame(
        {
            "day": days.strftime("%Y-%m-%d"),
            "amount": [float(i % 30) - 5 for i in range(120)],
            "region": ["north", "south", "east"] * 40,
            "note": [FORMULA, "fine", "@SUM(A1)", "-3"] * 30,
        }
    )
    make_dataset(frame, name="sales")
    return frame


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("owner")


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def board(owner):
    return dashboards.create_dashboard(owner, "Sales", "Monthly figures")


def chart_values(**changes) -> dict:
    values = {
        "title": "Amount by month",
        "kind": ChartKind.LINE,
        "source_kind": "dataset",
        "dataset": "sales",
        "dataset_version": None,
        "pipeline": None,
        "datasource": "",
        "table": "",
        "x": "day",
        "y": ["amount"],
        "aggregation": Aggregation.MEAN,
        "time_grain": TimeGrain.MONTH,
        "group_by": "",
        "filters": [],
        "sort": "",
        "limit": None,
        "stacked": False,
    }
    return {**values, **changes}


def form_data(**changes) -> dict:
    """What the chart form posts for chart_values(**changes)."""
    values = chart_values(**changes)
    data = {k: ("" if v is None else v) for k, v in values.items()}
    data["filters"] = "\n".join(values["filters"])
    data["stacked"] = "on" if values["stacked"] else ""
    return data


def add_chart(board, **changes) -> Chart:
    return dashboards.save_chart(board, chart_values(**changes))


def charts_in_page(html: str) -> list[str]:
    return re.findall(r'<h2 id="chart-title-\d+">([^<]*)</h2>', html)


def test_chart_choices_are_the_engines():
    assert tuple(ChartKind.values) == aggregate.CHART_KINDS
    assert tuple(Aggregation.values) == aggregate.AGGREGATIONS
    assert tuple(TimeGrain.values) == aggregate.TIME_GRAINS


def test_an_empty_list_says_what_to_do_and_offers_the_new_button(owner_client):
    response = owner_client.get("/dashboards/")
    html = response.content.decode()
    assert "You have no dashboards yet." in html
    assert html.count(f'href="{reverse("dashboards:new")}"') >= 2
    assert "Nobody has shared a dashboard with you." in html
    assert 'aria-current="page">Dashboards</a>' in html
    assert 'aria-current="page">Overview</a>' not in html


def test_the_list_shows_mine_and_those_shared_with_me_in_constant_queries(
    owner_client, owner, django_user_model, django_assert_max_num_queries
):
    colleague = django_user_model.objects.create_user("colleague", first_name="Ada")
    for n in range(5):
        dashboards.create_dashboard(owner, f"Mine {n}")
        dashboards.create_dashboard(colleague, f"Theirs {n}").shared_with.add(owner)
    dashboards.create_dashboard(colleague, "Private to colleague")
    with django_assert_max_num_queries(8):
        html = owner_client.get("/dashboards/").content.decode()
    assert "Mine 4" in html and "Theirs 4" in html and "Ada" in html
    assert "Private to colleague" not in html


def test_create_rename_duplicate_and_delete_a_dashboard(owner_client, owner, sales):
    response = owner_client.post("/dashboards/new/", {"title": "Revenue", "description": ""})
    board = Dashboard.objects.get(title="Revenue")
    assert board.owner == owner
    assert response["Location"] == f"/dashboards/{board.pk}/"
    page = owner_client.get(response["Location"]).content.decode()
    assert "This dashboard has no charts yet." in page and "Add chart" in page

    blank = owner_client.post("/dashboards/new/", {"title": ""}).content.decode()
    assert "<strong>Error:</strong> This field is required." in blank

    owner_client.post(f"/dashboards/{board.pk}/edit/", {"title": "Revenue 2024", "shared_with": ""})
    board.refresh_from_db()
    assert board.title == "Revenue 2024"

    add_chart(board)
    response = owner_client.post(f"/dashboards/{board.pk}/duplicate/", {"title": ""})
    copy = Dashboard.objects.get(title="Revenue 2024 (copy)")
    assert response["Location"] == f"/dashboards/{copy.pk}/"
    assert [c.title for c in copy.charts.all()] == ["Amount by month"]

    confirm = owner_client.get(f"/dashboards/{board.pk}/delete/").content.decode()
    assert "Delete Revenue 2024?" in confirm and "its 1 chart and its share links" in confirm
    owner_client.post(f"/dashboards/{board.pk}/delete/")
    assert not Dashboard.objects.filter(pk=board.pk).exists()
    assert Chart.objects.filter(dashboard=copy).count() == 1


def test_sharing_with_an_unknown_user_is_named_beside_the_field(owner_client, board):
    response = owner_client.post(
        f"/dashboards/{board.pk}/edit/", {"title": "Sales", "shared_with": "nobody, owner"}
    )
    html = response.content.decode()
    assert re.search(r'id="field-shared_with".*No such user: nobody\.', html, re.S)


def test_a_chart_added_through_the_form_is_drawn_from_server_data(owner_client, board, sales):
    response = owner_client.post(f"/dashboards/{board.pk}/charts/new/", form_data())
    chart = board.charts.get()
    assert response["Location"] == f"/dashboards/{board.pk}/#chart-{chart.pk}"
    html = owner_client.get(f"/dashboards/{board.pk}/").content.decode()
    assert charts_in_page(html) == ["Amount by month"]
    payload = re.search(
        rf'<script id="chart-data-{chart.pk}" type="application/json">(.*?)</script>', html, re.S
    )
    data = json.loads(payload.group(1))
    assert data["kind"] == "line"
    assert data["labels"] == ["2024-01", "2024-02", "2024-03", "2024-04"]
    january = sales["amount"][:31].mean()
    assert data["series"][0]["values"][0] == pytest.approx(january)
    assert data["x_title"] == "day (by month)" and data["y_title"] == "mean of amount"
    assert f'data-dashboard-chart="chart-data-{chart.pk}"' in html


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"y": ["region"], "aggregation": "sum"}, "y", "Column 'region' is text, not a number"),
        ({"x": "nope"}, "x", "The source has no column 'nope'."),
        ({"filters": ["amount >>> 3"]}, "filters", ""),
        ({"dataset": "missing"}, "dataset", ""),
    ],
)
def test_bad_options_are_named_beside_their_field_and_nothing_is_saved(
    owner_client, board, sales, changes, field, message
):
    if changes.get("dataset") == "missing":
        # Not offered by the select: the engine's "no such dataset" is what a stale form shows.
        from datasources.models import Dataset

        Dataset.objects.all().delete()
    response = owner_client.post(f"/dashboards/{board.pk}/charts/new/", form_data(**changes))
    assert response.status_code == 200
    html = response.content.decode()
    block = re.search(
        rf'<div class="field dash-field invalid" id="field-{field}">(.*?)</div>', html, re.S
    )
    assert block, f"no error beside {field}"
    assert f'id="id_{field}_error"><strong>Error:</strong> {message}' in block.group(1).replace(
        "&#x27;", "'"
    )
    assert not board.charts.exists()


def test_the_preview_follows_the_options_without_saving(owner_client, board, sales):
    response = owner_client.post(
        f"/dashboards/{board.pk}/charts/preview/",
        form_data(kind="bar", x="region", y=[], aggregation="count", time_grain=""),
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="chart-editor"')  # a fragment, not a page
    assert '<option value="amount">amount (number)</option>' in html
    data = json.loads(
        re.search(r'id="chart-data-preview" type="application/json">(.*?)</script>', html).group(1)
    )
    assert data["labels"] == ["east", "north", "south"]
    assert data["series"][0]["values"] == [40, 40, 40]
    assert not board.charts.exists()


def test_every_kind_of_chart_renders_on_the_page(owner_client, board, sales):
    add_chart(board, title="Stacked", kind="bar", group_by="region", stacked=True)
    add_chart(board, title="Area", kind="area")
    add_chart(board, title="Pie", kind="pie", x="region", time_grain="", aggregation="sum")
    add_chart(board, title="Scatter", kind="scatter", time_grain="", aggregation="count")
    add_chart(board, title="Heat", kind="heatmap", group_by="region")
    add_chart(board, title="Total", kind="kpi", x="", time_grain="", aggregation="sum")
    add_chart(board, title="Rows", kind="table", x="", y=["region", "amount"], time_grain="")
    html = owner_client.get(f"/dashboards/{board.pk}/").content.decode()
    assert charts_in_page(html) == ["Stacked", "Area", "Pie", "Scatter", "Heat", "Total", "Rows"]
    assert html.count("data-dashboard-chart=") == 4
    assert '<span class="kpi-value">' + f"{sales['amount'].sum():,.0f}" in html
    assert 'class="heatmap"' in html and "darker is higher" in html
    assert '<th scope="col">region</th><th scope="col">amount</th>' in html
    assert 'class="chart-error"' not in html


def test_a_chart_whose_source_is_gone_says_so_on_the_page(owner_client, board, sales):
    chart = add_chart(board)
    from datasources.models import Dataset

    Dataset.objects.all().delete()
    html = owner_client.get(f"/dashboards/{board.pk}/").content.decode()
    assert "<strong>Error:</strong> There is no dataset &#x27;sales&#x27;" in html
    assert owner_client.get(f"/dashboards/{board.pk}/charts/{chart.pk}.csv").status_code == 404


def test_editing_and_deleting_a_chart(owner_client, board, sales):
    chart = add_chart(board)
    form = owner_client.get(f"/dashboards/{board.pk}/charts/{chart.pk}/edit/").content.decode()
    assert '<option value="day" selected>day (datetime)</option>' in form
    owner_client.post(
        f"/dashboards/{board.pk}/charts/{chart.pk}/edit/", form_data(title="Renamed", kind="bar")
    )
    chart.refresh_from_db()
    assert (chart.title, chart.kind) == ("Renamed", "bar")
    assert (
        "Delete the chart Renamed?"
        in owner_client.get(f"/dashboards/{board.pk}/charts/{chart.pk}/delete/").content.decode()
    )
    owner_client.post(f"/dashboards/{board.pk}/charts/{chart.pk}/delete/")
    assert not board.charts.exists()


def test_the_dragged_order_and_the_arrows_survive_a_reload(owner_client, board, sales):
    a, b, c = (add_chart(board, title=t) for t in "ABC")
    response = owner_client.post(
        f"/dashboards/{board.pk}/reorder/",
        {"order": [c.pk, a.pk, b.pk]},
        headers={"HX-Request": "true"},
    )
    assert response.content == b"Order saved."
    assert charts_in_page(owner_client.get(f"/dashboards/{board.pk}/").content.decode()) == [
        "C",
        "A",
        "B",
    ]
    owner_client.post(f"/dashboards/{board.pk}/charts/{b.pk}/move/", {"direction": "up"})
    html = owner_client.get(f"/dashboards/{board.pk}/").content.decode()
    assert charts_in_page(html) == ["C", "B", "A"]


def test_a_stale_order_keeps_charts_it_does_not_name_and_ignores_others(board, owner, sales):
    a, b, c = (add_chart(board, title=t) for t in "ABC")
    stranger = add_chart(dashboards.create_dashboard(owner, "Other"), title="X")
    dashboards.reorder_charts(board, [b.pk, stranger.pk, a.pk])
    assert [ch.title for ch in board.charts.all()] == ["B", "A", "C"]
    assert Chart.objects.get(pk=stranger.pk).position == 1


def test_others_get_404_viewers_view_but_get_403_to_edit_and_staff_edit(
    client, board, sales, django_user_model
):
    chart = add_chart(board)
    edit_urls = [
        f"/dashboards/{board.pk}/edit/",
        f"/dashboards/{board.pk}/delete/",
        f"/dashboards/{board.pk}/charts/new/",
        f"/dashboards/{board.pk}/charts/{chart.pk}/edit/",
        f"/dashboards/{board.pk}/charts/{chart.pk}/delete/",
        f"/dashboards/{board.pk}/share/",
    ]
    view_urls = [f"/dashboards/{board.pk}/", f"/dashboards/{board.pk}/charts/{chart.pk}.csv"]

    client.force_login(django_user_model.objects.create_user("stranger"))
    for url in view_urls + edit_urls:
        assert client.get(url).status_code == 404, url
    assert client.post(f"/dashboards/{board.pk}/reorder/", {"order": [chart.pk]}).status_code == 404

    viewer = django_user_model.objects.create_user("viewer")
    board.shared_with.add(viewer)
    client.force_login(viewer)
    for url in view_urls:
        assert client.get(url).status_code == 200, url
    page = client.get(view_urls[0]).content.decode()
    assert "shared with you to view" in page and "Add chart" not in page
    assert "drag-handle" not in page
    for url in edit_urls:
        response = client.get(url)
        assert response.status_code == 403, url
        assert "Only its owner, owner, and staff may change it." in response.content.decode()
    assert client.post(f"/dashboards/{board.pk}/delete/").status_code == 403
    assert Dashboard.objects.filter(pk=board.pk).exists()
    # Viewing is enough to make one's own copy.
    client.post(f"/dashboards/{board.pk}/duplicate/", {"title": "My sales"})
    assert Dashboard.objects.get(title="My sales").owner == viewer

    client.force_login(django_user_model.objects.create_user("admin", is_staff=True))
    for url in edit_urls:
        assert client.get(url).status_code == 200, url
    assert "Add chart" in client.get(view_urls[0]).content.decode()


def test_anonymous_users_are_sent_to_log_in(client, board):
    response = client.get(f"/dashboards/{board.pk}/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_chart_csv_escapes_formulas_and_keeps_numbers(owner_client, board, sales):
    chart = add_chart(board, title="Notes", kind="table", x="", y=["note", "amount"], time_grain="")
    response = owner_client.get(f"/dashboards/{board.pk}/charts/{chart.pk}.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="Notes.csv"'
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["note", "amount"]
    assert rows[1] == ["'" + FORMULA, "-5.0"]
    assert rows[3][0] == "'@SUM(A1)"
    assert rows[4][0] == "'-3"  # text that a spreadsheet would read as a formula or number


def test_csv_cell_escapes_every_formula_start():
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert dashboards.csv_cell(f"{start}1+1") == f"'{start}1+1"
    assert dashboards.csv_cell("plain") == "plain"
    assert dashboards.csv_cell(-2.5) == "-2.5"
    assert dashboards.csv_cell(None) == ""
