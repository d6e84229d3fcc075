import json

import numpy as np
import pandas as pd
import pytest

from pipelines import runs
from pipelines.choices import RunStatus
from pipelines.tests.helpers import apply, apply_with_summary, bundled, rejected_texts, rows


def iris():
    frame = bundled("iris")
    return frame.assign(species=frame["target"].map({0: "setosa", 1: "versicolor", 2: "virginica"}))


def hourly_readings(hours=72):
    """Three days of hourly meter readings with a fixed seed, times as text like a CSV."""
    rng = np.random.default_rng(7)
    times = pd.date_range("2024-03-01", periods=hours, freq="h")
    return pd.DataFrame(
        {
            "time": times.strftime("%Y-%m-%d %H:%M"),
            "kwh": rng.gamma(2.0, 1.5, size=hours).round(3),
            "site": rng.choice(["north", "south"], size=hours),
        }
    )


# sort


def test_sort_orders_rows_largest_first_keeping_ties_in_their_order():
    data = iris().assign(row=range(150))

    ordered, _ = apply("sort", data, columns=["petal length (cm)"], descending=True)

    assert ordered["petal length (cm)"].head(5).tolist() == [6.9, 6.7, 6.7, 6.6, 6.4]
    assert ordered["row"].head(5).tolist() == [118, 117, 122, 105, 131]
    assert ordered.index.tolist() == list(range(150))


def test_sort_takes_a_direction_per_column_and_places_missing_values():
    data = pd.DataFrame({"team": ["b", "a", "b", "a"], "score": [1.0, None, 3.0, 2.0]})

    ordered, _ = apply(
        "sort", data, columns=["team", "score"], descending=[False, True], missing="first"
    )

    assert rows(ordered) == [["a", None], ["a", 2.0], ["b", 3.0], ["b", 1.0]]


def test_sort_needs_one_direction_per_column():
    errors = rejected_texts("sort", columns=["a", "b"], descending=[True])

    assert errors == ["params.descending: give one value per column (2), not 1"]


def test_sort_names_the_missing_column():
    with pytest.raises(ValueError, match=r"^columns: column\(s\) \['colour'\] not found"):
        apply("sort", iris(), columns=["colour"])


def test_sort_explains_a_column_of_mixed_values():
    data = pd.DataFrame({"size": pd.Series(["M", 1, "S"], dtype=object)})

    with pytest.raises(
        ValueError, match=r"^columns: cannot order mixed values \('<' not supported"
    ):
        apply("sort", data, columns=["size"])


# limit / sample


@pytest.mark.parametrize("end, targets", [("first", [0, 0, 0]), ("last", [2, 2, 2])])
def test_limit_keeps_first_or_last_rows(end, targets):
    data, _ = apply("limit", iris(), rows=3, end=end)

    assert data["target"].tolist() == targets
    assert data.index.tolist() == [0, 1, 2]


def test_limit_needs_a_positive_row_count():
    assert rejected_texts("limit", rows=0) == ["params.rows: Input should be greater than 0"]


def test_sample_draws_the_same_rows_for_the_same_seed_in_their_original_order():
    data = iris().assign(row=range(150))

    first, _ = apply("sample", data, n=20, random_state=3)
    again, _ = apply("sample", data, n=20, random_state=3)
    other, _ = apply("sample", data, n=20, random_state=4)

    assert len(first) == 20
    assert first["row"].tolist() == again["row"].tolist() != other["row"].tolist()
    assert first["row"].is_monotonic_increasing
    assert first.index.tolist() == list(range(20))


def test_sample_by_fraction_and_with_replacement():
    by_fraction, _ = apply("sample", iris(), fraction=0.2)
    bootstrap, _ = apply("sample", iris().assign(row=range(150)), n=300, replace=True)

    assert len(by_fraction) == 30
    assert len(bootstrap) == 300
    assert bootstrap["row"].duplicated().any()


def test_sample_larger_than_the_data_needs_replacement():
    with pytest.raises(ValueError, match=r"^n: cannot draw 200 rows from 150 without replacement"):
        apply("sample", iris(), n=200)


@pytest.mark.parametrize("params", [{}, {"n": 5, "fraction": 0.5}])
def test_sample_needs_either_n_or_fraction(params):
    assert rejected_texts("sample", **params) == ["params.n: give either n or fraction"]


