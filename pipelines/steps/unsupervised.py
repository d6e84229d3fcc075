"""Unsupervised training: clustering, anomaly detection and dimensionality reduction.

Each step fits the same preparation as supervised training (imputation, scaling,
one-hot encoding) and an estimator in one sklearn Pipeline, so the logged model reads
raw rows. A few sklearn estimators are wrapped here: DBSCAN, agglomerative clustering
and local outlier factor cannot label new rows, skops cannot save a fitted Birch, and
sklearn does not count a Gaussian mixture as a clusterer. Wrapped, each one labels new
rows in the predict step and when loaded back from MLflow.
"""

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt, ValidationInfo, field_validator
from sklearn import metrics as sk_metrics
from sklearn.base import BaseEstimator, ClusterMixin, OutlierMixin
from sklearn.cluster import DBSCAN, AgglomerativeClustering, Birch
from sklearn.metrics import pairwise_distances_argmin
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from pipelines.choices import StepKind
from pipelines.engine.context import require_columns
from pipelines.engine.registry import StepParams, StepType, register
from pipelines.steps.estimators import build_estimator, check_estimator, register_estimators
from pipelines.steps.training import _preparation

# Silhouette compares every pair of rows; above this many rows it is computed on a
# random sample of them, which estimates it closely at a fraction of the cost.
SILHOUETTE_SAMPLE = 5000


def _constraints(estimator_class: type, without: set[str]) -> dict:
    """The parameter rules of a wrapped sklearn class, less those the wrapper fixes."""
    rules = estimator_class._parameter_constraints
    return {name: rule for name, rule in rules.items() if name not in without}


class DBSCANClusterer(DBSCAN):
    """DBSCAN that also labels new rows.

    A new row joins the cluster of its nearest core sample when that sample is within
    `eps` (the same rule DBSCAN uses for border points); any other row is noise (-1).
    """

    def fit(self, X, y=None, sample_weight=None):
        super().fit(X, y, sample_weight=sample_weight)
        self.core_labels_ = self.labels_[self.core_sample_indices_]
        self.core_neighbors_ = None
        if len(self.components_):
            self.core_neighbors_ = NearestNeighbors(
                n_neighbors=1,
                algorithm=self.algorithm,
                leaf_size=self.leaf_size,
                metric=self.metric,
                metric_params=self.metric_params,
                p=self.p,
            ).fit(self.components_)
        return self

    def predict(self, X):
        check_is_fitted(self, "core_labels_")
        if self.core_neighbors_ is None:
            return np.full(len(X), -1)
        distances, nearest = self.core_neighbors_.kneighbors(X)
        return np.where(distances[:, 0] <= self.eps, self.core_labels_[nearest[:, 0]], -1)


class AgglomerativeClusterer(AgglomerativeClustering):
    """Agglomerative clustering that also labels new rows.

    The merge tree cannot take new rows, so a new row joins the cluster whose centroid
    (mean of its training rows) is nearest in Euclidean distance.
    """

    def fit(self, X, y=None):
        super().fit(X, y)
        X = np.asarray(X, dtype=float)
        self.centroids_ = np.array(
            [X[self.labels_ == label].mean(axis=0) for label in range(self.n_clusters_)]
        )
        return self

    def predict(self, X):
        check_is_fitted(self, "centroids_")
        return pairwise_distances_argmin(X, self.centroids_)


class GaussianMixtureClusterer(ClusterMixin, GaussianMixture):
    """A Gaussian mixture used as a clusterer: a row's cluster is its likeliest component.

    sklearn counts a mixture as a density estimator; the mixin makes it a clusterer
    (`is_clusterer`), with the training rows' clusters in `labels_`.
    """

    def fit(self, X, y=None):
        self.labels_ = GaussianMixture.fit_predict(self, X)
        return self


