import numpy as np
import pandas as pd
import pytest
from sklearn.base import is_clusterer, is_outlier_detector
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import LocalOutlierFactor

from experiments import tracking
from pipelines import runs
from pipelines.choices import RunStatus
from pipelines.steps.estimators import ESTIMATORS
from pipelines.tests.helpers import (
    bundled,
    logged_model,
    rejected,
    run_step,
    step_errors,
    step_output,
)

# Hyperparameters that find iris's species (DBSCAN only separates setosa from the rest).
CLUSTERING = {
    "k_means": ({"n_clusters": 3, "n_init": 10}, 3),
    "dbscan": ({"eps": 0.8}, 2),
    "agglomerative": ({"n_clusters": 3}, 3),
    "gaussian_mixture": ({"n_components": 3}, 3),
    "birch": ({"n_clusters": 3}, 3),
}
# Each flags about the planted share of rows.
ANOMALY_DETECTION = {
    "isolation_forest": {"contamination": 0.05, "n_estimators": 50},
    "one_class_svm": {"nu": 0.05, "gamma": 0.02},
    "local_outlier_factor": {"contamination": 0.05},
}


@pytest.fixture(scope="module")
def planted():
    """300 rows of three features: 285 near the origin, 15 planted far out."""
    rng = np.random.default_rng(3)
    normal = rng.normal(size=(285, 3))
    directions = rng.normal(size=(15, 3))
    far = 8 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    frame = pd.DataFrame(np.vstack([normal, far]), columns=["a", "b", "c"])
    frame["planted"] = [0] * 285 + [1] * 15
    return frame.sample(frac=1, random_state=0).reset_index(drop=True)


@pytest.mark.parametrize("estimator", list(ESTIMATORS["clustering"]))
def test_every_clusterer_finds_the_iris_species(estimator):
    iris = bundled("iris")
    hyperparams, clusters = CLUSTERING[estimator]

    context, log = run_step(
        "cluster", {"data": iris}, estimator=estimator, exclude=["target"], hyperparams=hyperparams
    )

    metrics, labels, model = context["metrics"], context["data"]["cluster"], context["model"]
    assert metrics["n_clusters"] == clusters
    assert metrics["silhouette"] > 0.4
    assert metrics["davies_bouldin"] < 1
    assert metrics["calinski_harabasz"] > 100
    assert adjusted_rand_score(iris["target"], labels) > 0.45
    assert list(context["data"].columns) == [*iris.columns, "cluster"]
    assert list(model.feature_names_in_) == list(iris.columns[:4])
    assert is_clusterer(model)
    # A model that labels new rows labels the training rows (nearly) as the fit did.
    assert (model.predict(iris.iloc[:, :4]) == labels).mean() > 0.95
    assert context["_summary"]["features"] == list(iris.columns[:4])
    assert sum(context["_summary"]["cluster_sizes"].values()) == 150
    assert "silhouette=" in log[0]


def test_dbscan_reports_noise_and_leaves_it_out_of_the_clusters():
    iris = bundled("iris")

    context, _ = run_step(
        "cluster", {"data": iris}, estimator="dbscan", exclude=["target"], hyperparams={"eps": 0.5}
    )

    labels = context["data"]["cluster"]
    assert context["metrics"]["noise_share"] == pytest.approx((labels == -1).mean())
    assert 0 < context["metrics"]["noise_share"] < 0.5
    assert context["metrics"]["n_clusters"] == labels[labels != -1].nunique()
    far_away = pd.DataFrame([[40.0, 40.0, 40.0, 40.0]], columns=iris.columns[:4])
    assert context["model"].predict(far_away).tolist() == [-1]


def test_clustering_without_two_clusters_reports_only_the_count():
    iris = bundled("iris")

    context, _ = run_step(
        "cluster", {"data": iris}, estimator="dbscan", exclude=["target"], hyperparams={"eps": 10}
    )

    assert context["metrics"] == {"n_clusters": 1.0, "noise_share": 0.0}


def test_agglomerative_labels_new_rows_by_the_nearest_centroid():
    iris = bundled("iris")
    context, _ = run_step(
        "cluster",
        {"data": iris},
        estimator="agglomerative",
        features=["petal length (cm)", "petal width (cm)"],
        hyperparams={"n_clusters": 3},
    )
    data = context["data"]
    means = data.groupby("cluster")[["petal length (cm)", "petal width (cm)"]].mean()

    assert context["model"].predict(means).tolist() == means.index.tolist()