# replace_values


def test_replace_values_swaps_original_values_and_counts_them():
    data = pd.DataFrame({"status": ["new", "open", "n/a", None, "open"], "code": [1, 2, -1, 3, -1]})
    replacements = [
        {"old": "new", "new": "open"},
        {"old": "open", "new": "active"},
        {"old": "n/a", "new": None},
        {"old": None, "new": "unknown"},
        {"old": -1, "new": None},
    ]

    replaced, summary = apply_with_summary("replace_values", data, replacements=replacements)

    # "new" becomes "open", not "active": every swap reads the original value.
    assert rows(replaced) == [
        ["open", 1.0],
        ["active", 2.0],
        [None, None],
        ["unknown", 3.0],
        ["active", None],
    ]
    assert summary == {"replaced": {"status": 5, "code": 2}}


def test_replace_values_puts_numbers_into_a_text_column():
    data = pd.DataFrame({"size": ["S", "M", "L"], "label": ["S", "M", "L"]})

    replaced, _ = apply(
        "replace_values",
        data,
        columns=["size"],
        replacements=[{"old": "S", "new": 1}, {"old": "M", "new": 2}, {"old": "L", "new": 3}],
    )

    assert replaced["size"].tolist() == [1, 2, 3]
    assert replaced["size"].dtype == "int64"
    assert replaced["label"].tolist() == ["S", "M", "L"]


def test_replace_values_names_the_missing_column():
    with pytest.raises(ValueError, match=r"^columns: column\(s\) \['colour'\] not found"):
        apply("replace_values", iris(), columns=["colour"], replacements=[{"old": 1, "new": 2}])


def test_replace_values_refuses_a_value_replaced_twice():
    errors = rejected_texts(
        "replace_values", replacements=[{"old": "a", "new": "b"}, {"old": "a", "new": "c"}]
    )

    assert errors == ["params.replacements: value 'a' is replaced twice"]


# clip


def test_clip_by_fixed_bounds():
    data = pd.DataFrame({"v": [-5.0, 0.5, 7.0, None], "w": [1, 2, 3, 4]})

    clipped, summary = apply_with_summary("clip", data, columns=["v", "w"], lower=0, upper=2)

    assert rows(clipped) == [[0.0, 1], [0.5, 2], [2.0, 2], [None, 2]]
    assert summary == {
        "bounds": {"v": [0.0, 2.0], "w": [0.0, 2.0]},
        "clipped": {"v": 2, "w": 2},
    }


def test_clip_by_quantiles_bounds_each_column_by_its_own_quantiles():
    data = bundled("diabetes")

    clipped, summary = apply_with_summary(
        "clip", data, columns=["target"], lower_quantile=0.05, upper_quantile=0.95
    )

    assert clipped["target"].min() == pytest.approx(51.0)
    assert clipped["target"].max() == pytest.approx(282.9)
    assert summary["bounds"]["target"] == pytest.approx([51.0, 282.9])
    assert summary["clipped"] == {"target": 21 + 23}
    assert clipped["bmi"].equals(data["bmi"])


def test_clip_with_only_an_upper_quantile_leaves_low_values():
    clipped, summary = apply_with_summary(
        "clip", bundled("diabetes"), columns=["target"], upper_quantile=0.5
    )

    assert clipped["target"].min() == 25.0
    assert summary["bounds"]["target"][0] is None


def test_clip_refuses_text_columns():
    with pytest.raises(ValueError, match=r"^columns: column\(s\) \['species'\] are not numeric"):
        apply("clip", iris(), columns=["species"], lower=0)


@pytest.mark.parametrize(
    "params, error",
    [
        (
            {"lower": 0, "upper_quantile": 0.9},
            "params.lower: give fixed bounds (lower, upper) or quantiles "
            "(lower_quantile, upper_quantile), one kind only",
        ),
        (
            {},
            "params.lower: give fixed bounds (lower, upper) or quantiles "
            "(lower_quantile, upper_quantile), one kind only",
        ),
        ({"lower": 5, "upper": 1}, "params.lower: must be below upper"),
        (
            {"lower_quantile": 0.9, "upper_quantile": 0.1},
            "params.lower_quantile: must be below upper_quantile",
        ),
        ({"upper_quantile": 1.5}, "params.upper_quantile: Input should be less than or equal to 1"),
    ],
)
def test_clip_rejects_bad_bounds(params, error):
    assert rejected_texts("clip", columns=["v"], **params) == [error]


