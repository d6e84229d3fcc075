"""The registry of estimators, by task and slug, and building one from hyperparameters.

Each family module registers its own estimators with `register_estimators`; the
training steps pick from them by slug, and hyperparameters are checked against the
estimator's own parameter declaration before anything is fitted.
"""

from typing import Any

from django.utils.module_loading import import_string
from sklearn.calibration import CalibratedClassifierCV
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted

# task -> estimator slug -> dotted path of the estimator class.
ESTIMATORS: dict[str, dict[str, str]] = {}


def register_estimators(task: str, estimators: dict[str, str]) -> None:
    family = ESTIMATORS.setdefault(task, {})
    for slug, path in estimators.items():
        if slug in family:
            raise ValueError(f"estimator {slug!r} is registered twice for {task}")
        family[slug] = path


def estimator_class(task: str, estimator: str) -> type:
    return import_string(ESTIMATORS[task][estimator])


def check_estimator(task: str, estimator: str) -> None:
    """ValueError listing the known slugs when `estimator` is not one of the task's."""
    if estimator not in ESTIMATORS.get(task, {}):
        known = ", ".join(ESTIMATORS.get(task, {}))
        raise ValueError(f"unknown estimator {estimator!r} for {task} (known: {known})")


def build_estimator(task: str, estimator: str, hyperparams: dict[str, Any], random_state=None):
    """An unfitted estimator; ValueError naming the hyperparameter when one is wrong."""
    cls = estimator_class(task, estimator)
    known = cls().get_params()
    for name in hyperparams:
        if name not in known:
            raise ValueError(f"{name!r} is not a hyperparameter of {cls.__name__}")
    if random_state is not None and "random_state" in known:
        hyperparams = {"random_state": random_state, **hyperparams}
    model = cls(**hyperparams)
    try:
        model._validate_params()
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None
    return model


class CalibratedSVC(SVC):
    """An SVC with predict_proba: a sigmoid fitted on cross-validated decision values.

    Probabilities give it a roc_auc and the predict step's probability columns.
    scikit-learn 1.9 deprecated SVC(probability=True) for this calibration.
    """

    def fit(self, X, y, sample_weight=None):
        super().fit(X, y, sample_weight=sample_weight)
        calibration = CalibratedClassifierCV(SVC(**self.get_params()), ensemble=False)
        self.calibration_ = calibration.fit(X, y, sample_weight=sample_weight)
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        return self.calibration_.predict_proba(X)


register_estimators(
    "classification",
    {
        "logistic_regression": "sklearn.linear_model.LogisticRegression",
        "k_nearest_neighbors": "sklearn.neighbors.KNeighborsClassifier",
        "decision_tree": "sklearn.tree.DecisionTreeClassifier",
        "random_forest": "sklearn.ensemble.RandomForestClassifier",
        "extra_trees": "sklearn.ensemble.ExtraTreesClassifier",
        "gradient_boosting": "sklearn.ensemble.GradientBoostingClassifier",
        "hist_gradient_boosting": "sklearn.ensemble.HistGradientBoostingClassifier",
        "naive_bayes": "sklearn.naive_bayes.GaussianNB",
        "svc": "pipelines.steps.estimators.CalibratedSVC",
        "mlp": "sklearn.neural_network.MLPClassifier",
        "threshold_rules": "pipelines.steps.baselines.ThresholdRules",
    },
)
register_estimators(
    "regression",
    {
        "linear_regression": "sklearn.linear_model.LinearRegression",
        "ridge": "sklearn.linear_model.Ridge",
        "lasso": "sklearn.linear_model.Lasso",
        "elastic_net": "sklearn.linear_model.ElasticNet",
        "decision_tree": "sklearn.tree.DecisionTreeRegressor",
        "random_forest": "sklearn.ensemble.RandomForestRegressor",
        "gradient_boosting": "sklearn.ensemble.GradientBoostingRegressor",
        "hist_gradient_boosting": "sklearn.ensemble.HistGradientBoostingRegressor",
        "k_nearest_neighbors": "sklearn.neighbors.KNeighborsRegressor",
        "svr": "sklearn.svm.SVR",
        "mlp": "sklearn.neural_network.MLPRegressor",
    },
)