@pytest.mark.parametrize("estimator", list(ESTIMATORS["anomaly_detection"]))
def test_every_detector_finds_planted_anomalies(planted, estimator):
    context, log = run_step(
        "detect_anomalies",
        {"data": planted},
        estimator=estimator,
        label_column="planted",
        hyperparams=ANOMALY_DETECTION[estimator],
    )

    metrics, model = context["metrics"], context["model"]
    assert set(metrics) == {"anomaly_rate", "precision", "recall", "f1"}
    assert 0.03 <= metrics["anomaly_rate"] <= 0.08
    assert metrics["recall"] >= 0.8
    assert metrics["precision"] >= 0.8
    flagged = context["data"]["anomaly"]
    assert flagged.dtype == bool
    assert flagged.mean() == metrics["anomaly_rate"]
    assert list(model.feature_names_in_) == ["a", "b", "c"]
    assert is_outlier_detector(model)
    assert context["_summary"]["anomalies"] == flagged.sum()
    assert "recall=" in log[0]


def test_local_outlier_factor_flags_training_rows_as_sklearn_does(planted):
    context, _ = run_step(
        "detect_anomalies", {"data": planted}, estimator="local_outlier_factor", exclude=["planted"]
    )

    prepared = context["model"]["prepare"].transform(planted[["a", "b", "c"]])
    expected = LocalOutlierFactor().fit_predict(prepared) == -1
    assert (context["data"]["anomaly"] == expected).all()


def test_anomaly_detection_without_labels_reports_the_rate(planted):
    context, _ = run_step(
        "detect_anomalies", {"data": planted}, estimator="isolation_forest", exclude=["planted"]
    )

    assert set(context["metrics"]) == {"anomaly_rate"}


def test_anomaly_labels_may_be_booleans_with_gaps(planted):
    labelled = planted.assign(planted=planted["planted"].astype("boolean"))
    labelled.loc[:99, "planted"] = pd.NA

    context, _ = run_step(
        "detect_anomalies",
        {"data": labelled},
        estimator="isolation_forest",
        label_column="planted",
        hyperparams={"contamination": 0.05},
    )

    assert context["metrics"]["recall"] >= 0.8


def test_pca_on_wine_explains_most_variance_in_few_components():
    wine = bundled("wine")

    context, log = run_step("reduce_dimensions", {"data": wine}, n_components=3, exclude=["target"])

    metrics = context["metrics"]
    ratios = [metrics[f"explained_variance_ratio_pca{i}"] for i in range(3)]
    assert ratios == sorted(ratios, reverse=True)
    assert 0.3 < ratios[0] < 0.45  # wine's first component explains about 36%
    assert metrics["explained_variance_ratio_total"] == pytest.approx(sum(ratios))
    assert list(context["data"].columns) == [*wine.columns, "pca0", "pca1", "pca2"]
    components = context["model"].transform(wine.drop(columns="target"))
    assert np.allclose(components, context["data"][["pca0", "pca1", "pca2"]])
    assert context["_summary"]["components"] == 3
    assert "explained_variance_ratio_total=" in log[0]


def test_pca_with_a_variance_share_keeps_enough_components_and_can_replace_features():
    wine = bundled("wine")

    context, _ = run_step(
        "reduce_dimensions", {"data": wine}, n_components=0.8, exclude=["target"], mode="replace"
    )

    assert context["metrics"]["explained_variance_ratio_total"] >= 0.8
    kept = context["_summary"]["components"]
    assert list(context["data"].columns) == ["target", *(f"pca{i}" for i in range(kept))]


