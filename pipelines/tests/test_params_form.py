"""The step parameter form: fields from the pydantic declarations, and the posted form
read back into params, for every registered step type."""

import datetime
import enum
import re
from html.parser import HTMLParser
from typing import Any, Literal

import pandas as pd
import pytest
from django.http import QueryDict
from django.template.loader import render_to_string
from pydantic import Field, PositiveInt, ValidationError

import pipelines.testing  # noqa: F401  (registers the diagnostic step types too)
from datasources.models import DataSource
from pipelines.engine.registry import STEP_TYPES, StepParams, StepType
from pipelines.params_form import (
    ParamField,
    ParamOptions,
    describe_fields,
    parse_params,
    unplaced_errors,
)
from pipelines.validation import params_errors

COLUMNS = ["id", "a", "b", "city", "when", "label"]


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Window(StepParams):
    """Rows looked at together."""

    size: int = Field(3, ge=1, le=50, description="Rows per window.")
    centered: bool = False


class Catalogue(StepParams):
    mode: Literal["fast", "exact"] = Field("fast", description="How hard to try.")
    colour: Colour = Colour.RED
    shade: Literal["light", "dark"] | None = None
    strict: bool = Field(True, description="Refuse unknown values.")
    verbose: bool | None = None
    count: int = Field(5, ge=0, le=10)
    share: float = Field(0.5, gt=0, lt=1)
    limit: PositiveInt | None = None
    title: str = Field("", max_length=40)
    dataset: str | int | None = None
    ratio: int | float = 2
    labels: list[str] | None = None
    edges: list[float] | None = None
    parts: list[Literal["year", "month"]] = ["year"]
    features: list[str] | None = None
    pick: list[str] = Field(default_factory=list, json_schema_extra={"widget": "columns"})
    target: str | None = None
    since: datetime.date = datetime.date(2024, 1, 31)
    mapping: dict[str, str] = Field(default_factory=dict)
    anything: Any = None
    either: bool | list[bool] = False
    window: Window = Field(default_factory=Window)
    extra_window: Window | None = None


class CatalogueStep(StepType):
    """Not registered: a declaration with every kind of field."""

    slug = "catalogue"
    kind = "preprocessing"
    Params = Catalogue


def by_path(fields: list[ParamField]) -> dict[str, ParamField]:
    found = {}
    for item in fields:
        found[item.path] = item
        found.update(by_path(item.children))
    return found


def render(fields, **context) -> str:
    return render_to_string("pipelines/htmx/step_params.html", {"fields": fields, **context})


class BrowserForm(HTMLParser):
    """What a browser posts for the rendered inputs: checked boxes, selected options,
    textarea text without the newline after the tag, the first option of a plain select
    when none is selected."""

    def __init__(self, html: str):
        super().__init__()
        self.data = QueryDict(mutable=True)
        self._select, self._options, self._textarea, self._text = None, [], None, []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("type") == "checkbox":
            if "checked" in attrs:
                self.data.appendlist(attrs["name"], attrs.get("value", "on"))
        elif tag == "input" and "name" in attrs:
            self.data.appendlist(attrs["name"], attrs.get("value", ""))
        elif tag == "select":
            self._select, self._options = attrs, []
        elif tag == "option" and self._select is not None:
            self._options.append((attrs.get("value", ""), "selected" in attrs))
        elif tag == "textarea":
            self._textarea, self._text = attrs["name"], []

    def handle_data(self, data):
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "select":
            chosen = [value for value, selected in self._options if selected]
            if not chosen and "multiple" not in self._select and self._options:
                chosen = [self._options[0][0]]
            for value in chosen:
                self.data.appendlist(self._select["name"], value)
            self._select = None
        elif tag == "textarea":
            self.data.appendlist(self._textarea, "".join(self._text).removeprefix("\n"))
            self._textarea = None


