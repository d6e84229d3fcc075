import numpy as np
import pandas as pd
import pytest

from pipelines import runs
from pipelines.choices import RunStatus
from pipelines.tests.helpers import apply, rejected, rows


def frame():
    return pd.DataFrame(
        {
            "item": ["tea", "cake", "tea", "jam", None],
            "price": [2.0, 3.5, 2.0, np.nan, 1.0],
            "qty": [1, 2, 1, 5, 3],
        }
    )


# select_columns / drop_columns


def test_select_columns_keeps_only_listed_columns_in_that_order():
    data, log = apply("select_columns", frame(), columns=["qty", "item"])

    assert list(data.columns) == ["qty", "item"]
    assert data["qty"].tolist() == [1, 2, 1, 5, 3]
    assert log == ["5x3 -> 5x2"]


def test_drop_columns_removes_listed_columns():
    data, _ = apply("drop_columns", frame(), columns=["price"])

    assert list(data.columns) == ["item", "qty"]
    assert len(data) == 5


@pytest.mark.parametrize("slug", ["select_columns", "drop_columns"])
def test_column_steps_name_the_missing_column(slug):
    with pytest.raises(
        ValueError,
        match=r"^columns: column\(s\) \['colour'\] not found; available: item, price, qty",
    ):
        apply(slug, frame(), columns=["item", "colour"])


@pytest.mark.parametrize("slug", ["select_columns", "drop_columns"])
def test_column_steps_need_at_least_one_column(slug):
    errors = rejected(slug, columns=[])

    assert errors[0]["loc"] == ("columns",)


# rename_columns


def test_rename_columns_renames_and_keeps_values():
    data, _ = apply("rename_columns", frame(), mapping={"qty": "quantity", "item": "product"})

    assert list(data.columns) == ["product", "price", "quantity"]
    assert data["quantity"].tolist() == [1, 2, 1, 5, 3]


def test_rename_columns_names_the_missing_column():
    with pytest.raises(ValueError, match=r"^mapping: column\(s\) \['colour'\] not found"):
        apply("rename_columns", frame(), mapping={"colour": "color"})


def test_rename_columns_refuses_to_create_duplicate_names():
    with pytest.raises(
        ValueError, match=r"^mapping: renaming creates duplicate column\(s\) \['qty'\]"
    ):
        apply("rename_columns", frame(), mapping={"price": "qty"})


def test_rename_columns_rejects_blank_new_names():
    errors = rejected("rename_columns", mapping={"qty": "  "})

    assert any("mapping: new column names must not be blank" in e["msg"] for e in errors)


# drop_na


def test_drop_na_drops_rows_with_any_missing_value_and_renumbers():
    data, _ = apply("drop_na", frame())

    assert data["item"].tolist() == ["tea", "cake", "tea"]
    assert data.index.tolist() == [0, 1, 2]


def test_drop_na_looks_only_at_listed_columns():
    data, _ = apply("drop_na", frame(), columns=["price"])

    assert rows(data) == [["tea", 2.0, 1], ["cake", 3.5, 2], ["tea", 2.0, 1], [None, 1.0, 3]]


def test_drop_na_with_empty_column_list_looks_at_every_column():
    data, _ = apply("drop_na", frame(), columns=[])

    assert len(data) == 3


def test_drop_na_how_all_drops_only_fully_missing_rows():
    data = pd.DataFrame({"a": [1, None, None], "b": [None, None, 2]})

    kept, _ = apply("drop_na", data, how="all")

    assert rows(kept) == [[1.0, None], [None, 2.0]]


def test_drop_na_names_the_missing_column():
    with pytest.raises(ValueError, match=r"^columns: column\(s\) \['colour'\] not found"):
        apply("drop_na", frame(), columns=["colour"])


# fill_na