@pytest.mark.django_db
@pytest.mark.parametrize("estimator", list(ESTIMATORS["clustering"]))
def test_clustering_run_logs_the_model_and_predicts_cluster_labels(make_pipeline, estimator):
    iris = bundled("iris")
    hyperparams, _ = CLUSTERING[estimator]
    pipeline = make_pipeline(
        [
            {"type": "sklearn_dataset", "params": {"name": "iris"}},
            {
                "type": "cluster",
                "params": {
                    "estimator": estimator,
                    "exclude": ["target"],
                    "hyperparams": hyperparams,
                },
            },
            {"type": "predict"},
        ]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.metrics["silhouette"] > 0.4
    assert tracking.get_run(run.mlflow_run_id)["metrics"]["silhouette"] == run.metrics["silhouette"]
    predictions = step_output(run, 3)["predictions"]
    assert list(predictions.columns[-2:]) == ["cluster", "prediction"]
    model = logged_model(run)
    assert is_clusterer(model)
    assert (model.predict(iris.iloc[:, :4]) == predictions["prediction"]).all()


@pytest.mark.django_db
@pytest.mark.parametrize("estimator", list(ESTIMATORS["anomaly_detection"]))
def test_anomaly_run_logs_the_model_and_predicts_anomaly_flags(
    make_dataset, make_pipeline, planted, estimator
):
    make_dataset(planted, "sensors")
    pipeline = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "sensors"}},
            {
                "type": "detect_anomalies",
                "params": {
                    "estimator": estimator,
                    "label_column": "planted",
                    "hyperparams": ANOMALY_DETECTION[estimator],
                },
            },
            {"type": "predict"},
        ]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.metrics["recall"] >= 0.8
    assert set(tracking.get_run(run.mlflow_run_id)["metrics"]) == {
        "anomaly_rate",
        "precision",
        "recall",
        "f1",
    }
    predictions = step_output(run, 3)["predictions"]
    assert predictions["prediction"].dtype == bool
    # New rows far out are flagged, rows at the centre are not.
    assert predictions.loc[predictions["planted"] == 1, "prediction"].mean() >= 0.8
    model = logged_model(run)
    assert is_outlier_detector(model)
    expected = model.predict(planted[["a", "b", "c"]]) == -1
    assert (predictions["prediction"] == expected).all()
    centre = pd.DataFrame([[0.0, 0.0, 0.0], [6.0, 6.0, 6.0]], columns=["a", "b", "c"])
    assert model.predict(centre).tolist() == [1, -1]


