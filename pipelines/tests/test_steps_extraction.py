import pandas as pd
import pytest

from datasources.services import pipelines_using
from pipelines import runs
from pipelines.choices import RunStatus
from pipelines.engine.registry import (
    STEP_TYPES,
    DataReferences,
    StepParams,
    StepType,
    get_step_type,
    named_in,
)
from pipelines.tests.helpers import rejected, run_step

pytestmark = pytest.mark.django_db

PEOPLE = pd.DataFrame({"name": ["ann", "bob", "cid"], "age": [31, 42, 27], "city": list("xyz")})


def test_csv_reads_dataset_by_name(make_dataset):
    make_dataset(PEOPLE, "people")

    context, log = run_step("csv", {}, dataset="people")

    pd.testing.assert_frame_equal(context["data"], PEOPLE)
    assert log == ["read 3 rows from dataset " + str(context["_summary"]["dataset"])]


def test_csv_reads_dataset_by_id(make_dataset):
    dataset = make_dataset(PEOPLE, "people")
    make_dataset(PEOPLE.head(1), "people")

    by_int, _ = run_step("csv", {}, dataset=dataset.pk)
    by_text, _ = run_step("csv", {}, dataset=str(dataset.pk))

    assert len(by_int["data"]) == len(by_text["data"]) == 3
    assert by_int["_summary"]["checksum"] == dataset.checksum


def test_csv_by_name_reads_the_latest_version(make_dataset):
    make_dataset(PEOPLE, "people")
    latest = make_dataset(PEOPLE.head(2), "people")

    context, _ = run_step("csv", {}, dataset="people")

    assert context["data"]["name"].tolist() == ["ann", "bob"]
    assert context["_summary"]["checksum"] == latest.checksum
    csv = get_step_type("csv")
    assert csv.source_version(csv.Params(dataset="people")) == latest.checksum


def test_csv_reads_only_the_listed_columns(make_dataset):
    make_dataset(PEOPLE, "people")

    context, _ = run_step("csv", {}, dataset="people", columns=["age", "name"])

    assert sorted(context["data"].columns) == ["age", "name"]
    assert context["data"]["age"].tolist() == [31, 42, 27]


def test_csv_with_empty_column_list_reads_every_column(make_dataset):
    make_dataset(PEOPLE, "people")

    context, _ = run_step("csv", {}, dataset="people", columns=[])

    assert list(context["data"].columns) == ["name", "age", "city"]


def test_csv_limit_reads_the_first_rows(make_dataset):
    make_dataset(PEOPLE, "people")

    context, log = run_step("csv", {}, dataset="people", limit=2)

    assert context["data"]["name"].tolist() == ["ann", "bob"]
    assert log[0].startswith("read 2 rows")


@pytest.mark.parametrize("limit", [0, -1])
def test_csv_limit_must_be_positive(make_dataset, limit):
    make_dataset(PEOPLE, "people")

    errors = rejected("csv", dataset="people", limit=limit)

    assert errors[0]["loc"] == ("limit",)


@pytest.mark.parametrize("reference", ["nobody", 999999, "999999"])
def test_csv_unknown_dataset_is_rejected_with_its_name(reference):
    error = rejected("csv", dataset=reference)[0]
    assert error["loc"] == ("dataset",)
    assert f"dataset {reference!r} does not exist" in error["msg"]


def test_csv_unknown_column_error_names_the_column(make_dataset):
    make_dataset(PEOPLE, "people")

    with pytest.raises(ValueError, match=r"^columns: .*salary"):
        run_step("csv", {}, dataset="people", columns=["name", "salary"])


def test_csv_pipeline_run_reports_rows_and_columns(make_dataset, make_pipeline):
    make_dataset(PEOPLE, "people")
    pipeline = make_pipeline([{"type": "csv", "params": {"dataset": "people", "limit": 2}}])

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    step = run.step_runs.get()
    assert (step.rows_out, step.columns_out) == (2, 3)


@pytest.mark.parametrize(
    "name, rows, columns",
    [("iris", 150, 5), ("wine", 178, 14), ("breast_cancer", 569, 31), ("diabetes", 442, 11)],
)
def test_sklearn_dataset_loads_with_a_target_column(name, rows, columns):
    context, log = run_step("sklearn_dataset", {}, name=name)

    frame = context["data"]
    assert frame.shape == (rows, columns)
    assert frame.columns[-1] == "target"
    assert frame["target"].notna().all()
    assert log == [f"loaded {name}: {rows} rows"]


@pytest.mark.parametrize("name", ["digits", "IRIS", "", "../iris"])
def test_sklearn_dataset_rejects_other_names(name):
    error = rejected("sklearn_dataset", name=name)[0]
    assert error["loc"] == ("name",)
    assert "'iris', 'wine', 'breast_cancer' or 'diabetes'" in error["msg"]


def test_csv_names_the_dataset_it_reads():
    csv = get_step_type("csv")

    assert csv.references({"dataset": "people@2"}) == DataReferences(datasets=("people@2",))
    assert csv.references({"dataset": 7}) == DataReferences(datasets=(7,))
    assert csv.references({"dataset": True}) == csv.references({}) == DataReferences()


class LookupParams(StepParams):
    table: str


class LookupStep(StepType):
    """A plug-in step joining the data with another dataset."""

    slug = "test_lookup"
    kind = "preprocessing"
    Params = LookupParams

    @classmethod
    def references(cls, params: dict) -> DataReferences:
        return DataReferences(datasets=named_in(params, "table"))


def test_pipelines_using_a_dataset_asks_every_step_type(make_dataset, make_pipeline, monkeypatch):
    monkeypatch.setitem(STEP_TYPES, LookupStep.slug, LookupStep)
    make_dataset(PEOPLE, "people")
    cities = make_dataset(PEOPLE[["city"]], "cities")
    make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "people"}},
            {"type": "test_lookup", "params": {"table": "cities"}},
        ],
        name="with-lookup",
    )

    assert pipelines_using(cities) == ["with-lookup"]
