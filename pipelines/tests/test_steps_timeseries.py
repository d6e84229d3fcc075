import numpy as np
import pandas as pd
import pytest

from experiments import tracking
from pipelines import runs
from pipelines.choices import RunStatus
from pipelines.tests.helpers import logged_model, rejected, run_step, step_errors, step_output

HORIZONS = {"1h": 1, "6h": 6, "1d": 24}
FEATURE_STEPS = [
    {
        "type": "lag_features",
        "params": {"columns": ["load"], "lags": [1, 2, 18, 24, 168], "order_by": "time"},
    },
    {
        "type": "rolling_features",
        "params": {
            "columns": ["load"],
            "window": "6h",
            "aggregations": ["mean", "std"],
            "order_by": "time",
        },
    },
    {
        "type": "forecast_targets",
        "params": {"column": "load", "timestamp": "time", "horizons": list(HORIZONS)},
    },
]


def times(count, start="2024-01-01", freq="h"):
    return pd.date_range(start, periods=count, freq=freq)


@pytest.fixture(scope="module")
def hourly():
    """60 days of an hourly load: daily and weekly cycles plus noise, shuffled, with
    the time as text, as a CSV gives it."""
    rng = np.random.default_rng(7)
    hours = np.arange(24 * 60)
    daily, weekly = np.sin(2 * np.pi * hours / 24), np.sin(2 * np.pi * hours / 168)
    load = 10 + 3 * daily + 2 * weekly + rng.normal(0, 0.3, hours.size)
    time = times(hours.size).strftime("%Y-%m-%d %H:%M")
    return pd.DataFrame({"time": time, "load": load}).sample(frac=1, random_state=0)


@pytest.fixture(scope="module")
def prepared(hourly):
    """The hourly series through the feature steps, ready for train_forecaster."""
    context = {"data": hourly}
    for step in FEATURE_STEPS:
        context, _ = run_step(step["type"], context, **step["params"])
    return context


def persistence_rmse(load: pd.Series, rows: int) -> float:
    """The error of forecasting 'no change': the naive baseline a model must beat."""
    return float(np.sqrt(((load.shift(-rows) - load) ** 2).mean()))


def test_lag_features_sort_by_time_and_take_earlier_rows():
    data = pd.DataFrame(
        {"time": ["2024-01-01 02:00", "2024-01-01 00:00", "2024-01-01 01:00"], "x": [3, 1, 2]}
    )

    context, log = run_step(
        "lag_features", {"data": data}, columns=["x"], lags=[1, 2], order_by="time"
    )

    frame = context["data"]
    assert frame["time"].tolist() == times(3).tolist()
    assert frame["x"].tolist() == [1, 2, 3]
    assert frame["x_lag_1"].tolist()[1:] == [1, 2]
    assert frame["x_lag_2"].tolist()[2:] == [1]
    assert frame[["x_lag_1", "x_lag_2"]].isna().sum().tolist() == [1, 2]
    assert log == ["3x2 -> 3x4"]


def test_lags_stay_within_their_series():
    data = pd.DataFrame({"step": [1, 1, 2, 2], "site": ["a", "b", "a", "b"], "x": [10, 20, 11, 21]})

    context, _ = run_step(
        "lag_features", {"data": data}, columns=["x"], lags=[1], order_by="step", group_by=["site"]
    )

    frame = context["data"]
    assert frame["x_lag_1"].fillna(0).tolist() == [0, 0, 10, 20]
    assert frame["step"].dtype == np.int64  # numbers order rows as they are