def submitted(step_type, params, prefix="step-1-", options=None) -> tuple[dict, dict]:
    """Render `params` as the form, post it as a browser would, and parse it."""
    html = render(describe_fields(step_type, params, {}, prefix, options))
    return parse_params(step_type, BrowserForm(html).data, prefix)


def validated(slug, params) -> dict:
    return STEP_TYPES[slug].Params.model_validate(params).model_dump()


# Fields from declarations


def test_each_annotation_gets_its_widget():
    fields = by_path(describe_fields(CatalogueStep, {}, {}, "s-"))

    widgets = {path: item.widget for path, item in fields.items()}
    assert widgets == {
        "mode": "select",
        "colour": "select",
        "shade": "select",
        "strict": "checkbox",
        "verbose": "select",
        "count": "number",
        "share": "number",
        "limit": "number",
        "title": "text",
        "dataset": "text",
        "ratio": "number",
        "labels": "list",
        "edges": "list",
        "parts": "select",
        "features": "columns",
        "pick": "columns",
        "target": "text",
        "since": "text",
        "mapping": "json",
        "anything": "json",
        "either": "json",
        "window": "fieldset",
        "window.size": "number",
        "window.centered": "checkbox",
        "extra_window": "fieldset",
        "extra_window.size": "number",
        "extra_window.centered": "checkbox",
    }
    assert fields["parts"].multiple and fields["parts"].value == ["year"]
    assert fields["title"].max_length == 40
    assert fields["window.size"].name == "s-window.size"
    assert fields["share"].label == "Share" and fields["share"].help == ""
    assert fields["mode"].help == "How hard to try."


def test_fields_hold_the_defaults_formatted_for_their_widgets():
    fields = by_path(describe_fields(CatalogueStep, {}, {}, ""))

    values = {path: item.value for path, item in fields.items()}
    assert values["mode"] == "fast"
    assert values["colour"] == "red"
    assert values["shade"] == ""
    assert values["strict"] is True
    assert values["count"] == "5" and values["share"] == "0.5"
    assert values["limit"] == ""
    assert values["since"] == "2024-01-31"
    assert values["mapping"] == "{}"
    assert values["anything"] == ""
    assert values["either"] == "false"
    assert values["window"] is True and values["window.size"] == "3"
    assert values["extra_window"] is False and values["extra_window.size"] == "3"


def test_stored_values_are_shown_instead_of_the_defaults():
    stored = {
        "count": 7,
        "labels": ["low", "high"],
        "edges": [0, 2.5],
        "mapping": {"a": "alpha"},
        "extra_window": {"size": 9},
        "dataset": "sales",
    }
    fields = by_path(describe_fields(CatalogueStep, stored, {}, ""))

    assert fields["count"].value == "7"
    assert fields["labels"].value == "low, high"
    assert fields["edges"].value == "0, 2.5"
    assert fields["mapping"].value == '{"a": "alpha"}'
    assert fields["extra_window"].value is True
    assert fields["extra_window.size"].value == "9"
    assert fields["dataset"].value == "sales"


def test_number_bounds_and_steps_come_from_the_constraints():
    catalogue = by_path(describe_fields(CatalogueStep, {}, {}, ""))
    bins = by_path(describe_fields("bin_numeric", {}, {}, ""))
    train = by_path(describe_fields("train_sklearn", {}, {}, ""))
    limit = by_path(describe_fields("limit", {}, {}, ""))

    assert (catalogue["count"].min, catalogue["count"].max, catalogue["count"].step) == (
        "0",
        "10",
        "1",
    )
    assert (bins["bins"].min, bins["bins"].max, bins["bins"].step) == ("2", "100", "1")
    # test_size is above 0 and below 1: a float's exclusive bounds are left to validation.
    assert (train["test_size"].min, train["test_size"].max, train["test_size"].step) == (
        "0",
        "1",
        "any",
    )
    assert (limit["rows"].min, limit["rows"].max, limit["rows"].required) == ("1", None, True)
    assert catalogue["limit"].min == "1"  # PositiveInt | None
    assert catalogue["ratio"].step == "any"