# log_transform


def test_log_transform_takes_log1p_with_an_optional_shift():
    data = pd.DataFrame({"count": [0, 9, 99], "offset": [-1.0, 0.0, 1.0]})

    logged, _ = apply("log_transform", data, columns=["count"])
    shifted, _ = apply("log_transform", data, columns=["offset"], shift=1)

    assert logged["count"].tolist() == pytest.approx([0.0, np.log(10), np.log(100)])
    assert shifted["offset"].tolist() == pytest.approx([0.0, np.log(2), np.log(3)])


def test_log_transform_refuses_negative_values_and_says_which_shift_would_do():
    data = bundled("diabetes")

    with pytest.raises(
        ValueError,
        match=r"^columns: 'bmi' has values below 0 \(lowest -0.0902753\) after a shift of 0; "
        r"set shift to at least 0.0902753",
    ):
        apply("log_transform", data, columns=["bmi"])

    shifted, _ = apply("log_transform", data, columns=["bmi"], shift=0.1)
    assert shifted["bmi"].min() == pytest.approx(np.log1p(data["bmi"].min() + 0.1))


def test_log_transform_refuses_a_negative_shift():
    assert rejected_texts("log_transform", columns=["v"], shift=-1) == [
        "params.shift: Input should be greater than or equal to 0"
    ]


# parse_dates


def test_parse_dates_infers_iso_dates_and_keeps_missing_ones():
    data = pd.DataFrame({"when": ["2024-01-31 10:00", "2024-02-29 23:30", None]})

    parsed, summary = apply_with_summary("parse_dates", data, columns=["when"])

    assert str(parsed["when"].dtype).startswith("datetime64")
    assert parsed["when"].dt.day.tolist()[:2] == [31, 29]
    assert parsed["when"].isna().tolist() == [False, False, True]
    assert summary == {"unparsed": {"when": 0}}


def test_parse_dates_with_a_format_reads_day_first_text_and_digit_dates():
    data = pd.DataFrame({"text": ["03/04/2024", "31/12/2024"], "digits": [20240403, 20241231]})

    by_text, _ = apply("parse_dates", data, columns=["text"], format="%d/%m/%Y")
    by_digits, _ = apply("parse_dates", data, columns=["digits"], format="%Y%m%d")

    assert by_text["text"].dt.strftime("%Y-%m-%d").tolist() == ["2024-04-03", "2024-12-31"]
    assert by_digits["digits"].dt.strftime("%Y-%m-%d").tolist() == ["2024-04-03", "2024-12-31"]


def test_parse_dates_localizes_naive_times_and_converts_times_with_an_offset():
    data = pd.DataFrame({"naive": ["2024-07-01 12:00"], "aware": ["2024-07-01T12:00:00+00:00"]})

    parsed, _ = apply("parse_dates", data, columns=["naive", "aware"], timezone="Europe/Paris")

    assert str(parsed["naive"].dt.tz) == "Europe/Paris"
    assert parsed["naive"].dt.hour.tolist() == [12]
    assert parsed["aware"].dt.hour.tolist() == [14]  # 12:00 UTC is 14:00 in Paris in July


def test_parse_dates_error_names_the_column_and_the_value():
    data = pd.DataFrame({"when": ["2024-01-31", "someday"]})

    with pytest.raises(
        ValueError,
        match=r"^columns: cannot parse 'when' as dates: time data \"someday\" doesn't match "
        r"format .*\(errors 'coerce' makes such values missing\)$",
    ):
        apply("parse_dates", data, columns=["when"])


def test_parse_dates_coerce_makes_bad_values_missing_and_counts_them():
    data = pd.DataFrame({"when": ["2024-01-31", "someday", None, "31/31/2024"]})

    parsed, summary = apply_with_summary("parse_dates", data, columns=["when"], errors="coerce")

    assert parsed["when"].isna().tolist() == [False, True, True, True]
    assert summary == {"unparsed": {"when": 2}}