@pytest.mark.django_db
def test_pca_run_logs_the_model_and_predicts_components(make_pipeline):
    wine = bundled("wine")
    pipeline = make_pipeline(
        [
            {"type": "sklearn_dataset", "params": {"name": "wine"}},
            {"type": "reduce_dimensions", "params": {"n_components": 2, "exclude": ["target"]}},
            {"type": "predict"},
        ]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert 0.5 < run.metrics["explained_variance_ratio_total"] < 0.6  # about 55% for wine
    assert run.step_runs.get(order=2).columns_out == 16  # 14 columns + pca0, pca1
    predictions = step_output(run, 3)["predictions"]
    components = logged_model(run).transform(wine.drop(columns="target"))
    # The predict step's components replace the ones the step added.
    assert len(predictions.columns) == 16
    assert list(predictions.columns[-2:]) == ["pca0", "pca1"]
    assert np.allclose(predictions.iloc[:, -2:], components)


@pytest.mark.django_db
def test_pca_run_replacing_the_features_succeeds(make_pipeline):
    pipeline = make_pipeline(
        [
            {"type": "sklearn_dataset", "params": {"name": "wine"}},
            {
                "type": "reduce_dimensions",
                "params": {"n_components": 2, "exclude": ["target"], "mode": "replace"},
            },
        ]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.step_runs.get(order=2).columns_out == 3  # target, pca0, pca1


@pytest.mark.parametrize(
    "slug, known",
    [
        ("cluster", "k_means, dbscan, agglomerative, gaussian_mixture, birch"),
        ("detect_anomalies", "isolation_forest, one_class_svm, local_outlier_factor"),
        ("reduce_dimensions", "pca"),
    ],
)
def test_unknown_estimator_is_rejected_with_the_known_ones(slug, known):
    errors = rejected(slug, estimator="random_forest")

    assert errors[0]["loc"] == ("estimator",)
    assert "unknown estimator 'random_forest'" in errors[0]["msg"]
    assert f"(known: {known})" in errors[0]["msg"]


@pytest.mark.parametrize(
    "slug, estimator, hyperparams, message",
    [
        ("cluster", "k_means", {"clusters": 3}, "'clusters' is not a hyperparameter of KMeans"),
        ("cluster", "k_means", {"n_clusters": 0}, "The 'n_clusters' parameter of KMeans"),
        ("cluster", "dbscan", {"eps": -1}, "The 'eps' parameter of DBSCANClusterer"),
        ("cluster", "agglomerative", {"linkage": "best"}, "The 'linkage' parameter of"),
        ("cluster", "gaussian_mixture", {"n_clusters": 3}, "'n_clusters' is not a hyperpara"),
        ("cluster", "birch", {"threshold": 0}, "The 'threshold' parameter of BirchClusterer"),
        ("detect_anomalies", "isolation_forest", {"contamination": 0.9}, "'contamination'"),
        ("detect_anomalies", "one_class_svm", {"nu": 2}, "The 'nu' parameter of OneClassSVM"),
        ("detect_anomalies", "local_outlier_factor", {"novelty": True}, "'novelty' is not a"),
        ("detect_anomalies", "local_outlier_factor", {"n_neighbors": 0}, "'n_neighbors'"),
        ("reduce_dimensions", "pca", {"whiten": "yes"}, "The 'whiten' parameter of PCA"),
        ("reduce_dimensions", "pca", {"n_components": 3}, "n_components is a parameter of the"),
    ],
)
def test_bad_hyperparameter_is_rejected_by_name(slug, estimator, hyperparams, message):
    errors = rejected(slug, estimator=estimator, hyperparams=hyperparams)

    assert errors[0]["loc"] == ("hyperparams",)
    assert message in errors[0]["msg"]


def test_invalid_parameters_name_the_step_and_field():
    steps = [
        {"type": "sklearn_dataset", "params": {"name": "iris"}},
        {"type": "cluster", "params": {"estimator": "k_means", "hyperparams": {"k": 3}}},
        {"type": "detect_anomalies", "params": {"estimator": "isolation_forest", "rate": 1}},
        {"type": "reduce_dimensions", "params": {"n_components": 1.5, "mode": "swap"}},
    ]

    errors = step_errors(steps)

    assert errors == [
        "step 2, params.hyperparams: 'k' is not a hyperparameter of KMeans",
        "step 3, params.rate: is not a parameter of this step type",
        "step 4, params.n_components: a share of variance must be between 0 and 1",
        "step 4, params.mode: Input should be 'append' or 'replace'",
    ]


@pytest.mark.parametrize(
    "slug, params, message",
    [
        ("cluster", {"exclude": ["species"]}, r"^exclude: column\(s\) \['species'\]"),
        ("cluster", {"features": ["sepal"]}, r"^features: column\(s\) \['sepal'\] not found"),
        ("cluster", {"output_column": "target"}, r"^output_column: the data already has"),
        ("detect_anomalies", {"label_column": "label"}, r"^label_column: column\(s\) \['label'\]"),
        (
            "detect_anomalies",
            {"label_column": "target", "features": ["target"]},
            r"^features: the label column 'target' is listed",
        ),
        (
            "detect_anomalies",
            {"label_column": "target"},
            r"^label_column: values must be 1/True or 0/False, found 2$",
        ),
        ("reduce_dimensions", {"n_components": 6}, r"^n_components: 6 is more than the 5 the"),
    ],
)
def test_data_errors_name_the_field(slug, params, message):
    iris = bundled("iris")
    estimator = {"cluster": "k_means", "detect_anomalies": "isolation_forest"}.get(slug, "pca")

    with pytest.raises(ValueError, match=message):
        run_step(slug, {"data": iris}, estimator=estimator, **params)


def test_excluding_every_column_leaves_nothing_to_learn_from():
    iris = bundled("iris")[["sepal length (cm)", "target"]]

    with pytest.raises(ValueError, match=r"^features: every column is excluded"):
        run_step(
            "cluster", {"data": iris}, estimator="k_means", exclude=["sepal length (cm)", "target"]
        )


def test_reduce_dimensions_refuses_to_overwrite_component_columns():
    wine = bundled("wine")
    once, _ = run_step("reduce_dimensions", {"data": wine}, exclude=["target"])

    with pytest.raises(ValueError, match=r"^mode: the data already has a column 'pca0'"):
        run_step("reduce_dimensions", {"data": once["data"]}, features=list(wine.columns[:13]))
