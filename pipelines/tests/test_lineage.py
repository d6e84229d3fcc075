"""Lineage: saved predictions name the run and model that made them, the run records
what it wrote, and its page (and API) says what it read and wrote.

Real runs end to end: a CSV dataset scored into a new dataset version, and a query on a
real PostgreSQL scored with a registered model into a table of the same database.
"""

import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conftest import require_service
from datasources.models import Dataset
from datasources.services import read_dataset
from experiments import tracking
from pipelines import runs
from pipelines.choices import RunStatus, StepRunStatus
from pipelines.models import PipelineRun, RunOutput, StepRun

PASSWORD = "lineage-secret-" + uuid.uuid4().hex[:8]
PG_HOST, PG_PORT = "127.0.0.1", 5432
QUERY = "SELECT x1, x2, colour FROM applicants WHERE colour <> 'none'"
TRAIN = {
    "type": "train_sklearn",
    "name": "Train",
    "params": {"task": "classification", "estimator": "logistic_regression", "target": "label"},
}


def page_text(client, url) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def section(page: str, heading_id: str) -> str:
    """The part of the lineage section from the heading `heading_id` to the next one."""
    start = page.index(f'id="{heading_id}"')
    following = re.search(r"<h[23] ", page[start:])
    return page[start : start + following.start()] if following else page[start:]


