"""The chart aggregation engine: every option against pandas computing the same on small
frames, the errors it names, the point bound (LTTB), its cache, and each kind of source."""

import io

import numpy as np
import pandas as pd
import pytest

from dashboards import aggregate
from dashboards.aggregate import (
    AGGREGATIONS,
    TIME_GRAINS,
    ChartData,
    ChartInvalid,
    ChartSource,
    ChartSpec,
    chart_csv_rows,
    chart_data,
    source_columns,
)
from dashboards.lttb import lttb_indices
from datasources.models import DataSource
from datasources.services import add_dataset
from pipelines import runs
from pipelines.models import RunOutput

SOURCE = ChartSource(kind="dataset", dataset="sales")


def sales_frame(rows: int = 400, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    hours = rng.integers(0, 200 * 24, rows)
    amount = rng.normal(50, 20, rows).round(2)
    amount[::17] = np.nan
    return pd.DataFrame(
        {
            "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(hours, unit="h"),
            "amount": amount,
            "qty": rng.integers(1, 10, rows),
            "city": rng.choice(["Oslo", "Paris", "Rome"], rows),
            "flag": rng.choice([True, False], rows),
        }
    )


@pytest.fixture
def sales(make_dataset):
    frame = sales_frame()
    make_dataset(frame, name="sales")
    return frame


# -- pandas computing the same ---------------------------------------------------------------

PANDAS_AGGREGATIONS = {
    "count": "count",
    "sum": lambda s: s.sum(min_count=1),  # SQL: the sum of nothing is missing, not 0
    "mean": "mean",
    "median": "median",
    "min": "min",
    "max": "max",
    "distinct_count": "nunique",
}


def grained(column: pd.Series, grain: str) -> pd.Series:
    if grain == "hour":
        return column.dt.floor("h")
    if grain == "day":
        return column.dt.floor("D")
    if grain == "week":
        return column.dt.to_period("W").dt.start_time
    if grain == "month":
        return column.dt.to_period("M").dt.start_time
    return column


def expected_series(frame, x, y="", aggregation="count", grain="", group_by=""):
    """{series name: {label: value}} as pandas computes it."""
    frame = frame.assign(__x=grained(frame[x], grain))
    keys = ["__x", group_by] if group_by else ["__x"]
    grouped = frame.groupby(keys)
    values = grouped.size() if not y else grouped[y].agg(PANDAS_AGGREGATIONS[aggregation])
    if not group_by:
        return {y or "count": values.to_dict()}
    wide = values.unstack(group_by)
    return {str(g): wide[g].dropna().to_dict() for g in wide.columns}


def drawn(data: ChartData) -> dict:
    """{series name: {label: value}} of what the chart shows (missing values left out)."""
    return {
        s["name"]: {
            lab: v for lab, v in zip(data.labels, s["values"], strict=True) if v is not None
        }
        for s in data.series
    }


def as_labels(expected: dict, grain: str) -> dict:
    def label(value):
        if isinstance(value, pd.Timestamp):
            return (
                value.date().isoformat() if grain in ("day", "week", "month") else value.isoformat()
            )
        return value.item() if hasattr(value, "item") else value

    return {
        name: {label(k): pytest.approx(float(v)) for k, v in values.items() if pd.notna(v)}
        for name, values in expected.items()
    }


# -- Aggregations, grains, filters, group by, sort, limit -----------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("grain", ["", *TIME_GRAINS])
def test_line_over_time_matches_pandas(sales, aggregation, grain):
    y = "" if aggregation == "count" else "amount"
    spec = ChartSpec(kind="line", x="when", y=(y,) if y else (), aggregation=aggregation,
                     time_grain=grain)  # fmt: skip

    data = chart_data(SOURCE, spec)

    assert drawn(data) == as_labels(expected_series(sales, "when", y, aggregation, grain), grain)
    assert data.labels == sorted(data.labels)
    assert not data.downsampled


@pytest.mark.django_db
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_bar_by_text_column_matches_pandas(sales, aggregation):
    spec = ChartSpec(kind="bar", x="city", y=("qty",), aggregation=aggregation)

    data = chart_data(SOURCE, spec)

    assert data.labels == ["Oslo", "Paris", "Rome"]
    assert drawn(data) == as_labels(expected_series(sales, "city", "qty", aggregation), "")


FILTERS = [
    ("amount > 50", lambda f: f[f.amount > 50]),
    ("amount<=30.5", lambda f: f[f.amount <= 30.5]),
    ("qty == 3", lambda f: f[f.qty == 3]),
    ("city != Oslo", lambda f: f[f.city != "Oslo"]),
    ("city in Oslo,Rome", lambda f: f[f.city.isin(["Oslo", "Rome"])]),
    ("city not_in Paris", lambda f: f[~f.city.isin(["Paris"])]),
    ("city contains ar", lambda f: f[f.city.str.contains("ar")]),
    ("amount is_null", lambda f: f[f.amount.isna()]),
    ("amount not_null", lambda f: f[f.amount.notna()]),
    ("amount != 50", lambda f: f[f.amount != 50]),  # keeps missing amounts, as filter_rows
    ("when >= 2024-04-01", lambda f: f[f.when >= pd.Timestamp("2024-04-01")]),
    ("flag == true", lambda f: f[f.flag]),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("text", "pandas_filter"), FILTERS, ids=[t for t, _ in FILTERS])
def test_filters_match_pandas(sales, text, pandas_filter):
    spec = ChartSpec(kind="bar", x="city", filters=(text,))

    data = chart_data(SOURCE, spec)

    assert drawn(data) == as_labels(expected_series(pandas_filter(sales), "city"), "")


@pytest.mark.django_db
def test_filters_combine_with_and(sales):
    spec = ChartSpec(kind="kpi", y=("amount",), aggregation="sum",
                     filters=("city == Rome", "qty > 4"))  # fmt: skip

    data = chart_data(SOURCE, spec)

    kept = sales[(sales.city == "Rome") & (sales.qty > 4)]
    assert data.value == pytest.approx(kept.amount.sum())


@pytest.mark.django_db
@pytest.mark.parametrize("aggregation", ["count", "mean", "max"])
def test_group_by_makes_one_series_per_value(sales, aggregation):
    y = () if aggregation == "count" else ("amount",)
    spec = ChartSpec(kind="line", x="when", y=y, aggregation=aggregation, time_grain="month",
                     group_by="city")  # fmt: skip

    data = chart_data(SOURCE, spec)

    assert [s["name"] for s in data.series] == ["Oslo", "Paris", "Rome"]
    expected = expected_series(sales, "when", y[0] if y else "", aggregation, "month", "city")
    assert drawn(data) == as_labels(expected, "month")


@pytest.mark.django_db
def test_several_y_columns_make_one_series_each(sales):
    spec = ChartSpec(kind="bar", x="city", y=("amount", "qty"), aggregation="sum")

    data = chart_data(SOURCE, spec)

    assert [s["name"] for s in data.series] == ["amount", "qty"]
    by_city = sales.groupby("city")[["amount", "qty"]].sum()
    assert data.series[1]["values"] == by_city["qty"].astype(float).tolist()


@pytest.mark.django_db
def test_heatmap_is_x_by_group_with_the_aggregated_value(sales):
    spec = ChartSpec(kind="heatmap", x="when", y=("amount",), aggregation="mean",
                     time_grain="month", group_by="city")  # fmt: skip

    data = chart_data(SOURCE, spec)

    pivot = sales.assign(m=grained(sales.when, "month")).pivot_table(
        index="m", columns="city", values="amount", aggfunc="mean"
    )
    assert data.labels == [d.date().isoformat() for d in pivot.index]
    for series in data.series:
        assert series["values"] == pytest.approx(pivot[series["name"]].tolist())


@pytest.mark.django_db
@pytest.mark.parametrize("sort", ["", "x", "-x", "y", "-y"])
@pytest.mark.parametrize("limit", [None, 4])
def test_sort_and_limit_match_pandas(sales, sort, limit):
    spec = ChartSpec(kind="bar", x="qty", y=("amount",), aggregation="sum", sort=sort,
                     limit=limit)  # fmt: skip

    data = chart_data(SOURCE, spec)

    totals = sales.groupby("qty")["amount"].sum()
    if sort.lstrip("-") == "y":
        totals = totals.sort_values(ascending=sort == "y", kind="stable")
    else:
        totals = totals.sort_index(ascending=sort != "-x")
    totals = totals.head(limit) if limit else totals
    assert data.labels == totals.index.tolist()
    assert data.series[0]["values"] == pytest.approx(totals.tolist())


@pytest.mark.django_db
def test_kpi_is_one_number(sales):
    count = chart_data(SOURCE, ChartSpec(kind="kpi"))
    median = chart_data(SOURCE, ChartSpec(kind="kpi", y=("amount",), aggregation="median"))

    assert (count.value, count.series, count.points) == (len(sales), [], 1)
    assert median.value == pytest.approx(sales.amount.median())


@pytest.mark.django_db
def test_raw_table_is_bounded_and_sorted(sales):
    spec = ChartSpec(kind="table", y=("amount", "city"), sort="-y", limit=5)  # by amount

    data = chart_data(SOURCE, spec)

    top = sales.sort_values("amount", ascending=False).head(5)
    assert data.columns == ["amount", "city"]
    assert data.rows == [[a, c] for a, c in zip(top.amount, top.city, strict=True)]
    assert data.downsampled  # more rows than shown


@pytest.mark.django_db
def test_aggregated_table_has_x_and_a_column_per_series(sales):
    spec = ChartSpec(kind="table", x="city", y=("qty",), aggregation="max")

    data = chart_data(SOURCE, spec)

    assert data.columns == ["city", "qty"]
    assert data.rows == [[c, float(v)] for c, v in sales.groupby("city")["qty"].max().items()]


def test_csv_rows_are_a_header_and_what_the_chart_shows():
    data = ChartData(labels=["a", "b"], series=[{"name": "n", "values": [1.0, None]}])

    assert chart_csv_rows(data) == [["x", "n"], ["a", 1.0], ["b", None]]
    assert chart_csv_rows(ChartData([], [], value=3.0)) == [["value"], [3.0]]
    table = ChartData([], [], columns=["c"], rows=[["=1+1"]])
    assert chart_csv_rows(table) == [["c"], ["=1+1"]]  # the pages escape formulas


@pytest.mark.django_db
def test_source_columns_name_each_kind(sales):
    assert source_columns(SOURCE) == {
        "when": "datetime",
        "amount": "number",
        "qty": "number",
        "city": "text",
        "flag": "boolean",
    }


# -- Invalid options name their field --------------------------------------------------------

INVALID = [
    (ChartSpec(kind="line", x="nope"), "x"),
    (ChartSpec(kind="line"), "x"),
    (ChartSpec(kind="scatter", x="city", y=("amount",)), "x"),
    (ChartSpec(kind="bar", x="city", y=("nope",), aggregation="sum"), "y"),
    (ChartSpec(kind="bar", x="qty", y=("city",), aggregation="sum"), "y"),
    (ChartSpec(kind="bar", x="qty", y=("when",), aggregation="mean"), "y"),
    (ChartSpec(kind="bar", x="qty", y=("city",), aggregation="median"), "y"),
    (ChartSpec(kind="bar", x="qty", y=("flag",), aggregation="min"), "y"),
    (ChartSpec(kind="bar", x="qty", y=("city",), aggregation="max"), "y"),
    (ChartSpec(kind="bar", x="qty", aggregation="mean"), "y"),
    (ChartSpec(kind="pie", x="city", y=("amount", "qty"), aggregation="sum"), "y"),
    (ChartSpec(kind="bar", x="city", aggregation="avg"), "aggregation"),
    (ChartSpec(kind="line", x="city", time_grain="month"), "time_grain"),
    (ChartSpec(kind="line", x="when", time_grain="year"), "time_grain"),
    (ChartSpec(kind="bar", x="city", group_by="nope"), "group_by"),
    (ChartSpec(kind="heatmap", x="city", y=("amount",), aggregation="sum"), "group_by"),
    (ChartSpec(kind="bar", x="city", filters=("nope > 1",)), "filters"),
    (ChartSpec(kind="bar", x="city", filters=("amount > lots",)), "filters"),
    (ChartSpec(kind="bar", x="city", filters=("amount",)), "filters"),
    (ChartSpec(kind="bar", x="city", sort="z"), "sort"),
    (ChartSpec(kind="bar", x="city", limit=0), "limit"),
    (ChartSpec(kind="bar", x="city", limit=aggregate.MAX_LIMIT + 1), "limit"),
    (ChartSpec(kind="bar", x="city", limit=True), "limit"),
    (ChartSpec(kind="donut", x="city"), "kind"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("spec", "field"), INVALID)
def test_invalid_option_is_named_beside_its_field(sales, spec, field):
    with pytest.raises(ChartInvalid) as caught:
        chart_data(SOURCE, spec)

    assert list(caught.value.errors) == [field]
    assert caught.value.errors[field]


@pytest.mark.django_db
def test_invalid_message_says_what_is_wrong(sales):
    with pytest.raises(ChartInvalid) as caught:
        chart_data(SOURCE, ChartSpec(kind="bar", x="qty", y=("city",), aggregation="sum",
                                     filters=("nope > 1",)))  # fmt: skip

    assert "'city' is text, not a number" in caught.value.errors["y"]
    assert "'nope'" in caught.value.errors["filters"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "source",
    [
        ChartSource(kind="dataset", dataset="missing"),
        ChartSource(kind="dataset", dataset="sales", dataset_version=9),
        ChartSource(kind="predictions", pipeline_id=999),
        ChartSource(kind="table", datasource="nowhere", table="t"),
        ChartSource(kind="files"),
    ],
)
def test_unknown_source_is_named(sales, source):
    with pytest.raises(ChartInvalid) as caught:
        source_columns(source)

    assert list(caught.value.errors) == ["source"]


# -- Bounded points: LTTB, truncation, sampling ----------------------------------------------


def test_lttb_keeps_first_and_last_and_bounds_the_count():
    x = np.arange(10_000, dtype=float)
    y = np.sin(x / 300) + np.random.default_rng(1).normal(0, 0.1, len(x))

    kept = lttb_indices(x, y, 100)

    assert len(kept) == 100
    assert (kept[0], kept[-1]) == (0, len(x) - 1)
    assert (np.diff(kept) > 0).all()


def test_lttb_keeps_a_spike_and_every_point_below_the_threshold():
    y = np.zeros(1000)
    y[537] = 50.0

    assert 537 in lttb_indices(np.arange(1000), y, 20)
    assert lttb_indices(np.arange(5), np.ones(5), 10).tolist() == [0, 1, 2, 3, 4]
    assert lttb_indices(np.arange(5), np.ones(5), 3).tolist()[::2] == [0, 4]


@pytest.mark.django_db
@pytest.mark.parametrize("group_by", ["", "city"])
def test_long_line_is_downsampled_within_the_bound(sales, settings, group_by):
    settings.MLOPS_CHART_MAX_POINTS = 60
    spec = ChartSpec(kind="line", x="when", y=("amount",), aggregation="sum", group_by=group_by)

    data = chart_data(SOURCE, spec)

    full = sorted(sales.when.unique())
    assert data.downsampled
    assert data.points == len(data.labels) * len(data.series) <= 60
    assert data.labels[0] == full[0].isoformat()
    assert data.labels[-1] == full[-1].isoformat()


@pytest.mark.django_db
def test_many_bars_are_cut_to_the_bound(sales, settings):
    settings.MLOPS_CHART_MAX_POINTS = 10
    spec = ChartSpec(kind="bar", x="amount", sort="-x")

    data = chart_data(SOURCE, spec)

    assert data.downsampled and data.points == 10
    assert data.labels == sorted(sales.amount.dropna().unique(), reverse=True)[:10]


@pytest.mark.django_db
def test_scatter_samples_rows_within_the_bound(sales, settings):
    settings.MLOPS_CHART_MAX_POINTS = 50
    spec = ChartSpec(kind="scatter", x="qty", y=("amount",))

    data = chart_data(SOURCE, spec)

    assert data.downsampled and len(data.labels) == 50 and data.points <= 50
    rows = set(zip(sales.qty, sales.amount, strict=True))
    assert all((x, y) in rows for x, y in zip(data.labels, data.series[0]["values"], strict=True)
               if y is not None)  # fmt: skip


@pytest.mark.django_db
def test_small_scatter_sends_every_row_by_group(sales):
    spec = ChartSpec(kind="scatter", x="when", y=("amount",), group_by="city")

    data = chart_data(SOURCE, spec)

    assert not data.downsampled and len(data.labels) == len(sales)
    assert [s["name"] for s in data.series] == ["Oslo", "Paris", "Rome"]
    assert data.points == sales.amount.notna().sum()


# -- Cache -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_cached_chart_is_not_read_again(sales, monkeypatch):
    spec = ChartSpec(kind="bar", x="city", y=("amount",), aggregation="mean")
    first = chart_data(SOURCE, spec)

    def unread(*args):
        raise AssertionError("the source was read again")

    monkeypatch.setattr(aggregate, "_query", unread)

    assert chart_data(SOURCE, spec) == first
    with pytest.raises(AssertionError):
        chart_data(SOURCE, ChartSpec(kind="bar", x="city", y=("amount",), aggregation="max"))


@pytest.mark.django_db
def test_new_dataset_version_is_charted_at_once(sales, make_dataset):
    spec = ChartSpec(kind="kpi")
    before = chart_data(SOURCE, spec)

    make_dataset(sales.head(10), name="sales")

    after = chart_data(SOURCE, spec)
    pinned = chart_data(ChartSource(kind="dataset", dataset="sales", dataset_version=1), spec)
    assert (before.value, after.value, pinned.value) == (len(sales), 10, len(sales))
    assert after.source_version != before.source_version == pinned.source_version


@pytest.mark.django_db
def test_parquet_dataset_is_read_in_place(sales):
    buffer = io.BytesIO()
    sales.to_parquet(buffer, index=False)
    add_dataset(buffer, "sales-pq", "sales.parquet")
    source = ChartSource(kind="dataset", dataset="sales-pq")

    data = chart_data(source, ChartSpec(kind="bar", x="city", y=("amount",), aggregation="sum"))

    assert drawn(data) == as_labels(expected_series(sales, "city", "amount", "sum"), "")


# -- Predictions and tables ------------------------------------------------------------------


@pytest.fixture
def predicted(make_pipeline, settings):
    pipeline = make_pipeline(
        [
            {"type": "sklearn_dataset", "params": {"name": "diabetes"}},
            {
                "type": "train_sklearn",
                "params": {
                    "task": "regression",
                    "estimator": "linear_regression",
                    "target": "target",
                },
            },
            {"type": "predict", "params": {"prediction_column": "predicted"}},
        ]
    )
    run = runs.start_run(pipeline, wait=True)
    assert run.status == "succeeded", run.error_message
    frame = pd.read_parquet(
        settings.MLOPS_CACHE_DIR / f"pipeline_{pipeline.pk}_step_3.predictions.parquet"
    )
    return pipeline, run, frame


@pytest.mark.django_db
def test_predictions_of_the_latest_successful_run_are_charted(predicted):
    pipeline, run, frame = predicted
    source = ChartSource(kind="predictions", pipeline_id=pipeline.pk)
    spec = ChartSpec(kind="bar", x="sex", y=("predicted",), aggregation="mean")

    data = chart_data(source, spec)

    assert source_columns(source)["predicted"] == "number"
    assert drawn(data) == as_labels(expected_series(frame, "sex", "predicted", "mean"), "")
    assert data.source_version.startswith(f"run:{run.pk}:")


@pytest.mark.django_db
def test_predictions_rewritten_by_a_later_run_are_not_charted(predicted):
    pipeline, run, _frame = predicted
    run.step_runs.filter(order=3).update(fingerprint="0" * 64)

    with pytest.raises(ChartInvalid) as caught:
        source_columns(ChartSource(kind="predictions", pipeline_id=pipeline.pk))

    assert f"run #{run.pk}" in caught.value.errors["source"]


class FakeConnector:
    reads = 0

    def preview(self, table, n=20):
        FakeConnector.reads += 1
        return pd.DataFrame({"day": ["2024-01-01", "2024-02-03"], "rows": [3, 4]})


@pytest.mark.django_db
def test_table_written_by_save_table_is_read_once_through_the_connector(predicted, monkeypatch):
    _pipeline, run, _frame = predicted
    source = DataSource.objects.create(name="warehouse", kind="postgresql", host="db")
    RunOutput.objects.create(run=run, step_order=4, kind="table", datasource="warehouse",
                             table="scores")  # fmt: skip
    monkeypatch.setattr(DataSource, "connector", lambda self: FakeConnector())
    chart = ChartSource(kind="table", datasource=source.name, table="scores")

    data = chart_data(chart, ChartSpec(kind="bar", x="day", y=("rows",), aggregation="sum",
                                       time_grain="month"))  # fmt: skip
    source_columns(chart)

    assert (data.labels, data.series[0]["values"]) == (["2024-01-01", "2024-02-01"], [3.0, 4.0])
    assert FakeConnector.reads == 1
    with pytest.raises(ChartInvalid):
        source_columns(ChartSource(kind="table", datasource=source.name, table="other"))