def test_rolling_row_window_aggregates_only_earlier_rows():
    data = pd.DataFrame({"time": times(6), "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})

    context, _ = run_step(
        "rolling_features",
        {"data": data},
        columns=["x"],
        window=3,
        aggregations=["mean", "max"],
        order_by="time",
    )

    frame = context["data"]
    assert list(frame.columns) == ["time", "x", "x_rolling_3_mean", "x_rolling_3_max"]
    assert frame["x_rolling_3_mean"].tolist()[3:] == [2.0, 3.0, 4.0]
    assert frame["x_rolling_3_max"].tolist()[3:] == [3.0, 4.0, 5.0]
    assert frame["x_rolling_3_mean"].head(3).isna().all()


def test_rolling_time_window_spans_time_not_rows():
    # No row at 03:00: the 2h window of 04:00 holds only 02:00.
    stamps = pd.to_datetime(
        ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00", "2024-01-01 04:00"]
    )
    data = pd.DataFrame({"time": stamps.strftime("%Y-%m-%d %H:%M"), "x": [1.0, 2.0, 4.0, 8.0]})

    context, _ = run_step(
        "rolling_features",
        {"data": data},
        columns=["x"],
        window="2h",
        aggregations=["sum", "min", "median", "std"],
        order_by="time",
    )

    frame = context["data"]
    assert frame["x_rolling_2h_sum"].tolist()[1:] == [1.0, 3.0, 4.0]
    assert frame["x_rolling_2h_min"].tolist()[1:] == [1.0, 1.0, 4.0]
    assert frame["x_rolling_2h_median"].tolist()[1:] == [1.0, 1.5, 4.0]
    assert frame["x_rolling_2h_std"].iloc[2] == pytest.approx(np.std([1.0, 2.0], ddof=1))
    assert frame["time"].dtype.kind == "M"


def test_rolling_windows_stay_within_their_series():
    data = pd.DataFrame(
        {
            "time": list(times(3)) * 2,
            "site": ["a"] * 3 + ["b"] * 3,
            "x": [1.0, 2.0, 3.0, 10.0, 20.0, 30.0],
        }
    )

    context, _ = run_step(
        "rolling_features",
        {"data": data},
        columns=["x"],
        window="1d",
        order_by="time",
        group_by=["site"],
    )

    frame = context["data"].sort_values(["site", "time"])
    assert frame["x_rolling_1d_mean"].fillna(0).tolist() == [0, 1.0, 1.5, 0, 10.0, 15.0]


def test_forecast_targets_shift_the_series_by_each_horizon(hourly):
    context, log = run_step(
        "forecast_targets",
        {"data": hourly},
        column="load",
        timestamp="time",
        horizons=["1h", "6h", "1d"],
    )

    frame = context["data"]
    ordered = hourly.assign(time=pd.to_datetime(hourly["time"])).sort_values("time")["load"]
    assert frame["time"].is_monotonic_increasing
    for horizon, rows in HORIZONS.items():
        expected = ordered.shift(-rows).tolist()
        assert frame[f"load_ahead_{horizon}"].tolist()[:-rows] == expected[:-rows]
        assert frame[f"load_ahead_{horizon}"].tail(rows).isna().all()
    assert context["forecast"] == {
        "target": "load",
        "timestamp": "time",
        "horizons": {"1h": "load_ahead_1h", "6h": "load_ahead_6h", "1d": "load_ahead_1d"},
    }
    assert context["_summary"]["row_shifts"] == HORIZONS
    assert log == ["interval 0 days 01:00:00; row shifts {'1h': 1, '6h': 6, '1d': 24}"]


def test_forecaster_beats_the_naive_forecast_and_forecasts_the_latest_rows(prepared):
    context, log = run_step("train_forecaster", prepared, estimator="linear_regression")

    metrics, load = context["metrics"], prepared["data"]["load"]
    assert set(metrics) == {f"{m}_{h}" for m in ("rmse", "mae", "mape") for h in HORIZONS}
    for horizon, rows in HORIZONS.items():
        assert metrics[f"rmse_{horizon}"] < 0.8 * persistence_rmse(load, rows)
        assert 0 < metrics[f"mae_{horizon}"] <= metrics[f"rmse_{horizon}"]
        assert metrics[f"mape_{horizon}"] < 0.1
    assert metrics["rmse_1h"] < 0.25 * load.std()
    predictions = context["predictions"]
    forecast_columns = ["load_forecast_1h", "load_forecast_6h", "load_forecast_1d"]
    assert list(predictions.columns) == ["time", "load", *forecast_columns]
    # The last day has no known 1-day-ahead value yet: those rows are forecast.
    assert predictions["time"].tolist() == times(24, "2024-02-29").tolist()
    assert predictions[forecast_columns].notna().all().all()
    assert predictions["load_forecast_1h"].between(4, 16).all()
    model = context["model"]
    assert model[-1].output_columns_ == forecast_columns
    assert "load_ahead_1h" not in model.feature_names_in_
    assert "time" not in model.feature_names_in_
    summary = context["_summary"]
    assert (summary["train_rows"], summary["test_rows"], summary["forecast_rows"]) == (
        1133,
        283,
        24,
    )
    assert "rmse_1h=" in log[0]


def test_forecaster_uses_only_the_chosen_features(prepared):
    context, _ = run_step(
        "train_forecaster",
        prepared,
        estimator="linear_regression",
        features=["load", "load_lag_24"],
    )

    assert list(context["model"].feature_names_in_) == ["load", "load_lag_24"]


@pytest.mark.django_db
def test_forecasting_pipeline_on_an_hourly_series(make_dataset, make_pipeline, hourly):
    make_dataset(hourly, "load")
    pipeline = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "load"}},
            *FEATURE_STEPS,
            {
                "type": "train_forecaster",
                "params": {
                    "estimator": "ridge",
                    "hyperparams": {"alpha": 0.5},
                },
            },
            {"type": "predict"},
        ]
    )

    run = runs.start_run(pipeline, wait=True)
    for s in run.step_runs.order_by("order"):
        print(s.order, s.step_type, s.finished_at - s.started_at)
    print(run.logs)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    load = hourly["load"]
    for horizon, rows in HORIZONS.items():
        assert run.metrics[f"rmse_{horizon}"] < 0.8 * persistence_rmse(load.sort_index(), rows)
    mlflow_run = tracking.get_run(run.mlflow_run_id)
    assert mlflow_run["metrics"]["mape_1d"] == run.metrics["mape_1d"] < 0.1
    training = run.step_runs.get(order=5)
    assert training.summary["forecast_rows"] == training.rows_out == 24
    assert training.summary["artifacts"] == ["step_5/forecast.csv"]
    forecast = pd.read_csv(tracking.download_artifact(run.mlflow_run_id, "step_5/forecast.csv"))
    model = logged_model(run)
    predictions = step_output(run, 6)["predictions"]
    forecast_columns = ["load_forecast_1h", "load_forecast_6h", "load_forecast_1d"]
    assert list(predictions.columns[-3:]) == forecast_columns
    features = predictions[list(model.feature_names_in_)]
    assert np.allclose(model.predict(features), predictions[forecast_columns])
    assert np.allclose(forecast[forecast_columns], predictions[forecast_columns].tail(24))