def test_parse_dates_rejects_an_unknown_time_zone():
    assert rejected_texts("parse_dates", columns=["when"], timezone="Mars/Olympus") == [
        "params.timezone: unknown time zone 'Mars/Olympus'; use a name such as "
        "'Europe/Paris' or 'UTC'"
    ]


# date_parts


def test_date_parts_adds_number_columns_and_can_drop_the_original():
    data = pd.DataFrame({"when": pd.to_datetime(["2024-02-29 23:30", None]), "v": [1, 2]})
    parts = ["year", "quarter", "month", "day", "weekday", "hour", "minute"]

    added, _ = apply("date_parts", data, column="when", parts=parts, drop_original=True)

    assert list(added.columns) == ["v", *(f"when_{part}" for part in parts)]
    # 29 February 2024 was a Thursday: weekday 3, counting Monday as 0.
    assert rows(added) == [
        [1, 2024, 1, 2, 29, 3, 23, 30],
        [2, None, None, None, None, None, None, None],
    ]


def test_date_parts_default_parts():
    data = pd.DataFrame({"when": pd.to_datetime(["2024-03-01"])})

    added, _ = apply("date_parts", data, column="when")

    assert list(added.columns) == ["when", "when_year", "when_month", "when_day", "when_weekday"]


def test_date_parts_needs_a_datetime_column():
    data = pd.DataFrame({"when": ["2024-03-01"]})

    with pytest.raises(
        ValueError,
        match=r"^column: 'when' is not a datetime column \(str\); parse it with parse_dates first",
    ):
        apply("date_parts", data, column="when")


def test_date_parts_rejects_an_unknown_part():
    errors = rejected_texts("date_parts", column="when", parts=["century"])

    assert errors[0].startswith("params.parts.0: Input should be 'year'")


# string_clean


def test_string_clean_strips_and_lowercases_every_text_column():
    data = pd.DataFrame(
        {"name": ["  Ann ", "BOB", None], "city": ["Oslo ", " ROME", "x"], "n": [1, 2, 3]}
    )

    cleaned, _ = apply("string_clean", data, case="lower")

    assert rows(cleaned) == [["ann", "oslo", 1], ["bob", "rome", 2], [None, "x", 3]]


def test_string_clean_upper_case_blank_as_missing_on_listed_columns():
    data = pd.DataFrame({"code": [" ab ", "   ", "Cd"], "note": [" keep ", "", "x"]})

    cleaned, _ = apply("string_clean", data, columns=["code"], case="upper", blank_as_missing=True)

    assert rows(cleaned) == [["AB", " keep "], [None, ""], ["CD", "x"]]


def test_string_clean_refuses_a_number_column():
    with pytest.raises(ValueError, match=r"^columns: column\(s\) \['target'\] are not text"):
        apply("string_clean", iris(), columns=["species", "target"])


# bin_numeric


def test_bin_numeric_equal_width_names_bins_by_their_range():
    binned, summary = apply_with_summary("bin_numeric", iris(), column="sepal length (cm)", bins=4)

    assert summary["edges"] == pytest.approx([4.3, 5.2, 6.1, 7.0, 7.9])
    assert summary["rows_per_bin"] == {
        "[4.3, 5.2]": 45,
        "(5.2, 6.1]": 50,
        "(6.1, 7]": 43,
        "(7, 7.9]": 12,
    }
    assert binned["sepal length (cm)_bin"].iloc[0] == "[4.3, 5.2]"  # 5.1


def test_bin_numeric_quantile_bins_hold_about_equal_rows_with_labels():
    binned, summary = apply_with_summary(
        "bin_numeric",
        bundled("diabetes"),
        column="target",
        method="quantile",
        bins=3,
        labels=["low", "mid", "high"],
        output="level",
    )

    counts = binned["level"].value_counts()
    assert set(counts.index) == {"low", "mid", "high"}
    assert counts.min() >= 145 and counts.max() <= 150
    assert summary["edges"][0] == 25.0 and summary["edges"][-1] == 346.0


def test_bin_numeric_by_edges_leaves_values_outside_missing():
    data = pd.DataFrame({"age": [5, 18, 30, 70, 120, None]})

    binned, _ = apply(
        "bin_numeric",
        data,
        column="age",
        method="edges",
        edges=[0, 18, 65, 100],
        labels=["minor", "adult", "senior"],
    )

    assert rows(binned[["age_bin"]]) == [
        ["minor"],
        ["minor"],
        ["adult"],
        ["senior"],
        [None],
        [None],
    ]