class BirchClusterer(ClusterMixin, BaseEstimator):
    """Birch that keeps only what labelling rows needs.

    skops cannot save Birch's tree of subclusters, which only further (partial) fitting
    uses. A row's cluster is that of its nearest subcluster centre, as in Birch.
    """

    _parameter_constraints: ClassVar[dict] = _constraints(Birch, without={"compute_labels"})

    def __init__(self, *, threshold=0.5, branching_factor=50, n_clusters=3):
        self.threshold = threshold
        self.branching_factor = branching_factor
        self.n_clusters = n_clusters

    def fit(self, X, y=None):
        birch = Birch(**self.get_params()).fit(X)
        self.subcluster_centers_ = birch.subcluster_centers_
        self.subcluster_labels_ = birch.subcluster_labels_
        self.labels_ = birch.labels_
        return self

    def predict(self, X):
        check_is_fitted(self, "subcluster_centers_")
        return self.subcluster_labels_[pairwise_distances_argmin(X, self.subcluster_centers_)]


class LocalOutlierFactorDetector(OutlierMixin, BaseEstimator):
    """Local outlier factor that flags the training rows and new rows.

    sklearn's LOF either flags the rows it was fitted on (novelty=False) or new rows
    (novelty=True). One novelty fit does both: the training rows' flags in `labels_`
    (what `fit_predict` returns) are those a novelty=False fit gives, and `predict`
    scores new rows against the training rows.
    """

    _parameter_constraints: ClassVar[dict] = _constraints(LocalOutlierFactor, without={"novelty"})

    def __init__(
        self,
        n_neighbors=20,
        *,
        algorithm="auto",
        leaf_size=30,
        metric="minkowski",
        p=2,
        metric_params=None,
        contamination="auto",
        n_jobs=None,
    ):
        self.n_neighbors = n_neighbors
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.metric = metric
        self.p = p
        self.metric_params = metric_params
        self.contamination = contamination
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        self.detector_ = LocalOutlierFactor(novelty=True, **self.get_params()).fit(X)
        outlying = self.detector_.negative_outlier_factor_ < self.detector_.offset_
        self.labels_ = np.where(outlying, -1, 1)
        return self

    def fit_predict(self, X, y=None):
        return self.fit(X).labels_

    def predict(self, X):
        check_is_fitted(self, "detector_")
        return self.detector_.predict(X)


register_estimators(
    "clustering",
    {
        "k_means": "sklearn.cluster.KMeans",
        "dbscan": "pipelines.steps.unsupervised.DBSCANClusterer",
        "agglomerative": "pipelines.steps.unsupervised.AgglomerativeClusterer",
        "gaussian_mixture": "pipelines.steps.unsupervised.GaussianMixtureClusterer",
        "birch": "pipelines.steps.unsupervised.BirchClusterer",
    },
)
register_estimators(
    "anomaly_detection",
    {
        "isolation_forest": "sklearn.ensemble.IsolationForest",
        "one_class_svm": "sklearn.svm.OneClassSVM",
        "local_outlier_factor": "pipelines.steps.unsupervised.LocalOutlierFactorDetector",
    },
)
register_estimators("dimensionality_reduction", {"pca": "sklearn.decomposition.PCA"})


class UnsupervisedParams(StepParams):
    task: ClassVar[str]

    estimator: str = Field(
        description="Estimator slug for the step's task (see Estimators by task)."
    )
    features: list[str] | None = Field(
        None, description="Columns to learn from; all columns except `exclude` when empty."
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="Columns left out when `features` is empty, such as a known label.",
    )
    hyperparams: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of the estimator, checked against it."
    )
    random_state: int | None = Field(
        42, description="Seed of estimators that draw random numbers, for repeatable runs."
    )

    @field_validator("estimator")
    @classmethod
    def estimator_known(cls, value: str):
        check_estimator(cls.task, value)
        return value

    @field_validator("hyperparams")
    @classmethod
    def hyperparams_valid(cls, value: dict, info: ValidationInfo):
        if info.data.get("estimator"):
            build_estimator(cls.task, info.data["estimator"], value)
        return value