@pytest.mark.parametrize(
    "strategy, filled",
    [
        ("mean", [2.0, 3.5, 2.0, 2.125, 1.0]),
        ("median", [2.0, 3.5, 2.0, 2.0, 1.0]),
        ("mode", [2.0, 3.5, 2.0, 2.0, 1.0]),
        ("ffill", [2.0, 3.5, 2.0, 2.0, 1.0]),
        ("bfill", [2.0, 3.5, 2.0, 1.0, 1.0]),
    ],
)
def test_fill_na_fills_numeric_column_by_strategy(strategy, filled):
    data, _ = apply("fill_na", frame(), columns=["price"], strategy=strategy)

    assert data["price"].tolist() == filled
    assert data["item"].isna().sum() == 1  # other columns untouched


def test_fill_na_value_fills_every_column_when_none_listed():
    data, _ = apply("fill_na", frame().drop(columns="item"), value=0)

    assert data["price"].tolist() == [2.0, 3.5, 2.0, 0.0, 1.0]


def test_fill_na_mode_fills_text_column_with_most_common_value():
    data, _ = apply("fill_na", frame(), columns=["item"], strategy="mode")

    assert data["item"].tolist() == ["tea", "cake", "tea", "jam", "tea"]


def test_fill_na_does_not_change_the_input_frame():
    original = frame()

    apply("fill_na", original, value=0)

    assert original["price"].isna().sum() == 1


def test_fill_na_mean_of_text_column_names_the_column():
    with pytest.raises(ValueError, match=r"^strategy: mean needs a numeric column, 'item' is not"):
        apply("fill_na", frame(), strategy="mean")


def test_fill_na_value_strategy_needs_a_value():
    errors = rejected("fill_na", strategy="value")

    assert any("value: required when strategy is 'value'" in e["msg"] for e in errors)


def test_fill_na_names_the_missing_column():
    with pytest.raises(ValueError, match=r"^columns: column\(s\) \['colour'\] not found"):
        apply("fill_na", frame(), columns=["colour"], value=0)


# drop_duplicates


@pytest.mark.parametrize(
    "keep, qty",
    [("first", [1, 2, 5, 3]), ("last", [2, 1, 5, 3]), ("none", [2, 5, 3])],
)
def test_drop_duplicates_keeps_first_last_or_none(keep, qty):
    data, _ = apply("drop_duplicates", frame(), keep=keep)

    assert data["qty"].tolist() == qty
    assert data.index.tolist() == list(range(len(qty)))


def test_drop_duplicates_compares_only_listed_columns():
    data = pd.DataFrame({"k": ["a", "a", "b"], "v": [1, 2, 3]})

    kept, _ = apply("drop_duplicates", data, columns=["k"], keep="last")

    assert rows(kept) == [["a", 2], ["b", 3]]


def test_drop_duplicates_with_empty_column_list_compares_every_column():
    data, _ = apply("drop_duplicates", frame(), columns=[])

    assert data["qty"].tolist() == [1, 2, 5, 3]


def test_drop_duplicates_names_the_missing_column():
    with pytest.raises(ValueError, match=r"^columns: column\(s\) \['colour'\] not found"):
        apply("drop_duplicates", frame(), columns=["colour"])


# filter_rows


@pytest.mark.parametrize(
    "column, op, value, items",
    [
        ("item", "==", "tea", ["tea", "tea"]),
        ("item", "!=", "tea", ["cake", "jam", None]),
        ("qty", ">", 2, ["jam", None]),
        ("qty", ">=", 2, ["cake", "jam", None]),
        ("price", "<", 2, [None]),
        ("price", "<=", 2, ["tea", "tea", None]),
        ("item", "in", ["jam", "cake"], ["cake", "jam"]),
        ("item", "not_in", ["tea", "jam"], ["cake", None]),
        ("price", "is_null", None, ["jam"]),
        ("item", "not_null", None, ["tea", "cake", "tea", "jam"]),
        ("item", "contains", "ea", ["tea", "tea"]),
        ("qty", "contains", 5, ["jam"]),
    ],
)
def test_filter_rows_operator(column, op, value, items):
    condition = {"column": column, "op": op}
    if value is not None:
        condition["value"] = value

    data, _ = apply("filter_rows", frame(), conditions=[condition])

    assert data["item"].replace({np.nan: None}).tolist() == items
    assert data.index.tolist() == list(range(len(items)))