def test_bin_numeric_needs_distinct_edges_in_the_data():
    data = pd.DataFrame({"flag": [0, 0, 0, 0, 1]})

    with pytest.raises(
        ValueError, match=r"^bins: 'flag' has too few distinct values for 4 quantile bins"
    ):
        apply("bin_numeric", data, column="flag", method="quantile")


def test_bin_numeric_refuses_a_text_column():
    with pytest.raises(ValueError, match=r"^column: column\(s\) \['species'\] are not numeric"):
        apply("bin_numeric", iris(), column="species")


@pytest.mark.parametrize(
    "params, error",
    [
        ({"method": "edges"}, "params.edges: give edges exactly when method is 'edges'"),
        ({"edges": [0, 1]}, "params.edges: give edges exactly when method is 'edges'"),
        ({"method": "edges", "edges": [0, 5, 5]}, "params.edges: must be strictly increasing"),
        ({"bins": 3, "labels": ["a", "b"]}, "params.labels: 3 bins need 3 labels, not 2"),
        (
            {"method": "edges", "edges": [0, 1, 2], "labels": ["a"]},
            "params.labels: 2 bins need 2 labels, not 1",
        ),
        ({"bins": 2, "labels": ["a", "a"]}, "params.labels: must be distinct"),
        ({"bins": 1}, "params.bins: Input should be greater than or equal to 2"),
    ],
)
def test_bin_numeric_rejects_bad_bins(params, error):
    assert rejected_texts("bin_numeric", column="v", **params) == [error]


# derive_column


def column(name):
    return {"column": name}


def const(value):
    return {"const": value}


def op(symbol, left, right):
    return {"op": symbol, "left": left, "right": right}


def test_derive_column_computes_arithmetic_with_division_by_zero_as_missing():
    data = pd.DataFrame({"price": [10.0, 4.0, 3.0], "qty": [2, 0, 3], "fee": [1, 1, 0]})
    unit_price = op("/", op("-", column("price"), column("fee")), column("qty"))

    derived, summary = apply_with_summary(
        "derive_column", data, output="unit", expression=unit_price
    )

    assert rows(derived[["unit"]]) == [[4.5], [None], [1.0]]
    assert summary == {"expression": "((price - fee) / qty)"}


def test_derive_column_combines_comparisons_into_a_flag():
    data = bundled("diabetes")
    at_risk = op(
        "or",
        op("and", op(">", column("bmi"), const(0.05)), op(">=", column("age"), const(0))),
        op("==", column("target"), const(25)),
    )

    derived, _ = apply("derive_column", data, output="at_risk", expression=at_risk)

    expected = ((data["bmi"] > 0.05) & (data["age"] >= 0)) | (data["target"] == 25)
    assert derived["at_risk"].tolist() == expected.tolist()
    assert 0 < derived["at_risk"].sum() < len(data)


def test_derive_column_adds_texts_and_replaces_an_existing_column():
    data = pd.DataFrame({"first": ["Ann", "Bob"], "last": ["Lee", "Ray"]})
    full_name = op("+", op("+", column("first"), const(" ")), column("last"))

    derived, _ = apply("derive_column", data, output="first", expression=full_name)

    assert rows(derived) == [["Ann Lee", "Lee"], ["Bob Ray", "Ray"]]


def test_derive_column_treats_code_as_plain_names_and_text():
    data = pd.DataFrame({"a": ["__import__('os').system('echo hacked')", "x"]})
    expression = op("==", column("a"), const("__import__('os').system('echo hacked')"))

    derived, _ = apply("derive_column", data, output="same", expression=expression)

    assert derived["same"].tolist() == [True, False]
    with pytest.raises(ValueError, match=r"^expression: column\(s\) \['a \+ 1'\] not found"):
        apply("derive_column", data, output="b", expression=column("a + 1"))