def test_choices_come_from_literals_and_enums():
    fields = by_path(describe_fields(CatalogueStep, {}, {}, ""))
    dataset = by_path(describe_fields("sklearn_dataset", {}, {}, ""))

    assert fields["mode"].suggestions == ["fast", "exact"] and not fields["mode"].empty_label
    assert fields["colour"].suggestions == ["red", "blue"]
    assert fields["shade"].suggestions == ["light", "dark"]
    assert fields["shade"].empty_label == "(none)"
    assert fields["verbose"].suggestions == ["true", "false"]
    assert fields["parts"].suggestions == ["year", "month"]
    assert dataset["name"].suggestions == ["iris", "wine", "breast_cancer", "diabetes"]
    assert dataset["name"].required and dataset["name"].empty_label == "Choose…"


def test_a_stored_value_outside_the_choices_stays_visible():
    fields = by_path(describe_fields("drop_na", {"how": "some"}, {}, ""))

    assert fields["how"].value == "some"
    assert fields["how"].suggestions == ["any", "all", "some"]


def test_search_is_an_optional_fieldset_of_its_own_fields():
    fields = describe_fields("train_sklearn", {}, {}, "step-4-")
    search = by_path(fields)["search"]

    assert search.widget == "fieldset" and search.optional and search.value is False
    assert search.name == "step-4-search"
    assert search.help.startswith("A hyperparameter search")
    assert [child.name for child in search.children] == [
        "step-4-search.kind",
        "step-4-search.grid",
        "step-4-search.trials",
        "step-4-search.metric",
        "step-4-search.folds",
    ]
    trials = by_path(fields)["search.trials"]
    assert (trials.min, trials.max, trials.value) == ("1", "200", "10")
    # The grid is required of a search, but an unticked search must not block the form.
    assert not by_path(fields)["search.grid"].required

    enabled = by_path(describe_fields("train_sklearn", {"search": {"grid": {"a": [1]}}}))
    assert enabled["search"].value is True
    assert enabled["search.grid"].value == '{"a": [1]}'


def test_column_fields_suggest_the_upstream_columns():
    options = ParamOptions(columns=COLUMNS)
    train = by_path(describe_fields("train_sklearn", {"features": ["b"]}, {}, "", options))
    resample = by_path(describe_fields("resample", {}, {}, "", options))
    lag = by_path(describe_fields("lag_features", {}, {}, "", options))

    assert train["target"].widget == "text" and train["target"].suggestions == COLUMNS
    assert train["features"].widget == "columns" and train["features"].multiple
    # The chosen columns come first, in their order: a select posts in document order.
    assert train["features"].suggestions == ["b", "id", "a", "city", "when", "label"]
    assert train["features"].value == ["b"]
    assert resample["on"].suggestions == COLUMNS
    assert lag["order_by"].suggestions == COLUMNS and lag["group_by"].multiple
    assert not train["estimator"].suggestions


def test_column_lists_are_comma_separated_text_without_a_cache():
    fields = by_path(describe_fields("sort", {"columns": ["b", "a"]}, {}, ""))

    assert fields["columns"].widget == "columns" and not fields["columns"].multiple
    assert fields["columns"].value == "b, a"


def test_a_marker_in_the_declaration_asks_for_column_suggestions():
    options = ParamOptions(columns=["x", "y"])
    fields = by_path(describe_fields(CatalogueStep, {"pick": ["y"]}, {}, "", options))

    assert fields["pick"].widget == "columns"
    assert fields["pick"].suggestions == ["y", "x"] and fields["pick"].value == ["y"]
    assert not fields["labels"].suggestions