def test_filter_rows_keeps_rows_matching_all_conditions():
    conditions = [
        {"column": "item", "op": "==", "value": "tea"},
        {"column": "qty", "op": ">", "value": 0},
        {"column": "price", "op": "<", "value": 3},
    ]

    data, log = apply("filter_rows", frame(), conditions=conditions)

    assert data["item"].tolist() == ["tea", "tea"]
    assert log == ["5x3 -> 2x3"]


def test_filter_rows_keeps_rows_matching_any_condition():
    conditions = [
        {"column": "item", "op": "==", "value": "cake"},
        {"column": "price", "op": "is_null"},
        {"column": "qty", "op": ">=", "value": 3},
    ]

    data, _ = apply("filter_rows", frame(), conditions=conditions, match="any")

    assert data["qty"].tolist() == [2, 5, 3]


def test_filter_rows_any_with_missing_values_keeps_rows_matched_elsewhere():
    conditions = [
        {"column": "item", "op": "contains", "value": "zzz"},
        {"column": "qty", "op": "==", "value": 3},
    ]

    data, _ = apply("filter_rows", frame(), conditions=conditions, match="any")

    assert data["qty"].tolist() == [3]


@pytest.mark.parametrize(
    "value", ["__import__('os').system('echo hacked')", "qty > 0", "item == item"]
)
def test_filter_rows_compares_code_like_values_as_plain_strings(value):
    data = frame()
    data.loc[1, "item"] = value

    kept, _ = apply(
        "filter_rows", data, conditions=[{"column": "item", "op": "==", "value": value}]
    )

    assert kept["item"].tolist() == [value]


def test_filter_rows_does_not_evaluate_a_column_name():
    with pytest.raises(
        ValueError, match=r"^conditions: column\(s\) \[\"__import__\('os'\)\"\] not found"
    ):
        apply("filter_rows", frame(), conditions=[{"column": "__import__('os')", "op": "not_null"}])


def test_filter_rows_uncomparable_value_names_column_and_operator():
    with pytest.raises(
        ValueError,
        match=r"^conditions: cannot compare column 'qty' \(int64\) with 'many' using '>'",
    ):
        apply("filter_rows", frame(), conditions=[{"column": "qty", "op": ">", "value": "many"}])


def test_filter_rows_names_the_missing_column():
    with pytest.raises(ValueError, match=r"^conditions: column\(s\) \['colour'\] not found"):
        apply("filter_rows", frame(), conditions=[{"column": "colour", "op": "==", "value": 1}])


@pytest.mark.parametrize(
    "condition, message",
    [
        ({"column": "qty", "op": "in", "value": 3}, "value: operator 'in' needs a list"),
        ({"column": "qty", "op": "not_in", "value": "3"}, "value: operator 'not_in' needs a list"),
        ({"column": "qty", "op": ">"}, "value: operator '>' needs a value"),
        ({"column": "qty", "op": "like", "value": 3}, "Input should be '=='"),
        ({"column": "qty", "op": "==", "value": 3, "code": "x"}, "Extra inputs"),
    ],
)
def test_filter_rows_rejects_bad_conditions(condition, message):
    errors = rejected("filter_rows", conditions=[condition])

    assert errors[0]["loc"][:2] == ("conditions", 0)
    assert any(message in e["msg"] for e in errors)


def test_filter_rows_needs_a_condition():
    errors = rejected("filter_rows", conditions=[])

    assert errors[0]["loc"] == ("conditions",)


# cast_types