def test_derive_column_names_the_operation_that_cannot_be_computed():
    data = pd.DataFrame({"name": ["Ann"], "n": [1]})

    with pytest.raises(
        ValueError, match=r"^expression: cannot compute \(name \* 2.5\) with str and float64 values"
    ):
        apply("derive_column", data, output="x", expression=op("*", column("name"), const(2.5)))
    with pytest.raises(
        ValueError, match=r"^expression: 'and' needs true/false on both sides in \(n and n\)"
    ):
        apply("derive_column", data, output="x", expression=op("and", column("n"), column("n")))


@pytest.mark.parametrize(
    "expression, error",
    [
        (
            op("%", column("a"), const(2)),
            "params.expression.op.op: Input should be '+', '-', '*', '/', '>', '>=', '<', "
            "'<=', '==', '!=', 'and' or 'or'",
        ),
        (
            op("+", {"col": "a"}, const(2)),
            'params.expression.op.left: an expression is {"column": name}, {"const": value} '
            'or {"op": operator, "left": expression, "right": expression}',
        ),
        ({"op": "+", "left": column("a")}, "params.expression.op.right: Field required"),
        (
            "a + 2",
            'params.expression: an expression is {"column": name}, {"const": value} '
            'or {"op": operator, "left": expression, "right": expression}',
        ),
        (column(""), "params.expression.column.column: String should have at least 1 character"),
    ],
)
def test_derive_column_rejects_a_malformed_expression(expression, error):
    assert rejected_texts("derive_column", output="x", expression=expression) == [error]


# flatten_json


def test_flatten_json_spreads_nested_keys_into_prefixed_columns():
    data = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "payload": [
                json.dumps({"city": "Oslo", "size": {"m2": 40, "rooms": 2}}),
                None,
                json.dumps({"city": "Rome", "tags": ["sea"]}),
            ],
        }
    )

    flat, summary = apply_with_summary("flatten_json", data, columns=["payload"])

    assert summary == {
        "new_columns": ["payload.city", "payload.size.m2", "payload.size.rooms", "payload.tags"]
    }
    assert rows(flat) == [
        [1, "Oslo", 40.0, 2.0, None],
        [2, None, None, None, None],
        [3, "Rome", None, None, ["sea"]],
    ]


def test_flatten_json_max_level_separator_and_keep_original():
    data = pd.DataFrame({"p": ['{"a": {"b": 1}, "c": 2}']})

    flat, _ = apply(
        "flatten_json", data, columns=["p"], max_level=0, separator="_", keep_original=True
    )

    assert list(flat.columns) == ["p", "p_a", "p_c"]
    assert flat["p_a"].tolist() == [{"b": 1}]


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"a": 1', r"is not valid JSON \(Expecting ',' delimiter\): \{\"a\": 1"),
        ("[1, 2]", r"is not a JSON object: \[1, 2\]"),
    ],
)
def test_flatten_json_names_the_column_and_row_of_bad_text(text, problem):
    data = pd.DataFrame({"payload": ['{"a": 1}', text]})

    with pytest.raises(ValueError, match=rf"^columns: 'payload' row 2 {problem}$"):
        apply("flatten_json", data, columns=["payload"])


def test_flatten_json_coerce_leaves_bad_rows_missing():
    data = pd.DataFrame({"payload": ['{"a": 1}', "oops", '{"a": 3}']})

    flat, _ = apply("flatten_json", data, columns=["payload"], errors="coerce")

    assert rows(flat) == [[1.0], [None], [3.0]]


def test_flatten_json_refuses_to_repeat_an_existing_column():
    data = pd.DataFrame({"p": ['{"a": 1}'], "p.a": [0]})

    with pytest.raises(ValueError, match=r"^columns: flattening 'p' repeats column\(s\) \['p.a'\]"):
        apply("flatten_json", data, columns=["p"])


# resample


def test_resample_aggregates_each_column_per_period():
    data, _ = apply("parse_dates", hourly_readings(), columns=["time"])

    daily, _ = apply(
        "resample",
        data,
        on="time",
        frequency="1D",
        aggregations={"kwh": ["sum", "mean", "max"], "site": "count"},
    )

    assert list(daily.columns) == ["time", "kwh_sum", "kwh_mean", "kwh_max", "site"]
    assert daily["time"].dt.strftime("%m-%d").tolist() == ["03-01", "03-02", "03-03"]
    assert daily["site"].tolist() == [24, 24, 24]
    first_day = data["kwh"].head(24)
    assert daily["kwh_sum"].iloc[0] == pytest.approx(first_day.sum())
    assert daily["kwh_mean"].iloc[0] == pytest.approx(first_day.mean())
    assert daily["kwh_max"].iloc[0] == first_day.max()