class UnsupervisedStep(StepType):
    """Fit preparation + estimator on the feature columns; add its output to `data`."""

    kind = StepKind.TRAINING
    requires = ("data",)
    produces = ("model", "metrics", "data")
    # The parameter that names the output columns, for the error when one is taken.
    output_field = "output_column"

    def run(self, context, params, log):
        frame = context["data"]
        X = frame[self.feature_columns(frame, params)]
        estimator = build_estimator(
            params.task, params.estimator, self.estimator_params(params), params.random_state
        )
        model = Pipeline([("prepare", _preparation(X)), ("estimator", estimator)])
        outputs, scores, details = self.fit(model, frame, X, params)
        log(f"{type(estimator).__name__} on {len(X)} rows: {_format(scores)}")
        context["data"] = self.with_outputs(frame, list(X.columns), outputs, params)
        context["model"] = model
        context["metrics"] = {**context.get("metrics", {}), **scores}
        context["_summary"] = {
            "estimator": type(estimator).__name__,
            "features": list(X.columns),
            "metrics": scores,
            **details,
        }
        return context

    def feature_columns(self, frame: pd.DataFrame, params) -> list[str]:
        require_columns(frame, params.exclude, "exclude")
        excluded = {*params.exclude, *self.never_features(params)}
        features = params.features or [c for c in frame.columns if c not in excluded]
        require_columns(frame, features, "features")
        if not features:
            raise ValueError("features: every column is excluded; nothing is left to learn from")
        return features

    def never_features(self, params) -> list[str]:
        """Columns left out even when `features` is empty: a known answer to score against."""
        return []

    def estimator_params(self, params) -> dict:
        return params.hyperparams

    def fit(self, model: Pipeline, frame: pd.DataFrame, X: pd.DataFrame, params):
        """Fit the model on X (the feature columns of frame).

        Returns the columns to add to `data`, the metrics and details for the summary.
        """
        raise NotImplementedError

    def with_outputs(self, frame, features: list[str], outputs: pd.DataFrame, params):
        """`data` with the step's output columns added."""
        taken = [column for column in outputs.columns if column in frame.columns]
        if taken:
            raise ValueError(f"{self.output_field}: the data already has a column {taken[0]!r}")
        return pd.concat([frame, outputs], axis=1)


class ClusterParams(UnsupervisedParams):
    task = "clustering"

    output_column: str = Field(
        "cluster", min_length=1, description="Column of `data` that receives each row's cluster."
    )


@register
class Cluster(UnsupervisedStep):
    """Group rows into clusters and score how well separated the clusters are."""

    slug = "cluster"
    label = "Cluster rows"
    Params = ClusterParams

    def fit(self, model, frame, X, params: ClusterParams):
        labels = model.fit_predict(X)
        prepared = model["prepare"].transform(X)
        scores = cluster_scores(prepared, labels, params.random_state)
        if isinstance(model[-1], DBSCAN):
            scores["noise_share"] = float(np.mean(labels == -1))
        sizes = pd.Series(labels).value_counts().sort_index()
        details = {"cluster_sizes": {str(label): int(size) for label, size in sizes.items()}}
        return pd.DataFrame({params.output_column: labels}, index=X.index), scores, details


def cluster_scores(prepared: np.ndarray, labels: np.ndarray, random_state) -> dict[str, float]:
    """Cluster count and separation scores, leaving out noise rows (label -1).

    The separation scores need at least two clusters and fewer clusters than rows;
    otherwise only the count is reported.
    """
    clustered = labels != -1
    prepared, labels = prepared[clustered], labels[clustered]
    count = len(np.unique(labels))
    scores = {"n_clusters": float(count)}
    if not 2 <= count < len(labels):
        return scores
    sample = SILHOUETTE_SAMPLE if len(labels) > SILHOUETTE_SAMPLE else None
    silhouette = sk_metrics.silhouette_score(
        prepared, labels, sample_size=sample, random_state=random_state
    )
    scores["silhouette"] = float(silhouette)
    scores["davies_bouldin"] = float(sk_metrics.davies_bouldin_score(prepared, labels))
    scores["calinski_harabasz"] = float(sk_metrics.calinski_harabasz_score(prepared, labels))
    return scores


class DetectParams(UnsupervisedParams):
    task = "anomaly_detection"

    label_column: str | None = Field(
        None,
        description="Known anomalies (1 or True) to score precision, recall and f1 against; "
        "never a feature.",
    )
    output_column: str = Field(
        "anomaly", min_length=1, description="Column of `data` set True for flagged rows."
    )