def test_cast_types_converts_to_each_type():
    data = pd.DataFrame(
        {
            "i": ["1", "2", None],
            "f": ["1.5", "2", "3"],
            "s": [1, 2, 3],
            "b": [1, 0, None],
            "d": ["2024-01-31", "2024-02-29", None],
            "c": ["x", "y", "x"],
        }
    )
    types = {"i": "int", "f": "float", "s": "str", "b": "bool", "d": "datetime", "c": "category"}

    cast, _ = apply("cast_types", data, types=types)

    assert {column: str(dtype) for column, dtype in cast.dtypes.items()} == {
        "i": "Int64",
        "f": "float64",
        "s": "str",
        "b": "boolean",
        "d": "datetime64[us]",
        "c": "category",
    }
    assert cast["i"].tolist()[:2] == [1, 2] and cast["i"].isna().tolist() == [False, False, True]
    assert cast["f"].tolist() == [1.5, 2.0, 3.0]
    assert cast["s"].tolist() == ["1", "2", "3"]
    assert cast["b"].tolist()[:2] == [True, False]
    assert cast["d"].dt.day.tolist()[:2] == [31, 29]
    assert list(cast["c"].cat.categories) == ["x", "y"]


def test_cast_types_error_names_the_column_and_type():
    data = pd.DataFrame({"qty": ["1", "two"]})

    with pytest.raises(ValueError, match=r"^types\.qty: cannot convert to int: .*'two'"):
        apply("cast_types", data, types={"qty": "int"})


@pytest.mark.parametrize(
    "target, values, converted",
    [
        ("int", ["1", "two", "3"], [1, None, 3]),
        ("int", [1.0, 2.5, 3.0], [1, None, 3]),
        ("float", ["1.5", "n/a", "3"], [1.5, None, 3.0]),
        ("bool", [True, "maybe", False], [True, None, False]),
    ],
)
def test_cast_types_coerce_turns_unconvertible_values_into_missing(target, values, converted):
    data = pd.DataFrame({"v": values})

    cast, _ = apply("cast_types", data, types={"v": target}, errors="coerce")

    assert rows(cast) == [[value] for value in converted]


def test_cast_types_coerce_turns_bad_dates_into_missing():
    data = pd.DataFrame({"d": ["2024-01-31", "someday"]})

    cast, _ = apply("cast_types", data, types={"d": "datetime"}, errors="coerce")

    assert cast["d"].isna().tolist() == [False, True]


def test_cast_types_names_the_missing_column():
    with pytest.raises(ValueError, match=r"^types: column\(s\) \['colour'\] not found"):
        apply("cast_types", frame(), types={"colour": "str"})


def test_cast_types_rejects_unknown_type_naming_the_column():
    errors = rejected("cast_types", types={"qty": "decimal"})

    assert errors[0]["loc"] == ("types", "qty")


# through a pipeline run


@pytest.mark.django_db
def test_preprocessing_steps_chain_in_a_pipeline_run(make_dataset, make_pipeline):
    make_dataset(frame(), "shop")
    pipeline = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "shop"}},
            {"type": "drop_duplicates"},
            {"type": "fill_na", "params": {"columns": ["price"], "strategy": "median"}},
            {
                "type": "filter_rows",
                "params": {"conditions": [{"column": "item", "op": "not_null"}]},
            },
            {"type": "rename_columns", "params": {"mapping": {"qty": "quantity"}}},
            {"type": "cast_types", "params": {"types": {"quantity": "float"}}},
            {"type": "drop_columns", "params": {"columns": ["price"]}},
        ]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    shapes = [(s.rows_out, s.columns_out) for s in run.step_runs.order_by("order")]
    assert shapes == [(5, 3), (4, 3), (4, 3), (3, 3), (3, 3), (3, 3), (3, 2)]


@pytest.mark.django_db
def test_preprocessing_error_fails_the_run_with_the_column_name(make_dataset, make_pipeline):
    make_dataset(frame(), "shop")
    pipeline = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "shop"}},
            {"type": "select_columns", "name": "Pick", "params": {"columns": ["colour"]}},
        ]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.FAILED
    assert "step 2 (Pick) failed" in run.error_message
    assert "columns: column(s) ['colour'] not found" in run.error_message
