"""Baseline models that trained ones should beat.

They are sklearn estimators registered like any other, so the train step fits, scores
and logs them the same way and the predict step uses them unchanged.
"""

from numbers import Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from pipelines.engine.context import COMPARISONS

ORDERING = (">", ">=", "<", "<=")
EXAMPLE = '{"PM10": {">": 100, "label": 1}}'


class ThresholdRules(ClassifierMixin, BaseEstimator):
    """Classify rows by fixed thresholds on raw feature values.

    `rules` maps a feature to conditions and a label, e.g. {"PM10": {">": 100, "label": 1}}
    (several conditions in one rule must all hold). The first rule a row matches, in the
    order given, sets its label; rows no rule matches get `default`.
    """

    # The train step hands it the raw columns by name instead of scaled, encoded ones.
    reads_raw_features = True

    _parameter_constraints = {"rules": [dict, None], "default": "no_validation"}

    def __init__(self, rules=None, default=0):
        self.rules = rules
        self.default = default

    def _validate_params(self):
        super()._validate_params()
        if not self.rules:
            raise ValueError(f"rules: give at least one rule, e.g. {EXAMPLE}")
        for feature, rule in self.rules.items():
            _check_rule(feature, rule)
        if not _is_scalar(self.default):
            raise ValueError(f"default: must be a number, text or boolean, not {self.default!r}")

    def fit(self, X, y):
        self._validate_params()
        X = _frame(X)
        missing = [feature for feature in self.rules if feature not in X.columns]
        if missing:
            raise ValueError(f"rules: feature(s) {missing} are not among the model's features")
        for feature, rule in self.rules.items():
            if any(op in rule for op in ORDERING) and not pd.api.types.is_numeric_dtype(X[feature]):
                raise ValueError(f"rules: {feature!r} is compared by size but is not numeric")
        self.classes_ = np.unique(y)
        self._check_labels()
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        return self.classes_[self._class_indices(X)]

    def predict_proba(self, X):
        """Certainty for the predicted class, so ranking metrics (roc_auc) apply."""
        return np.eye(len(self.classes_))[self._class_indices(X)]

    def _check_labels(self):
        classes = self.classes_.tolist()
        for feature, rule in self.rules.items():
            if rule["label"] not in classes:
                raise ValueError(
                    f"rules: label {rule['label']!r} of {feature!r} is not a class of the "
                    f"target ({_listing(classes)})"
                )
        if self.default not in classes:
            raise ValueError(
                f"default: {self.default!r} is not a class of the target ({_listing(classes)})"
            )

    def _class_indices(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = _frame(X)
        classes = self.classes_.tolist()
        indices = np.full(len(X), classes.index(self.default))
        decided = np.zeros(len(X), dtype=bool)
        for feature, rule in self.rules.items():
            matches = _matches(X[feature], rule) & ~decided
            indices[matches] = classes.index(rule["label"])
            decided |= matches
        return indices


def _matches(values: pd.Series, rule: dict) -> np.ndarray:
    # A missing value meets no condition, not even "!=".
    matches = values.notna().to_numpy(copy=True)
    for op, threshold in rule.items():
        if op != "label":
            matches &= COMPARISONS[op](values, threshold).to_numpy(dtype=bool, na_value=False)
    return matches


def _check_rule(feature, rule) -> None:
    if not isinstance(rule, dict):
        raise ValueError(f"rules: the rule of {feature!r} must be an object like {EXAMPLE}")
    if "label" not in rule or not _is_scalar(rule["label"]):
        raise ValueError(f'rules: the rule of {feature!r} needs a "label" (number or text)')
    conditions = {op: value for op, value in rule.items() if op != "label"}
    if not conditions:
        raise ValueError(f"rules: the rule of {feature!r} needs a condition, e.g. {EXAMPLE}")
    for op, threshold in conditions.items():
        if op not in COMPARISONS:
            raise ValueError(
                f"rules: unknown operator {op!r} in the rule of {feature!r} "
                f"(use {', '.join(COMPARISONS)})"
            )
        if op in ORDERING and not _is_number(threshold):
            raise ValueError(f"rules: {op} in the rule of {feature!r} needs a number")
        if not _is_scalar(threshold):
            raise ValueError(f"rules: {op} in the rule of {feature!r} needs a number or text")


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_scalar(value) -> bool:
    return isinstance(value, (str, bool, Real))


def _frame(X) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise TypeError("ThresholdRules reads features by name: give it a DataFrame")
    return X


def _listing(classes: list) -> str:
    return "classes: " + ", ".join(map(repr, classes))