@register
class DetectAnomalies(UnsupervisedStep):
    """Flag unusual rows; with known anomalies, score the flags against them."""

    slug = "detect_anomalies"
    label = "Detect anomalies"
    Params = DetectParams

    def feature_columns(self, frame, params: DetectParams) -> list[str]:
        label = params.label_column
        if label:
            require_columns(frame, [label], "label_column")
            if label in (params.features or []):
                raise ValueError(f"features: the label column {label!r} is listed")
        return super().feature_columns(frame, params)

    def never_features(self, params: DetectParams) -> list[str]:
        return [params.label_column] if params.label_column else []

    def fit(self, model, frame, X, params: DetectParams):
        # sklearn marks anomalies -1 and normal rows 1.
        flagged = pd.Series(model.fit_predict(X) == -1, index=X.index)
        scores = {"anomaly_rate": float(flagged.mean())}
        if params.label_column:
            known = known_anomalies(frame[params.label_column])
            scores |= detection_scores(known, flagged[known.index])
        details = {"anomalies": int(flagged.sum())}
        return flagged.to_frame(params.output_column), scores, details


def known_anomalies(labels: pd.Series) -> pd.Series:
    """The labelled rows of a label column, True for an anomaly (1 or True)."""
    known = labels.dropna()
    unexpected = set(known.unique()) - {0, 1}
    if unexpected:
        shown = ", ".join(sorted(map(str, unexpected))[:5])
        raise ValueError(f"label_column: values must be 1/True or 0/False, found {shown}")
    if known.empty:
        raise ValueError(f"label_column: {labels.name!r} has no values")
    return known.astype(bool)


def detection_scores(known: pd.Series, flagged: pd.Series) -> dict[str, float]:
    return {
        "precision": float(sk_metrics.precision_score(known, flagged, zero_division=0)),
        "recall": float(sk_metrics.recall_score(known, flagged, zero_division=0)),
        "f1": float(sk_metrics.f1_score(known, flagged, zero_division=0)),
    }


class ReduceParams(UnsupervisedParams):
    task = "dimensionality_reduction"

    estimator: str = Field("pca", description="Estimator slug: pca.")
    n_components: PositiveInt | float = Field(
        2,
        description="Components to keep, or a share of the variance (between 0 and 1) that "
        "the kept components must explain.",
    )
    mode: Literal["append", "replace"] = Field(
        "append",
        description="Add the component columns to `data`, or replace the feature columns "
        "with them.",
    )

    @field_validator("n_components")
    @classmethod
    def share_below_one(cls, value):
        if isinstance(value, float) and not 0 < value < 1:
            raise ValueError("a share of variance must be between 0 and 1")
        return value

    @field_validator("hyperparams")
    @classmethod
    def n_components_apart(cls, value: dict):
        if "n_components" in value:
            raise ValueError("n_components is a parameter of the step, not a hyperparameter")
        return value


@register
class ReduceDimensions(UnsupervisedStep):
    """Project the features onto fewer components (pca0, pca1, ...)."""

    slug = "reduce_dimensions"
    label = "Reduce dimensions"
    Params = ReduceParams
    output_field = "mode"

    def estimator_params(self, params: ReduceParams) -> dict:
        return {**params.hyperparams, "n_components": params.n_components}

    def fit(self, model, frame, X, params: ReduceParams):
        # Fitted in two parts to check n_components against the prepared columns first.
        prepared = model["prepare"].fit_transform(X)
        most = min(prepared.shape)
        if isinstance(params.n_components, int) and params.n_components > most:
            raise ValueError(
                f"n_components: {params.n_components} is more than the {most} the data allows "
                f"({prepared.shape[0]} rows, {prepared.shape[1]} prepared feature columns)"
            )
        reducer = model[-1].fit(prepared)
        names = list(reducer.get_feature_names_out())
        ratios = dict(zip(names, reducer.explained_variance_ratio_, strict=True))
        scores = {f"explained_variance_ratio_{name}": float(r) for name, r in ratios.items()}
        scores["explained_variance_ratio_total"] = float(sum(ratios.values()))
        components = pd.DataFrame(reducer.transform(prepared), index=X.index, columns=names)
        return components, scores, {"components": len(names)}

    def with_outputs(self, frame, features, outputs, params: ReduceParams):
        if params.mode == "replace":
            frame = frame.drop(columns=features)
        return super().with_outputs(frame, features, outputs, params)


def _format(scores: dict[str, float]) -> str:
    return ", ".join(f"{name}={value:.4f}" for name, value in scores.items())