def test_reference_fields_suggest_what_the_editor_knows():
    options = ParamOptions(
        datasets=["sales", "sales@2"], sources=["warehouse"], model_uris=["models:/churn@live"]
    )

    csv = by_path(describe_fields("csv", {}, {}, "", options))
    sql = by_path(describe_fields("sql", {}, {}, "", options))
    predict = by_path(describe_fields("predict", {}, {}, "", options))
    save = by_path(describe_fields("save_table", {}, {}, "", options))

    assert csv["dataset"].suggestions == ["sales", "sales@2"]
    assert sql["datasource"].suggestions == ["warehouse"]
    assert predict["model_uri"].suggestions == ["models:/churn@live"]
    # save_table's `source` chooses what to save: its own choices, not data sources.
    assert save["source"].suggestions == ["data", "predictions"]
    assert sql["query"].multiline and not sql["table"].multiline


def test_errors_are_shown_on_their_field():
    errors = {
        "params.search.trials": "Input should be less than or equal to 200",
        "params.hyperparams": "unknown hyperparameter 'depth'",
        "params.features.1": "Input should be a valid string",
        "params.bogus": "is not a parameter of this step type",
        "type": "train_sklearn needs 'data', which no earlier step produces",
    }
    fields = describe_fields("train_sklearn", {"search": {"grid": {"a": [1]}}}, errors)
    found = by_path(fields)

    assert found["search.trials"].error == "Input should be less than or equal to 200"
    assert found["hyperparams"].error == "unknown hyperparameter 'depth'"
    assert found["features"].error == "item 2: Input should be a valid string"
    assert found["search"].error == "" and found["target"].error == ""
    assert unplaced_errors(fields, errors) == {
        "params.bogus": "is not a parameter of this step type",
        "type": "train_sklearn needs 'data', which no earlier step produces",
    }


def test_errors_are_found_without_the_params_prefix_too():
    fields = by_path(describe_fields("limit", {}, {"rows": "Field required"}))

    assert fields["rows"].error == "Field required"


def test_a_step_type_without_parameters_has_no_fields():
    assert describe_fields("noop", {}, {}, "") == []
    assert "no parameters" in render([])


# Reading the posted form


def test_numbers_are_read_as_int_or_float():
    data = QueryDict(
        "count=7&share=0.25&limit=3&ratio=0.5&since=2024-02-29&window.size=4"
        "&extra_window=true&extra_window.size=1e1"
    )

    params, errors = parse_params(CatalogueStep, data, "")

    assert errors == {}
    assert params["count"] == 7 and isinstance(params["count"], int)
    assert params["share"] == 0.25
    assert params["limit"] == 3
    assert params["ratio"] == 0.5
    assert params["window"]["size"] == 4
    assert params["since"] == "2024-02-29" and Catalogue.model_validate(params).since.day == 29
    assert params["extra_window"]["size"] == 10 and isinstance(params["extra_window"]["size"], int)
    assert Catalogue.model_validate(params).ratio == 0.5