def test_resample_keeps_empty_periods():
    data = pd.DataFrame(
        {
            "t": pd.to_datetime(["2024-01-01 00:10", "2024-01-01 00:50", "2024-01-01 02:05"]),
            "v": [1.0, 2.0, 4.0],
        }
    )

    hourly, _ = apply(
        "resample", data, on="t", frequency="1h", aggregations={"v": ["mean", "count"]}
    )

    assert rows(hourly[["v_mean", "v_count"]]) == [[1.5, 2], [None, 0], [4.0, 1]]


def test_resample_names_a_text_column_given_a_numeric_aggregation():
    data, _ = apply("parse_dates", hourly_readings(), columns=["time"])

    with pytest.raises(
        ValueError, match=r"^aggregations\.site: mean needs numbers, 'site' holds str"
    ):
        apply("resample", data, on="time", frequency="1D", aggregations={"site": "mean"})


def test_resample_needs_a_datetime_column():
    with pytest.raises(ValueError, match=r"^on: 'time' is not a datetime column \(str\)"):
        apply("resample", hourly_readings(), on="time", frequency="1D", aggregations={"kwh": "sum"})


@pytest.mark.parametrize("frequency", ["H", "1 hour", "0h", "soon"])
def test_resample_rejects_an_unknown_frequency(frequency):
    errors = rejected_texts("resample", on="t", frequency=frequency, aggregations={"v": "sum"})

    assert errors == [
        f"params.frequency: {frequency!r} is not a pandas frequency such as "
        "'15min', '1h', '1D', 'W' or 'MS'"
    ]


@pytest.mark.parametrize(
    "aggregations, error",
    [
        (
            {"v": "average"},
            "params.aggregations.v.0: Input should be 'mean', 'sum', 'min', 'max', 'median', "
            "'count', 'first', 'last' or 'std'",
        ),
        (
            {"v": []},
            "params.aggregations.v: Value should have at least 1 item after validation, not 0",
        ),
        ({"t": "max"}, "params.aggregations: 't' is the time column, it is not aggregated"),
        ({}, "params.aggregations: Dictionary should have at least 1 item after validation, not 0"),
    ],
)
def test_resample_rejects_bad_aggregations(aggregations, error):
    errors = rejected_texts("resample", on="t", frequency="1h", aggregations=aggregations)

    assert errors == [error]


# one_hot


def test_one_hot_replaces_a_column_by_indicators():
    encoded, summary = apply_with_summary("one_hot", iris(), columns=["species"])

    indicators = ["species_setosa", "species_versicolor", "species_virginica"]
    assert list(encoded.columns[-3:]) == indicators
    assert "species" not in encoded.columns
    assert encoded[indicators].sum().tolist() == [50, 50, 50]
    assert encoded[indicators].sum(axis=1).eq(1).all()
    assert summary == {"indicators": indicators}


def test_one_hot_drop_first_and_missing_indicator():
    data = pd.DataFrame({"colour": ["red", "blue", None, "red"]})

    encoded, _ = apply("one_hot", data, columns=["colour"], drop_first=True, include_missing=True)

    assert list(encoded.columns) == ["colour_red", "colour_nan"]
    assert rows(encoded) == [[1, 0], [0, 0], [0, 1], [1, 0]]


def test_one_hot_refuses_a_column_with_too_many_values():
    with pytest.raises(
        ValueError,
        match=r"^columns: 'sepal length \(cm\)' has 35 distinct values, more than "
        r"max_categories \(20\)",
    ):
        apply("one_hot", iris(), columns=["sepal length (cm)"], max_categories=20)


# every step type: invalid parameters name the field