@pytest.fixture
def applicants(classification_frame):
    """A real PostgreSQL database `warehouse` whose `applicants` table holds rows to score,
    reached by a password account that may write."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    import psycopg

    name, role = f"mlops_lineage_{uuid.uuid4().hex[:8]}", f"mlops_lineage_{uuid.uuid4().hex[:6]}"

    def connect(dbname="postgres"):
        return psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname=dbname)

    with connect() as admin:
        admin.autocommit = True
        admin.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{PASSWORD}'")
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
    rows = classification_frame.drop(columns="label").head(30)
    with connect(name) as admin:
        admin.execute(f'SET ROLE "{role}"')
        admin.execute(
            "CREATE TABLE applicants (x1 DOUBLE PRECISION, x2 DOUBLE PRECISION, colour TEXT)"
        )
        with admin.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO applicants VALUES (%s, %s, %s)",
                rows.astype(object).where(rows.notna(), None).values.tolist(),
            )
    yield {"database": name, "role": role, "rows": len(rows), "connect": lambda: connect(name)}
    with connect() as admin:
        admin.autocommit = True
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def warehouse(db, applicants):
    from datasources.sources import save_source

    values = {
        "name": "warehouse",
        "kind": "postgresql",
        "host": PG_HOST,
        "port": PG_PORT,
        "database": applicants["database"],
        "user": applicants["role"],
        "allow_writes": True,
    }
    return save_source(values, secret=PASSWORD)


def test_predictions_saved_as_a_dataset_name_their_run_and_model(
    make_dataset,
    make_pipeline,
    classification_frame,
    viewer_client,
    django_user_model,
    admin_client,
):
    loans = make_dataset(classification_frame, "loans")
    pipeline = make_pipeline(
        [
            {"type": "csv", "name": "Extract", "params": {"dataset": "loans"}},
            TRAIN,
            {"type": "predict", "name": "Predict"},
            {"type": "save_dataset", "params": {"name": "loans-scored", "source": "predictions"}},
            {
                "type": "save_dataset",
                "params": {
                    "name": "loans-plain",
                    "source": "predictions",
                    "lineage_columns": False,
                },
            },
        ],
        name="score-loans",
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    model_uri = tracking.get_run(run.mlflow_run_id)["tags"]["mlops.model_uri"]
    scored, plain = (
        Dataset.objects.get(name="loans-scored"),
        Dataset.objects.get(name="loans-plain"),
    )
    rows = read_dataset(scored)
    assert list(rows.columns[-2:]) == ["mlops_run_id", "mlops_model_uri"]
    assert set(rows["mlops_run_id"]) == {run.pk} and set(rows["mlops_model_uri"]) == {model_uri}
    assert "mlops_run_id" not in read_dataset(plain).columns
    outputs = [
        (o.step_order, o.kind, o.dataset, o.dataset_label, o.rows, o.model_uri, o.lineage_columns)
        for o in run.outputs.all()
    ]
    assert outputs == [
        (4, "dataset", scored, "loans-scored v1", 200, model_uri, True),
        (5, "dataset", plain, "loans-plain v1", 200, model_uri, False),
    ]

    page = page_text(viewer_client, f"/runs/{run.pk}/")
    read = section(page, "lineage-read")
    assert 'href="/data/datasets/view/loans/?version=1">loans v1</a>' in read
    assert loans.checksum in read
    wrote = section(page, "lineage-wrote")
    assert 'href="/data/datasets/view/loans-scored/?version=1">loans-scored v1</a>' in wrote
    assert f"Predictions of <code>{model_uri}</code>, with lineage columns" in wrote
    assert wrote.count("with lineage columns") == 1
    predicted = section(page, "lineage-model")
    assert f"Step 3 predicted with <code>{model_uri}</code>" in predicted
    assert "(trained in this run)" in predicted

    dataset_page = page_text(viewer_client, "/data/datasets/view/loans-scored/")
    assert f'href="/runs/{run.pk}/#lineage">run #{run.pk}</a>, step 4' in dataset_page

    user = django_user_model.objects.get(username="viewer")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    lineage = api.get(f"/api/runs/{run.pk}/").json()["lineage"]
    assert lineage["reads"][0]["checksum"] == loans.checksum
    assert [w["dataset"] for w in lineage["writes"]] == ["loans-scored v1", "loans-plain v1"]

    admin_page = admin_client.get(f"/admin/pipelines/pipelinerun/{run.pk}/change/")
    assert admin_page.status_code == 200
    inline = admin_page.content.decode().split('id="outputs-group"', 1)[1]
    assert "Run outputs" in inline and "loans-plain v1" in inline


def test_registered_model_scores_a_query_into_a_postgresql_table(
    warehouse, applicants, make_dataset, make_pipeline, classification_frame, viewer_client
):
    make_dataset(classification_frame, "loans")
    train = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "loans"}},
            TRAIN,
            {"type": "register_model", "params": {"name": "loans", "alias": "champion"}},
        ],
        name="train-loans",
    )
    score = make_pipeline(
        [
            {
                "type": "sql",
                "name": "Applicants",
                "params": {
                    "datasource": "warehouse",
                    "query": QUERY,
                    "version_query": "SELECT COUNT(*) FROM applicants",
                },
            },
            {"type": "predict", "params": {"model_uri": "models:/loans@champion"}},
            {
                "type": "save_table",
                "params": {
                    "datasource": "warehouse",
                    "table": "scored",
                    "mode": "replace",
                    "source": "predictions",
                },
            },
        ],
        name="score-applicants",
    )

    trained = runs.start_run(train, wait=True)
    scored = runs.start_run(score, wait=True)

    assert trained.status == scored.status == RunStatus.SUCCEEDED, scored.error_message
    with applicants["connect"]() as database:
        written = database.execute(
            "SELECT mlops_run_id, mlops_model_uri, COUNT(*) FROM scored GROUP BY 1, 2"
        ).fetchall()
    assert written == [(scored.pk, "models:/loans/1", applicants["rows"])]
    output = scored.outputs.get()
    assert (output.kind, output.datasource, output.table, output.mode, output.rows) == (
        "table",
        "warehouse",
        "scored",
        "replace",
        applicants["rows"],
    )
    assert (output.step_order, output.model_uri, output.dataset) == (3, "models:/loans/1", None)

    page = page_text(viewer_client, f"/runs/{scored.pk}/")
    read = section(page, "lineage-read")
    assert "Data source <strong>warehouse</strong>" in read
    assert "SELECT x1, x2, colour FROM applicants WHERE colour &lt;&gt; &#x27;none&#x27;" in read
    assert f"version query returned <code>{applicants['rows']}</code>" in read
    wrote = section(page, "lineage-wrote")
    assert "Table <code>scored</code> of data source <strong>warehouse</strong>" in wrote
    assert "Predictions of <code>models:/loans/1</code>, with lineage columns" in wrote
    predicted = section(page, "lineage-model")
    assert "predicted with <code>models:/loans/1</code>" in predicted
    assert "(asked for <code>models:/loans@champion</code>)" in predicted
    assert PASSWORD not in page

    training_page = page_text(viewer_client, f"/runs/{trained.pk}/")
    assert "Registered model <strong>loans</strong> version 1" in training_page
    assert "(alias champion)" in training_page


def test_a_run_that_saved_nothing_says_what_to_add(make_pipeline, viewer_client):
    pipeline = make_pipeline([{"type": "sklearn_dataset", "params": {"name": "iris"}}])

    run = runs.start_run(pipeline, wait=True)

    page = page_text(viewer_client, f"/runs/{run.pk}/")
    assert "iris (scikit-learn " in section(page, "lineage-read")
    assert "This run saved nothing: add a <code>save_dataset</code>" in page
    assert not RunOutput.objects.exists()


def finished_run(pipeline, reads: int) -> PipelineRun:
    """A finished run that read `reads` dataset versions and saved each as a new one."""
    run = PipelineRun.objects.create(
        pipeline=pipeline,
        definition=pipeline.definition(),
        status=RunStatus.SUCCEEDED,
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    for index in range(reads):
        read = Dataset.objects.get(name=f"in-{index}")
        saved = Dataset.objects.get(name=f"out-{index}")
        summary = {"dataset": str(read), "checksum": read.checksum, "dataset_id": read.pk}
        StepRun.objects.create(
            run=run, order=2 * index + 1, step_type="csv", status="succeeded", summary=summary
        )
        StepRun.objects.create(
            run=run, order=2 * index + 2, step_type="save_dataset", status=StepRunStatus.SUCCEEDED
        )
        RunOutput.objects.create(
            run=run,
            step_order=2 * index + 2,
            kind="dataset",
            dataset=saved,
            dataset_label=str(saved),
        )
    return run


def test_run_page_queries_do_not_grow_with_reads_and_writes(
    make_dataset, make_pipeline, classification_frame, viewer_client
):
    for index in range(12):
        make_dataset(classification_frame.head(3), f"in-{index}")
        make_dataset(classification_frame.head(2), f"out-{index}")
    pipeline = make_pipeline([{"type": "csv", "params": {"dataset": "in-0"}}])
    small, large = finished_run(pipeline, 1), finished_run(pipeline, 12)

    with CaptureQueriesContext(connection) as few:
        page_text(viewer_client, f"/runs/{small.pk}/")
    with CaptureQueriesContext(connection) as many:
        page = page_text(viewer_client, f"/runs/{large.pk}/")

    assert len(many) == len(few)
    assert section(page, "lineage-read").count("/data/datasets/view/in-") == 12
    assert section(page, "lineage-wrote").count("/data/datasets/view/out-") == 12


def test_lineage_section_follows_a_running_run_and_stops_when_it_ends(make_pipeline, viewer_client):
    pipeline = make_pipeline([{"type": "sklearn_dataset", "params": {"name": "iris"}}])
    run = PipelineRun.objects.create(pipeline=pipeline, definition=pipeline.definition())
    poll = {"HX-Request": "true", "HX-Target": "lineage"}

    assert 'hx-trigger="every 3s"' in section(
        page_text(viewer_client, f"/runs/{run.pk}/"), "lineage"
    )
    waiting = viewer_client.get(f"/runs/{run.pk}/", headers=poll)
    assert waiting.status_code == 200
    assert "Appears when the run's extraction steps have finished." in waiting.content.decode()

    ended = timezone.now() - timedelta(minutes=1)
    PipelineRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, finished_at=ended)
    final = viewer_client.get(f"/runs/{run.pk}/", headers=poll)
    assert final.status_code == 286
    assert "hx-trigger" not in final.content.decode()
    assert "This run saved nothing" in final.content.decode()
