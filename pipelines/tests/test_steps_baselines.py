import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone, is_classifier

from pipelines.steps.baselines import ThresholdRules

AIR = pd.DataFrame(
    {
        "PM10": [20.0, 120.0, 80.0, np.nan, 300.0, 60.0],
        "NO2": [10.0, 15.0, 250.0, 220.0, 5.0, 40.0],
        "station": ["city", "city", "road", "road", "city", "park"],
    }
)
LEVELS = pd.Series(["low", "high", "high", "high", "high", "low"])


def fitted(rules, default="low", X=AIR, y=LEVELS):
    return ThresholdRules(rules=rules, default=default).fit(X, y)


def test_first_matching_rule_wins_and_unmatched_rows_get_the_default():
    model = fitted(
        {"PM10": {">": 100, "label": "high"}, "NO2": {">=": 200, "label": "high"}},
    )

    assert model.predict(AIR).tolist() == ["low", "high", "high", "high", "high", "low"]
    assert is_classifier(model)
    assert model.classes_.tolist() == ["high", "low"]


def test_rule_order_decides_between_rules_that_both_match():
    labels = pd.Series([0, 1, 2, 0, 1, 2])
    rules = {"PM10": {">": 100, "label": 1}, "NO2": {"<": 20, "label": 2}}

    model = fitted(rules, default=0, y=labels)

    # Rows 1 and 4 match both rules: the PM10 rule comes first.
    assert model.predict(AIR).tolist() == [2, 1, 0, 0, 1, 0]


def test_all_conditions_of_a_rule_must_hold():
    model = fitted({"PM10": {">": 50, "<=": 120, "label": "high"}})

    assert model.predict(AIR).tolist() == ["low", "high", "high", "low", "low", "high"]


def test_equality_rules_compare_text():
    model = fitted({"station": {"==": "road", "label": "high"}})

    assert model.predict(AIR).tolist() == ["low", "low", "high", "high", "low", "low"]


def test_missing_value_meets_no_condition_not_even_not_equal():
    model = fitted({"PM10": {"!=": 20, "label": "high"}})

    assert model.predict(AIR)[3] == "low"
    assert model.predict(AIR)[:3].tolist() == ["low", "high", "high"]


def test_probabilities_are_one_hot_for_the_predicted_class():
    model = fitted({"PM10": {">": 100, "label": "high"}})

    probabilities = model.predict_proba(AIR)
    assert probabilities.tolist() == [
        [0, 1],
        [1, 0],
        [0, 1],
        [0, 1],
        [1, 0],
        [0, 1],
    ]


def test_clone_keeps_the_rules():
    model = ThresholdRules(rules={"PM10": {">": 100, "label": "high"}}, default="low")

    assert clone(model).get_params() == model.get_params()


@pytest.mark.parametrize(
    "rules, default, message",
    [
        (None, 0, r"^rules: give at least one rule, e\.g\. \{\"PM10\""),
        ({}, 0, r"^rules: give at least one rule"),
        ({"PM10": 100}, 0, r"^rules: the rule of 'PM10' must be an object like"),
        ({"PM10": {">": 100}}, 0, r"^rules: the rule of 'PM10' needs a \"label\""),
        ({"PM10": {"label": 1}}, 0, r"^rules: the rule of 'PM10' needs a condition"),
        (
            {"PM10": {"=>": 100, "label": 1}},
            0,
            r"^rules: unknown operator '=>' in the rule of 'PM10' \(use >, >=, <, <=, ==, !=\)",
        ),
        ({"PM10": {">": "high", "label": 1}}, 0, r"^rules: > in the rule of 'PM10' needs a number"),
        ({"PM10": {"==": [1], "label": 1}}, 0, r"^rules: == in the rule of 'PM10' needs a number"),
        ({"PM10": {">": 1, "label": 1}}, [0], r"^default: must be a number, text or boolean"),
        ("PM10 > 100", 0, r"The 'rules' parameter of ThresholdRules must be"),
    ],
)
def test_malformed_rules_are_rejected_before_fitting(rules, default, message):
    with pytest.raises(ValueError, match=message):
        ThresholdRules(rules=rules, default=default)._validate_params()


@pytest.mark.parametrize(
    "rules, default, message",
    [
        (
            {"O3": {">": 100, "label": "high"}},
            "low",
            r"^rules: feature\(s\) \['O3'\] are not among the model's features",
        ),
        (
            {"station": {">": 1, "label": "high"}},
            "low",
            r"^rules: 'station' is compared by size but is not numeric",
        ),
        (
            {"PM10": {">": 100, "label": "severe"}},
            "low",
            r"^rules: label 'severe' of 'PM10' is not a class of the target "
            r"\(classes: 'high', 'low'\)",
        ),
        ({"PM10": {">": 100, "label": "high"}}, 0, r"^default: 0 is not a class of the target"),
    ],
)
def test_rules_that_do_not_fit_the_data_are_rejected_when_fitting(rules, default, message):
    with pytest.raises(ValueError, match=message):
        fitted(rules, default=default)


def test_rules_need_named_columns():
    with pytest.raises(TypeError, match="reads features by name: give it a DataFrame"):
        fitted({"PM10": {">": 100, "label": "high"}}, X=AIR.to_numpy())