@pytest.mark.parametrize(
    "slug, params, field, message",
    [
        (
            "lag_features",
            {"columns": ["x"], "lags": [0], "order_by": "t"},
            ("lags", 0),
            "greater than 0",
        ),
        ("lag_features", {"columns": [], "lags": [1], "order_by": "t"}, ("columns",), "at least 1"),
        (
            "rolling_features",
            {"columns": ["x"], "window": "6x", "order_by": "t"},
            ("window",),
            "'6x' is not a time span such as 30min, 6h, 1d or 2w",
        ),
        (
            "rolling_features",
            {"columns": ["x"], "window": 3, "aggregations": ["mode"], "order_by": "t"},
            ("aggregations", 0),
            "Input should be 'mean', 'sum', 'min', 'max', 'std' or 'median'",
        ),
        (
            "forecast_targets",
            {"column": "x", "timestamp": "t", "horizons": ["1h", "1y"]},
            ("horizons",),
            "'1y' is not a time span",
        ),
        (
            "forecast_targets",
            {"column": "x", "timestamp": "t", "horizons": ["1h", "6h", "1h"]},
            ("horizons",),
            "['1h'] listed more than once",
        ),
        (
            "train_forecaster",
            {"estimator": "svm"},
            ("estimator",),
            "unknown estimator 'svm' for regression",
        ),
        (
            "train_forecaster",
            {"estimator": "random_forest", "hyperparams": {"trees": 5}},
            ("hyperparams",),
            "'trees' is not a hyperparameter of RandomForestRegressor",
        ),
        (
            "train_forecaster",
            {"estimator": "random_forest", "hyperparams": {"max_depth": -1}},
            ("hyperparams",),
            "The 'max_depth' parameter of RandomForestRegressor must be",
        ),
        ("train_forecaster", {"estimator": "ridge", "test_size": 1}, ("test_size",), "less than 1"),
    ],
)
def test_invalid_parameters_are_rejected_by_field(slug, params, field, message):
    errors = rejected(slug, **params)

    assert errors[0]["loc"] == field
    assert message in errors[0]["msg"]