def test_a_bad_number_is_passed_on_so_validation_names_its_field():
    params, errors = parse_params("bin_numeric", QueryDict("column=a&bins=many"), "")

    assert errors == {} and params["bins"] == "many"
    assert [str(error) for error in params_errors(3, "bin_numeric", params)] == [
        "step 3, params.bins: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_an_unticked_checkbox_is_false():
    params, _ = parse_params("predict", QueryDict(""), "s-")
    ticked, _ = parse_params("predict", QueryDict("s-probabilities=true"), "s-")

    assert params == {"probabilities": False}
    assert ticked == {"probabilities": True}


def test_empty_optional_fields_are_left_out_so_the_defaults_apply():
    data = QueryDict("s-columns=&s-how=any&s-other-step=x")

    params, errors = parse_params("drop_na", data, "s-")

    assert params == {"how": "any"} and errors == {}


def test_emptying_a_field_whose_default_is_a_value_gives_none():
    # random_state: int | None = 42, "random when empty": empty must not mean 42.
    params, _ = parse_params("train_sklearn", QueryDict("random_state="), "")

    assert params["random_state"] is None
    assert "test_size" not in params


def test_lists_are_read_from_text_from_a_select_and_from_json():
    data = QueryDict(
        "labels=low, ,high,&edges=0, 2.5,10&parts=year&parts=month"
        "&pick=a, b&pick:multiple=1&features=x , y"
    )

    params, errors = parse_params(CatalogueStep, data, "")

    assert errors == {}
    assert params["labels"] == ["low", "high"]
    assert params["edges"] == [0.0, 2.5, 10.0]
    assert params["parts"] == ["year", "month"]
    # From a multi-select each value is one column, commas and all.
    assert params["pick"] == ["a, b"]
    assert params["features"] == ["x", "y"]

    quoted, _ = parse_params(CatalogueStep, QueryDict('labels=["(0, 1]", "(1, 2]"]'), "")
    assert quoted["labels"] == ["(0, 1]", "(1, 2]"]


def test_a_bad_list_item_is_passed_on_so_validation_names_the_item():
    params, _ = parse_params("lag_features", {"lags": "1, soon", "columns": "a"}, "")

    assert params["lags"] == [1, "soon"]
    found = {e.field for e in params_errors(1, "lag_features", params)}
    assert "params.lags.1" in found
    fields = by_path(describe_fields("lag_features", params, {"params.lags.1": "not a number"}))
    assert fields["lags"].error == "item 2: not a number"


def test_json_is_parsed_and_malformed_json_names_the_field():
    good, errors = parse_params("train_sklearn", QueryDict('hyperparams={"max_depth": 3}'), "")
    bad, bad_errors = parse_params("train_sklearn", QueryDict('hyperparams={"max_depth" 3}'), "")

    assert good["hyperparams"] == {"max_depth": 3} and errors == {}
    assert bad_errors == {
        "params.hyperparams": "not valid JSON: Expecting ':' delimiter (line 1 column 14)"
    }
    # The text stays in the params, so the form shows it again to be fixed.
    fields = by_path(describe_fields("train_sklearn", bad, bad_errors))
    assert fields["hyperparams"].value == '{"max_depth" 3}'
    assert fields["hyperparams"].error.startswith("not valid JSON: Expecting ':'")


def test_a_nested_fieldset_is_read_only_when_ticked():
    fields = 's-search.kind=random&s-search.grid={"max_depth": [3, 6]}&s-search.trials=2'

    off, _ = parse_params("train_sklearn", QueryDict(fields), "s-")
    on, _ = parse_params("train_sklearn", QueryDict(f"{fields}&s-search=true"), "s-")

    assert "search" not in off
    assert on["search"] == {"kind": "random", "grid": {"max_depth": [3, 6]}, "trials": 2}


def test_a_non_optional_fieldset_is_always_read():
    params, _ = parse_params(CatalogueStep, QueryDict("window.size=8&window.centered=on"), "")

    assert params["window"] == {"size": 8, "centered": True}
    assert "extra_window" not in params


def test_texts_of_mixed_types_read_as_numbers_and_quoted_text_stays_text():
    by_id, _ = parse_params("csv", QueryDict("dataset=3"), "")
    by_name, _ = parse_params("csv", QueryDict('dataset="2024"'), "")
    named, _ = parse_params("csv", QueryDict("dataset=sales@2"), "")
    rows, _ = parse_params("rolling_features", QueryDict("window=24"), "")
    span, _ = parse_params("rolling_features", QueryDict("window=6h"), "")
    filled, _ = parse_params("fill_na", QueryDict("value=0"), "")
    flagged, _ = parse_params("fill_na", QueryDict("value=true"), "")

    assert (by_id["dataset"], by_name["dataset"], named["dataset"]) == (3, "2024", "sales@2")
    assert (rows["window"], span["window"]) == (24, "6h")
    assert (filled["value"], flagged["value"]) == (0, True)
    # A text that would read as a number is shown quoted, so it reads back as text.
    assert by_path(describe_fields("csv", {"dataset": "2024"}))["dataset"].value == '"2024"'
    assert by_path(describe_fields("csv", {"dataset": 3}))["dataset"].value == "3"


def test_choices_are_read_back_as_their_declared_values():
    params, _ = parse_params(CatalogueStep, QueryDict("colour=blue&verbose=false&shade="), "")
    unknown, _ = parse_params(CatalogueStep, QueryDict("mode=slow"), "")

    assert params["colour"] == "blue" and Catalogue.model_validate(params).colour is Colour.BLUE
    assert params["verbose"] is False and "shade" not in params
    assert unknown["mode"] == "slow"
    with pytest.raises(ValidationError, match="mode"):
        Catalogue.model_validate(unknown)


def test_a_plain_dict_is_read_like_a_posted_form():
    params, errors = parse_params(
        "sort", {"columns": ["b", "a"], "descending": "[true, false]", "missing": "first"}, ""
    )

    assert errors == {}
    assert params == {"columns": ["b", "a"], "descending": [True, False], "missing": "first"}


def test_a_plain_dict_may_hold_values_already_read():
    data = {"hyperparams": {"max_depth": 3}, "cv_folds": 5, "features": ["a, b"], "search": None}

    params, errors = parse_params("train_sklearn", data, "")

    assert errors == {}
    assert params["hyperparams"] == {"max_depth": 3} and params["cv_folds"] == 5
    assert params["features"] == ["a, b"] and "search" not in params


# Every registered step type

# A valid, representative params of every step type, with non-default values where it can.
REPRESENTATIVE = {
    "select_columns": {"columns": ["b", "a"]},
    "drop_columns": {"columns": ["id"]},
    "rename_columns": {"mapping": {"a": "alpha", "b": "beta"}},
    "drop_na": {"columns": ["a"], "how": "all"},
    "fill_na": {"columns": ["a", "b"], "strategy": "value", "value": 0},
    "drop_duplicates": {"columns": ["city"], "keep": "none"},
    "filter_rows": {
        "conditions": [
            {"column": "a", "op": ">", "value": 3},
            {"column": "city", "op": "in", "value": ["Oslo", "Paris"]},
        ],
        "match": "any",
    },
    "cast_types": {"types": {"a": "int", "when": "datetime"}, "errors": "coerce"},
    "sort": {"columns": ["b", "a"], "descending": [True, False], "missing": "first"},
    "limit": {"rows": 5, "end": "last"},
    "sample": {"fraction": 0.5, "replace": True, "random_state": 7},
    "replace_values": {"replacements": [{"old": "n/a", "new": None}], "columns": ["city"]},
    "clip": {"columns": ["a"], "lower_quantile": 0.01, "upper_quantile": 0.99},
    "log_transform": {"columns": ["a"], "shift": 1.5},
    "parse_dates": {
        "columns": ["when"],
        "format": "%d/%m/%Y",
        "errors": "coerce",
        "timezone": "Europe/Paris",
    },
    "date_parts": {"column": "when", "parts": ["year", "weekday"], "drop_original": True},
    "string_clean": {
        "columns": ["city"],
        "strip": False,
        "case": "lower",
        "blank_as_missing": True,
    },
    "bin_numeric": {
        "column": "a",
        "method": "edges",
        "edges": [0, 2.5, 10],
        "labels": ["(0, 2.5]", "high"],
        "output": "a_bin",
    },
    "derive_column": {
        "output": "ratio",
        "expression": {"op": "/", "left": {"column": "a"}, "right": {"const": 2}},
    },
    "flatten_json": {
        "columns": ["payload"],
        "separator": "_",
        "max_level": 1,
        "errors": "coerce",
        "keep_original": True,
    },
    "resample": {
        "on": "when",
        "frequency": "1D",
        "aggregations": {"a": ["sum", "max"], "b": "mean"},
    },
    "one_hot": {
        "columns": ["city"],
        "drop_first": True,
        "max_categories": 20,
        "include_missing": True,
    },
    "sql": {
        "datasource": "warehouse",
        "table": "sales",
        "columns": ["id", "amount"],
        "limit": 100,
        "version_query": "SELECT MAX(updated_at) FROM sales",
        "max_age": 3600,
    },
    "mongo": {
        "datasource": "lake",
        "collection": "events",
        "filter": {"kind": "click"},
        "projection": {"_id": 0},
        "sort": [["ts", -1]],
        "limit": 10,
        "version_query": [{"$count": "n"}],
        "max_age": 60,
    },
    "save_table": {
        "datasource": "warehouse",
        "table": "scores",
        "mode": "append",
        "source": "predictions",
    },
    "csv": {"dataset": "sales", "columns": ["a", "b"], "limit": 50},
    "sklearn_dataset": {"name": "wine"},
    "correlation_report": {"method": "spearman", "columns": ["a", "b"], "top": 3},
    "predict": {
        "model_uri": "models:/churn@champion",
        "prediction_column": "churn",
        "probabilities": False,
    },
    "register_model": {"name": "churn", "alias": "champion", "description": "Weekly retrain"},
    "save_dataset": {"name": "scored", "source": "predictions", "columns": ["id", "label"]},
    "train_sklearn": {
        "task": "classification",
        "estimator": "random_forest",
        "target": "label",
        "features": ["a", "b"],
        "test_size": 0.25,
        "random_state": None,
        "hyperparams": {"n_estimators": 50},
        "cv_folds": 3,
        "search": {
            "kind": "random",
            "grid": {"max_depth": [3, 6]},
            "trials": 2,
            "metric": "f1",
            "folds": 2,
        },
    },
    "lag_features": {"columns": ["a"], "lags": [1, 24], "order_by": "when", "group_by": ["city"]},
    "rolling_features": {
        "columns": ["a"],
        "window": "6h",
        "aggregations": ["mean", "max"],
        "order_by": "when",
    },
    "forecast_targets": {"column": "a", "timestamp": "when", "horizons": ["1h", "1d"]},
    "train_forecaster": {
        "estimator": "ridge",
        "features": ["a"],
        "hyperparams": {"alpha": 0.5},
        "test_size": 0.3,
        "random_state": 1,
    },
    "cluster": {
        "estimator": "k_means",
        "exclude": ["id"],
        "hyperparams": {"n_clusters": 3},
        "output_column": "segment",
    },
    "detect_anomalies": {
        "estimator": "isolation_forest",
        "features": ["a", "b"],
        "label_column": "label",
        "output_column": "flag",
    },
    "reduce_dimensions": {"estimator": "pca", "n_components": 0.9, "mode": "replace"},
    "sleep": {"seconds": 0.5, "rows": 2},
    "noop": {},
}


@pytest.fixture
def references(make_dataset):
    """The dataset and data sources the representative params name."""
    make_dataset(pd.DataFrame({"a": [1, 2], "b": [3, 4]}), "sales")
    DataSource.objects.create(name="warehouse", kind="mysql", host="db", allow_writes=True)
    DataSource.objects.create(name="lake", kind="mongodb", host="mongo")


def test_every_registered_step_type_has_representative_params():
    missing = sorted(set(STEP_TYPES) - set(REPRESENTATIVE))

    assert not missing, f"add valid params for {missing} to REPRESENTATIVE"


@pytest.mark.parametrize("slug", sorted(STEP_TYPES))
@pytest.mark.parametrize("columns", [[], COLUMNS], ids=["no-cache", "cached-columns"])
def test_rendered_params_read_back_as_the_same_params(slug, columns, references):
    params = REPRESENTATIVE[slug]

    parsed, errors = submitted(slug, params, "step-2-", ParamOptions(columns=columns))

    assert errors == {}
    assert validated(slug, parsed) == validated(slug, params)


def without_required_fields(cls) -> bool:
    return not any(info.is_required() for info in cls.Params.model_fields.values())


@pytest.mark.parametrize(
    "slug", sorted(slug for slug, cls in STEP_TYPES.items() if without_required_fields(cls))
)
def test_rendered_defaults_read_back_as_the_defaults(slug):
    parsed, errors = submitted(slug, {})

    assert errors == {}
    try:
        expected = validated(slug, {})
    except ValidationError:
        # The declaration's own defaults need a choice (fill_na's value, sample's size):
        # the form gives the same errors as no params at all.
        assert params_errors(1, slug, parsed) == params_errors(1, slug, {})
    else:
        assert validated(slug, parsed) == expected


@pytest.mark.parametrize("slug", sorted(STEP_TYPES))
def test_every_step_type_renders_an_input_for_every_field(slug):
    options = ParamOptions(columns=COLUMNS, datasets=["sales"], sources=["warehouse"])
    fields = describe_fields(slug, REPRESENTATIVE[slug], {}, "step-5-", options)

    html = render(fields)

    ids = re.findall(r' id="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "ids are unique"
    for item in by_path(fields).values():
        assert item.name.startswith("step-5-")
        if item.widget == "fieldset" and not item.optional:
            assert f"<legend>{item.label}</legend>" in html
            continue
        assert re.search(rf'<(input|select|textarea) [^>]*name="{re.escape(item.name)}"', html)
        assert f'<label for="{item.id}">' in html
        assert f'id="{item.id}"' in html
    for described in re.findall(r'aria-describedby="([^"]+)"', html):
        assert all(f'id="{target}"' in html for target in described.split())


# The template


def test_the_template_renders_bounds_choices_and_help():
    fields = describe_fields(
        "bin_numeric", {"column": "a"}, {}, "s-", ParamOptions(columns=COLUMNS)
    )

    html = render(fields)

    assert (
        '<input type="number" id="id_s-bins" name="s-bins" value="4" min="2" max="100" '
        'step="1" aria-describedby="id_s-bins-help">' in html
    )
    assert '<option value="equal_width" selected>equal_width</option>' in html
    assert 'list="id_s-column-options"' in html
    assert '<datalist id="id_s-column-options"><option value="id"></option>' in html
    assert re.search(
        r'<input type="text" id="id_s-column" name="s-column" value="a"[^>]* required', html
    )
    assert '<p class="field-help" id="id_s-bins-help">Number of bins' in html


def test_an_error_is_shown_next_to_its_field_with_a_word():
    errors = {"params.rows": "Input should be greater than 0"}
    html = render(describe_fields("limit", {"rows": 0}, errors, "s-"))

    assert (
        '<p class="field-error" id="id_s-rows-error" role="alert"><strong>Error:</strong> '
        "Input should be greater than 0</p>" in html
    )
    assert 'aria-describedby="id_s-rows-help id_s-rows-error" aria-invalid="true"' in html


def test_other_errors_are_listed_above_the_fields():
    html = render([], form_errors=["params.bogus: is not a parameter of this step type"])

    assert 'class="param-form-errors field-error" role="alert"' in html
    assert "<li>params.bogus: is not a parameter of this step type</li>" in html


def test_an_optional_fieldset_has_a_checkbox_in_its_legend():
    html = render(describe_fields("train_sklearn", {}, {}, "s-"))

    assert re.search(
        r'<legend><input type="checkbox" id="id_s-search" name="s-search" value="true"[^>]*> '
        r'<label for="id_s-search">Search</label></legend>',
        html,
    )
    grid = re.search(r'<textarea id="id_s-search.grid" name="s-search.grid"[^>]*>', html)
    assert grid and "required" not in grid.group()


def test_a_column_multi_select_keeps_the_chosen_order_and_marks_itself():
    fields = describe_fields(
        "sort", {"columns": ["b", "a"]}, {}, "s-", ParamOptions(["a", "b", "c"])
    )

    html = render(fields)

    assert '<input type="hidden" name="s-columns:multiple" value="1">' in html
    assert re.search(
        r'<option value="b" selected>b</option><option value="a" selected>a</option>'
        r'<option value="c">c</option>',
        html,
    )
    assert parse_params("sort", BrowserForm(html).data, "s-").params["columns"] == ["b", "a"]
