"""Time-series features and direct multi-horizon forecasting.

The steps sort rows by a time column first. A time column read as text (a CSV) is
parsed with `pandas.to_datetime` and kept parsed. Lag and rolling features look only
at earlier rows, so a feature never contains the value it is used to predict.
`forecast_targets` adds one future value per horizon; `train_forecaster` fits one
regressor per horizon on the rows whose future is known and forecasts the rest.
"""

import re
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt, ValidationInfo, field_validator
from sklearn import metrics as sk_metrics
from sklearn.multioutput import MultiOutputRegressor
from sklearn.pipeline import Pipeline

from pipelines.choices import StepKind
from pipelines.engine.context import require_columns
from pipelines.engine.registry import StepParams, StepType, register
from pipelines.steps.estimators import build_estimator, check_estimator
from pipelines.steps.preprocessing import FrameStep
from pipelines.steps.training import _preparation

TIME_SPAN = re.compile(r"([1-9][0-9]*)(s|min|h|d|w)")
SPAN_UNITS = {"s": "seconds", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
AGGREGATIONS = Literal["mean", "sum", "min", "max", "std", "median"]


def time_span(text: str) -> pd.Timedelta:
    """'30min', '6h', '1d', '2w' as a Timedelta; ValueError for anything else."""
    match = TIME_SPAN.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a time span such as 30min, 6h, 1d or 2w")
    count, unit = match.groups()
    return pd.Timedelta(**{SPAN_UNITS[unit]: int(count)})


def in_time_order(frame: pd.DataFrame, column: str, field: str, times: bool = False):
    """The frame sorted by `column` (ties keep their order), a text column parsed first.

    With `times`, the column must hold dates or times; otherwise numbers order rows too.
    """
    require_columns(frame, [column], field)
    values = frame[column]
    if times or not _orderable(values):
        values = _as_times(values, field)
    missing = int(values.isna().sum())
    if missing:
        raise ValueError(f"{field}: {column!r} has {missing} missing value(s)")
    ordered = frame.assign(**{column: values})
    return ordered.sort_values(column, kind="stable").reset_index(drop=True)


def _orderable(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)


def _as_times(values: pd.Series, field: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    if pd.api.types.is_numeric_dtype(values):
        raise ValueError(f"{field}: {values.name!r} holds numbers, not dates or times")
    try:
        return pd.to_datetime(values)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{field}: {values.name!r} cannot be read as dates: {exc}") from None


def _by_group(frame: pd.DataFrame, group_by: list[str] | None):
    """The frame, or its groups: the two share `[column].shift(...)`."""
    if not group_by:
        return frame
    require_columns(frame, group_by, "group_by")
    return frame.groupby(group_by, dropna=False, sort=False)


class LagParams(StepParams):
    columns: list[str] = Field(min_length=1, description="Columns to take earlier values of.")
    lags: list[PositiveInt] = Field(
        min_length=1, description="How many rows back each lag looks, e.g. [1, 24]."
    )
    order_by: str = Field(
        description="Column that puts the rows in order: times (text is parsed) or numbers."
    )
    group_by: list[str] | None = Field(
        None, description="Columns that identify separate series; lags stay within one."
    )


@register
class LagFeatures(FrameStep):
    """Add earlier values of columns as `<column>_lag_<n>`, rows sorted by time."""

    slug = "lag_features"
    kind = StepKind.FEATURES
    label = "Lag features"
    Params = LagParams

    def transform(self, frame, params: LagParams):
        require_columns(frame, params.columns)
        frame = in_time_order(frame, params.order_by, "order_by")
        series = _by_group(frame, params.group_by)
        lagged = {
            f"{column}_lag_{lag}": series[column].shift(lag)
            for column in params.columns
            for lag in params.lags
        }
        return frame.assign(**lagged)


class RollingParams(StepParams):
    columns: list[str] = Field(min_length=1, description="Numeric columns to aggregate.")
    window: PositiveInt | str = Field(
        description="Rows per window, or a time span such as 6h or 1d measured on `order_by`."
    )
    aggregations: list[AGGREGATIONS] = Field(
        default_factory=lambda: ["mean"], min_length=1, description="Aggregates per window."
    )
    order_by: str = Field(
        description="Column that puts the rows in order: times (text is parsed) or numbers; "
        "times for a time-span window."
    )
    group_by: list[str] | None = Field(
        None, description="Columns that identify separate series; windows stay within one."
    )

    @field_validator("window")
    @classmethod
    def window_is_a_span(cls, value):
        if isinstance(value, str):
            time_span(value)
        return value


@register
class RollingFeatures(FrameStep):
    """Add aggregates of each row's preceding window as `<column>_rolling_<window>_<agg>`.

    The window ends just before the row (closed on the left), so a row's own value,
    and any later one, never enters its features.
    """

    slug = "rolling_features"
    kind = StepKind.FEATURES
    label = "Rolling window features"
    Params = RollingParams

    def transform(self, frame, params: RollingParams):
        require_columns(frame, params.columns)
        text = [c for c in params.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if text:
            raise ValueError(f"columns: {text} are not numeric")
        time_window = isinstance(params.window, str)
        frame = in_time_order(frame, params.order_by, "order_by", times=time_window)
        if params.group_by:
            groups = _by_group(frame, params.group_by)
            rolled = pd.concat(_past_windows(part, params) for _, part in groups)
        else:
            rolled = _past_windows(frame, params)
        return frame.join(rolled)


def _past_windows(frame: pd.DataFrame, params: RollingParams) -> pd.DataFrame:
    values, window = frame[params.columns], params.window
    if isinstance(window, str):
        # A time-span window is measured on the time column, so it becomes the index.
        values = values.set_axis(pd.DatetimeIndex(frame[params.order_by]))
        window = time_span(window)
    aggregated = values.rolling(window, closed="left").agg(params.aggregations)
    aggregated.columns = [
        f"{column}_rolling_{params.window}_{how}" for column, how in aggregated.columns
    ]
    return aggregated.set_axis(frame.index)


class ForecastTargetsParams(StepParams):
    column: str = Field(description="Numeric column to forecast.")
    timestamp: str = Field(description="Time of each row; text is parsed as dates.")
    horizons: list[str] = Field(
        min_length=1, description="How far ahead to forecast, e.g. ['1h', '6h', '1d']."
    )

    @field_validator("horizons")
    @classmethod
    def horizons_are_spans(cls, value: list[str]):
        for horizon in value:
            time_span(horizon)
        repeated = sorted({h for h in value if value.count(h) > 1})
        if repeated:
            raise ValueError(f"{repeated} listed more than once")
        return value


@register
class ForecastTargets(StepType):
    """Add the value each horizon ahead as `<column>_ahead_<horizon>`.

    A horizon becomes a row shift using the median interval between rows, so the series
    must have one row per time; near a gap in it a target is off by the gap.
    """

    slug = "forecast_targets"
    kind = StepKind.FEATURES
    label = "Forecast targets"
    Params = ForecastTargetsParams
    requires = ("data",)
    produces = ("data", "forecast")

    def run(self, context, params: ForecastTargetsParams, log):
        frame = in_time_order(context["data"], params.timestamp, "timestamp", times=True)
        require_columns(frame, [params.column], "column")
        if not pd.api.types.is_numeric_dtype(frame[params.column]):
            raise ValueError(f"column: {params.column!r} is not numeric")
        interval = median_interval(frame[params.timestamp])
        shifts = {horizon: row_shift(horizon, interval) for horizon in params.horizons}
        targets = {horizon: f"{params.column}_ahead_{horizon}" for horizon in params.horizons}
        ahead = {targets[h]: frame[params.column].shift(-rows) for h, rows in shifts.items()}
        context["data"] = frame.assign(**ahead)
        context["forecast"] = {
            "target": params.column,
            "timestamp": params.timestamp,
            "horizons": targets,
        }
        context["_summary"] = {"interval": str(interval), "row_shifts": shifts}
        log(f"interval {interval}; row shifts {shifts}")
        return context


def median_interval(times: pd.Series) -> pd.Timedelta:
    """The typical time between consecutive rows of a sorted, one-row-per-time series."""
    repeated = int(times.duplicated().sum())
    if repeated:
        raise ValueError(
            f"timestamp: {repeated} row(s) repeat an earlier time; "
            "forecast targets need one series with one row per time"
        )
    if len(times) < 2:
        raise ValueError("timestamp: at least 2 rows are needed to measure the interval")
    return times.diff().median()


def row_shift(horizon: str, interval: pd.Timedelta) -> int:
    rows, rest = divmod(time_span(horizon), interval)
    if rest:
        raise ValueError(
            f"horizons: {horizon!r} is not a whole number of the series' interval ({interval})"
        )
    return int(rows)


class DirectForecaster(MultiOutputRegressor):
    """One regressor per horizon (the direct strategy).

    `output_columns_` names the forecast of each horizon, taken from the target
    columns it was fitted on; `predict` returns one column per horizon.
    """

    def fit(self, X, y: pd.DataFrame, **fit_params):
        self.output_columns_ = list(y.columns)
        return super().fit(X, y, **fit_params)


class ForecasterParams(StepParams):
    estimator: str = Field(description="Regression estimator slug, e.g. random_forest.")
    features: list[str] | None = Field(
        None, description="Feature columns; all numeric columns except the targets when empty."
    )
    hyperparams: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of the estimator, checked against it."
    )
    test_size: float = Field(
        0.2, gt=0, lt=1, description="Share of the latest labelled rows held out for metrics."
    )
    random_state: int | None = Field(42, description="Seed of estimators that draw numbers.")

    @field_validator("estimator")
    @classmethod
    def estimator_known(cls, value: str):
        check_estimator("regression", value)
        return value

    @field_validator("hyperparams")
    @classmethod
    def hyperparams_valid(cls, value: dict, info: ValidationInfo):
        if info.data.get("estimator"):
            build_estimator("regression", info.data["estimator"], value)
        return value


@register
class TrainForecaster(StepType):
    """Forecast every horizon of `forecast_targets` from the current row's features.

    Scored on the latest labelled rows (a time-ordered split), then refitted on every
    labelled row, so the model that forecasts has seen the most recent data. Rows whose
    future is not yet known get forecasts in `predictions`.
    """

    slug = "train_forecaster"
    kind = StepKind.TRAINING
    label = "Train a forecaster"
    Params = ForecasterParams
    requires = ("data", "forecast")
    produces = ("model", "metrics", "predictions")

    def run(self, context, params: ForecasterParams, log):
        forecast = context["forecast"]
        frame = in_time_order(context["data"], forecast["timestamp"], "data", times=True)
        features = forecast_features(frame, params.features, forecast)
        X, y, latest = labelled_rows(frame, features, forecast)
        X_train, X_test, y_train, y_test = time_split(X, y, params.test_size)
        regressor = build_estimator(
            "regression", params.estimator, params.hyperparams, params.random_state
        )
        model = Pipeline([("prepare", _preparation(X)), ("estimator", DirectForecaster(regressor))])
        scores = horizon_scores(model.fit(X_train, y_train), X_test, y_test, forecast["horizons"])
        model.fit(X, y)
        predictions = latest[[forecast["timestamp"], forecast["target"]]].join(
            predict_horizons(model, latest[features])
        )
        log(f"{type(regressor).__name__} per horizon on {len(X_train)} rows: {_format(scores)}")
        context["model"] = model
        context["metrics"] = {**context.get("metrics", {}), **scores}
        context["predictions"] = predictions.reset_index(drop=True)
        context["_artifacts"] = {"forecast.csv": context["predictions"]}
        context["_summary"] = {
            "estimator": type(regressor).__name__,
            "features": features,
            "train_rows": len(X_train),
            "test_rows": len(X_test),
            "forecast_rows": len(latest),
            "metrics": scores,
        }
        return context


def labelled_rows(frame: pd.DataFrame, features: list[str], forecast: dict):
    """Features and targets of the rows whose every target is known, and the rows after
    the last of them, which are to be forecast.

    The targets are renamed `<target>_forecast_<horizon>`: the names of the forecasts.
    """
    targets = list(forecast["horizons"].values())
    require_columns(frame, targets, "data")
    known = frame[targets].notna().all(axis=1)
    y = frame.loc[known, targets]
    y.columns = [f"{forecast['target']}_forecast_{horizon}" for horizon in forecast["horizons"]]
    return frame.loc[known, features], y, frame.iloc[_last_true(known) + 1 :]


def predict_horizons(model: Pipeline, X: pd.DataFrame) -> pd.DataFrame:
    columns = model[-1].output_columns_
    if X.empty:
        return pd.DataFrame(columns=columns, index=X.index, dtype=float)
    return pd.DataFrame(model.predict(X), columns=columns, index=X.index)


def forecast_features(frame: pd.DataFrame, chosen: list[str] | None, forecast: dict) -> list[str]:
    targets = set(forecast["horizons"].values())
    if chosen:
        require_columns(frame, chosen, "features")
        leaking = [column for column in chosen if column in targets]
        if leaking:
            raise ValueError(f"features: {leaking} are forecast targets")
        return chosen
    numeric = frame.select_dtypes(include="number").columns
    features = [column for column in numeric if column not in targets]
    if not features:
        raise ValueError("features: the data has no numeric column besides the targets")
    return features


def time_split(X: pd.DataFrame, y: pd.DataFrame, test_size: float):
    """The earlier rows to train on and the latest `test_size` share to score on."""
    test_rows = max(1, round(len(X) * test_size))
    train_rows = len(X) - test_rows
    if train_rows < 1:
        raise ValueError(
            f"test_size: {len(X)} row(s) with every horizon's target known are too few "
            "to split into training and test rows"
        )
    return X.iloc[:train_rows], X.iloc[train_rows:], y.iloc[:train_rows], y.iloc[train_rows:]


def horizon_scores(model, X_test, y_test: pd.DataFrame, horizons: dict) -> dict[str, float]:
    """rmse, mae and mape (a fraction, over non-zero actuals) of each horizon."""
    predicted = pd.DataFrame(model.predict(X_test), columns=y_test.columns, index=y_test.index)
    scores = {}
    for horizon, column in zip(horizons, y_test.columns, strict=True):
        actual, estimate = y_test[column], predicted[column]
        scores[f"rmse_{horizon}"] = float(sk_metrics.root_mean_squared_error(actual, estimate))
        scores[f"mae_{horizon}"] = float(sk_metrics.mean_absolute_error(actual, estimate))
        nonzero = actual != 0
        if nonzero.any():
            errors = (actual[nonzero] - estimate[nonzero]).abs() / actual[nonzero].abs()
            scores[f"mape_{horizon}"] = float(errors.mean())
    return scores


def _last_true(flags: pd.Series) -> int:
    """Position of the last True flag, -1 when there is none."""
    positions = np.flatnonzero(flags.to_numpy())
    return int(positions[-1]) if len(positions) else -1


def _format(scores: dict[str, float]) -> str:
    return ", ".join(f"{name}={value:.4f}" for name, value in scores.items())