def test_invalid_parameters_name_the_step_and_field():
    steps = [
        {"type": "sklearn_dataset", "params": {"name": "iris"}},
        {
            "type": "rolling_features",
            "params": {"columns": ["x"], "window": "1 day", "order_by": "t"},
        },
        {"type": "forecast_targets", "params": {"column": "x", "timestamp": "t", "horizons": []}},
    ]

    errors = step_errors(steps)

    assert "step 2, params.window: '1 day' is not a time span such as 30min, 6h, 1d or 2w" in errors
    assert (
        "step 3, params.horizons: List should have at least 1 item after validation, not 0"
        in errors
    )


@pytest.mark.parametrize(
    "slug, params, message",
    [
        (
            "lag_features",
            {"columns": ["y"], "lags": [1], "order_by": "time"},
            r"^columns: column\(s\) \['y'\]",
        ),
        (
            "lag_features",
            {"columns": ["load"], "lags": [1], "order_by": "when"},
            r"^order_by: column\(s\) \['when'\]",
        ),
        (
            "lag_features",
            {"columns": ["load"], "lags": [1], "order_by": "time", "group_by": ["site"]},
            r"^group_by: column\(s\) \['site'\]",
        ),
        (
            "rolling_features",
            {"columns": ["time"], "window": 2, "order_by": "load"},
            r"^columns: \['time'\] are not numeric",
        ),
        (
            "rolling_features",
            {"columns": ["load"], "window": "2h", "order_by": "load"},
            r"^order_by: 'load' holds numbers, not dates or times",
        ),
        (
            "forecast_targets",
            {"column": "load", "timestamp": "time", "horizons": ["90min"]},
            r"^horizons: '90min' is not a whole number of the series' interval \(0 days 01:00:00\)",
        ),
        (
            "forecast_targets",
            {"column": "time", "timestamp": "time", "horizons": ["1h"]},
            r"^column: 'time' is not numeric",
        ),
    ],
)
def test_data_errors_name_the_field(hourly, slug, params, message):
    with pytest.raises(ValueError, match=message):
        run_step(slug, {"data": hourly}, **params)


def test_forecast_targets_need_one_row_per_time(hourly):
    doubled = pd.concat([hourly, hourly])

    with pytest.raises(ValueError, match=r"^timestamp: 1440 row\(s\) repeat an earlier time"):
        run_step(
            "forecast_targets", {"data": doubled}, column="load", timestamp="time", horizons=["1h"]
        )


def test_text_that_is_not_a_time_is_named():
    data = pd.DataFrame({"time": ["monday", "tuesday"], "x": [1.0, 2.0]})

    with pytest.raises(ValueError, match=r"^timestamp: 'time' cannot be read as dates"):
        run_step("forecast_targets", {"data": data}, column="x", timestamp="time", horizons=["1h"])


def test_forecaster_refuses_targets_as_features(prepared):
    with pytest.raises(ValueError, match=r"^features: \['load_ahead_6h'\] are forecast targets"):
        run_step(
            "train_forecaster", prepared, estimator="ridge", features=["load", "load_ahead_6h"]
        )


def test_forecaster_needs_rows_to_train_and_test_on():
    data = pd.DataFrame({"time": times(3), "x": [1.0, 2.0, 3.0]})
    context, _ = run_step(
        "forecast_targets", {"data": data}, column="x", timestamp="time", horizons=["2h"]
    )

    with pytest.raises(
        ValueError, match=r"^test_size: 1 row\(s\) with every horizon's target known"
    ):
        run_step("train_forecaster", context, estimator="ridge")
