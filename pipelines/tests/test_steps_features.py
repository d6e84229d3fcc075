import numpy as np
import pandas as pd
import pytest

from experiments import tracking
from pipelines import runs
from pipelines.choices import RunStatus
from pipelines.tests.helpers import bundled, rejected_texts, run_step


def correlate(data, **params):
    return run_step("correlation_report", {"data": data}, **params)


def test_correlation_report_lists_the_strongest_pairs_by_absolute_value():
    context, log = correlate(bundled("diabetes"), top=3)

    assert context["_summary"] == {
        "method": "pearson",
        "strongest_pairs": [
            {"columns": ["s1", "s2"], "correlation": 0.8967},
            {"columns": ["s3", "s4"], "correlation": -0.7385},
            {"columns": ["s2", "s4"], "correlation": 0.6598},
        ],
    }
    assert log == ["pearson correlation of 11 columns; strongest: s1 ~ s2 +0.897"]


def test_correlation_report_saves_the_matrix_and_leaves_the_data_alone():
    data = bundled("diabetes")

    context, _ = correlate(data)

    matrix = context["_artifacts"]["correlation.csv"]
    assert list(matrix.columns) == ["column", *data.columns]
    assert matrix["column"].tolist() == list(data.columns)
    values = matrix.drop(columns="column").to_numpy()
    assert np.allclose(np.diag(values), 1.0)
    assert np.allclose(values, values.T)
    assert context["data"] is data


def test_spearman_sees_a_monotonic_relation_that_pearson_underrates():
    x = np.random.default_rng(0).uniform(0, 5, size=200)
    data = pd.DataFrame({"x": x, "growth": np.exp(x)})

    pearson, _ = correlate(data)
    spearman, _ = correlate(data, method="spearman")
    kendall, _ = correlate(data, method="kendall")

    assert pearson["_summary"]["strongest_pairs"][0]["correlation"] < 0.9
    assert spearman["_summary"]["strongest_pairs"][0]["correlation"] == 1.0
    assert kendall["_summary"]["strongest_pairs"][0]["correlation"] == 1.0


def test_correlation_report_uses_listed_columns_and_true_false_ones():
    data = bundled("diabetes").assign(high=lambda frame: frame["target"] > 200)

    context, _ = correlate(data, columns=["bmi", "high"])

    assert context["_artifacts"]["correlation.csv"]["column"].tolist() == ["bmi", "high"]
    assert 0.4 < context["_summary"]["strongest_pairs"][0]["correlation"] < 0.6


def test_correlation_report_leaves_out_pairs_with_a_constant_column():
    data = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [2.0, 4.0, 7.0], "same": [5.0, 5.0, 5.0]})

    context, _ = correlate(data)

    assert [pair["columns"] for pair in context["_summary"]["strongest_pairs"]] == [["a", "b"]]


def test_correlation_report_refuses_text_columns_and_names_them():
    data = bundled("diabetes").assign(group=lambda frame: np.where(frame["sex"] > 0, "a", "b"))

    with pytest.raises(ValueError, match=r"^columns: column\(s\) \['group'\] are not numeric"):
        correlate(data, columns=["bmi", "group"])


def test_correlation_report_needs_two_numeric_columns():
    data = pd.DataFrame({"name": ["a", "b"], "n": [1, 2]})

    with pytest.raises(
        ValueError, match=r"^columns: a correlation needs at least 2 numeric columns, got \['n'\]"
    ):
        correlate(data)


@pytest.mark.parametrize(
    "params, error",
    [
        ({"columns": ["bmi"]}, "params.columns: a correlation needs at least 2 columns"),
        ({"method": "cosine"}, "params.method: Input should be 'pearson', 'spearman' or 'kendall'"),
        ({"top": 0}, "params.top: Input should be greater than or equal to 1"),
    ],
)
def test_correlation_report_rejects_bad_parameters(params, error):
    assert rejected_texts("correlation_report", **params) == [error]


@pytest.mark.django_db
def test_correlation_report_in_a_run_logs_the_matrix_to_mlflow(make_pipeline):
    pipeline = make_pipeline(
        [
            {"type": "sklearn_dataset", "params": {"name": "iris"}},
            {"type": "correlation_report", "params": {"method": "spearman", "top": 2}},
        ]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    step = run.step_runs.get(order=2)
    assert (step.rows_in, step.columns_in, step.rows_out, step.columns_out) == (150, 5, 150, 5)
    assert step.summary["artifacts"] == ["step_2/correlation.csv"]
    # By rank, petal width follows the species (target) a little more closely than length.
    assert step.summary["strongest_pairs"] == [
        {"columns": ["petal width (cm)", "target"], "correlation": 0.9382},
        {"columns": ["petal length (cm)", "petal width (cm)"], "correlation": 0.9377},
    ]
    assert tracking.artifact_paths(run.mlflow_run_id, "step_2") == ["step_2/correlation.csv"]
    matrix = pd.read_csv(tracking.download_artifact(run.mlflow_run_id, "step_2/correlation.csv"))
    assert matrix.columns[0] == "column"
    assert matrix.shape == (5, 6)
    assert matrix.set_index("column").loc["target", "target"] == pytest.approx(1.0)