@pytest.mark.parametrize(
    "slug, params, error",
    [
        ("sort", {}, "params.columns: Field required"),
        ("limit", {"rows": 5, "head": True}, "params.head: is not a parameter of this step type"),
        ("sample", {"fraction": 1.5}, "params.fraction: Input should be less than or equal to 1"),
        (
            "replace_values",
            {"replacements": [{"old": 1}]},
            "params.replacements.0.new: Field required",
        ),
        (
            "parse_dates",
            {"columns": []},
            "params.columns: List should have at least 1 item after validation, not 0",
        ),
        (
            "string_clean",
            {"case": "title"},
            "params.case: Input should be 'keep', 'lower' or 'upper'",
        ),
        (
            "flatten_json",
            {"columns": ["p"], "errors": "ignore"},
            "params.errors: Input should be 'raise' or 'coerce'",
        ),
        (
            "one_hot",
            {"columns": ["c"], "max_categories": 0},
            "params.max_categories: Input should be greater than or equal to 1",
        ),
        ("derive_column", {"expression": {"const": 1}}, "params.output: Field required"),
    ],
)
def test_invalid_parameters_name_the_field(slug, params, error):
    assert error in rejected_texts(slug, **params)


# through a pipeline run


@pytest.mark.django_db
def test_cleaning_steps_chain_in_a_run_recording_rows_and_columns(make_dataset, make_pipeline):
    readings = hourly_readings().assign(
        meta=[json.dumps({"sensor": {"id": f" S{i % 3} "}}) for i in range(72)]
    )
    make_dataset(readings, "readings")
    pipeline = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "readings"}},
            {"type": "parse_dates", "params": {"columns": ["time"], "timezone": "UTC"}},
            {"type": "flatten_json", "params": {"columns": ["meta"]}},
            {"type": "string_clean", "params": {"case": "lower"}},
            {
                "type": "replace_values",
                "params": {"columns": ["site"], "replacements": [{"old": "north", "new": "n"}]},
            },
            {
                "type": "derive_column",
                "params": {"output": "wh", "expression": op("*", column("kwh"), const(1000))},
            },
            {"type": "clip", "params": {"columns": ["wh"], "upper_quantile": 0.9}},
            {"type": "log_transform", "params": {"columns": ["kwh"]}},
            {"type": "bin_numeric", "params": {"column": "wh", "bins": 3}},
            {"type": "one_hot", "params": {"columns": ["meta.sensor.id"]}},
            {"type": "date_parts", "params": {"column": "time", "parts": ["day", "hour"]}},
            {"type": "sort", "params": {"columns": ["wh"], "descending": True}},
            {"type": "sample", "params": {"fraction": 0.5, "random_state": 1}},
            {"type": "limit", "params": {"rows": 30}},
            {
                "type": "resample",
                "params": {"on": "time", "frequency": "1D", "aggregations": {"wh": "max"}},
            },
        ]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    shapes = [
        (s.step_type, s.rows_in, s.columns_in, s.rows_out, s.columns_out)
        for s in run.step_runs.order_by("order")
    ]
    assert shapes == [
        ("csv", None, None, 72, 4),
        ("parse_dates", 72, 4, 72, 4),
        ("flatten_json", 72, 4, 72, 4),
        ("string_clean", 72, 4, 72, 4),
        ("replace_values", 72, 4, 72, 4),
        ("derive_column", 72, 4, 72, 5),
        ("clip", 72, 5, 72, 5),
        ("log_transform", 72, 5, 72, 5),
        ("bin_numeric", 72, 5, 72, 6),
        ("one_hot", 72, 6, 72, 8),
        ("date_parts", 72, 8, 72, 10),
        ("sort", 72, 10, 72, 10),
        ("sample", 72, 10, 36, 10),
        ("limit", 36, 10, 30, 10),
        ("resample", 30, 10, 3, 2),
    ]
    summaries = {s.step_type: s.summary for s in run.step_runs.all()}
    assert summaries["flatten_json"]["new_columns"] == ["meta.sensor.id"]
    assert summaries["one_hot"]["indicators"] == [
        "meta.sensor.id_s0",
        "meta.sensor.id_s1",
        "meta.sensor.id_s2",
    ]
    # Of 72 values, the 8 ranked above 64.9 (0.9 x 71 + 1) lie above the 90th percentile.
    assert summaries["clip"]["clipped"] == {"wh": 8}
    assert sum(summaries["bin_numeric"]["rows_per_bin"].values()) == 72
    assert summaries["derive_column"]["expression"] == "(kwh * 1000)"
