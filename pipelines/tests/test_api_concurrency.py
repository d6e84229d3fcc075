"""Optimistic concurrency of pipeline edits: reads answer an ETag, edits take If-Match.

Step orders shift after each edit, so an integration editing a step another has just
moved must be refused (412) rather than change the wrong step.
"""

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pipelines import services, step_edits
from pipelines.models import Pipeline, PipelineStep
from pipelines.tests.test_api_wsgi import serve, token_for

pytestmark = pytest.mark.django_db

CHANGE = "pipelines.change_pipeline"
DELETE = "pipelines.delete_pipeline"
LOAD = {"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}}
CLEAN = {"type": "drop_na", "name": "Clean", "params": {"columns": ["target"]}}
FILL = {"type": "fill_na", "name": "Fill", "params": {"value": 0}}
TRIM = {"type": "drop_columns", "name": "Trim", "params": {"columns": ["sepal width (cm)"]}}
PIPELINE = "/api/v1/pipelines/iris/"
STEPS = f"{PIPELINE}steps/"

# Every edit the API offers: method, path, body.
EDITS = {
    "put": ("put", PIPELINE, {"name": "iris", "steps": [LOAD, FILL]}),
    "patch": ("patch", PIPELINE, {"description": "Flowers"}),
    "add step": ("post", STEPS, TRIM),
    "change step": ("patch", f"{STEPS}2/", {"name": "Drop missing"}),
    "remove step": ("delete", f"{STEPS}2/", None),
    "reorder steps": ("post", f"{STEPS}reorder/", {"order": [1, 3, 2]}),
}
WRITES = {**EDITS, "delete": ("delete", PIPELINE, None)}


@pytest.fixture
def iris(make_pipeline):
    return make_pipeline([LOAD, CLEAN, FILL], name="iris")


@pytest.fixture
def editor(api_as):
    return api_as(CHANGE, DELETE, username="editor")


def send(client, edit: str, **headers):
    method, path, body = WRITES[edit]
    return getattr(client, method)(path, body, format="json", **headers)


def state(pipeline: Pipeline) -> tuple:
    """What an edit changes: the definition and the recorded versions."""
    pipeline = Pipeline.objects.get(pk=pipeline.pk)
    versions = list(pipeline.versions.values_list("number", flat=True))
    return services.export_pipeline(pipeline), versions


def changed_by_someone_else(pipeline: Pipeline) -> None:
    """Another integration moves the steps: an order read before now names another step."""
    step_edits.move_steps(pipeline, [1, 3, 2])


# Reads


def test_the_pipeline_its_steps_and_one_step_answer_the_same_strong_etag(iris, editor):
    etags = {editor.get(path)["ETag"] for path in (PIPELINE, STEPS, f"{STEPS}1/")}

    assert len(etags) == 1
    etag = etags.pop()
    assert etag.startswith('"') and etag.endswith('"')
    assert etag == f'"{services.definition_version(iris)}"'


def test_the_etag_changes_with_the_definition_and_only_with_it(iris, editor):
    before = editor.get(PIPELINE)["ETag"]
    assert editor.get(PIPELINE)["ETag"] == before

    changed_by_someone_else(iris)

    assert editor.get(PIPELINE)["ETag"] != before


def test_the_etag_follows_a_change_that_recorded_no_version(iris, editor):
    # The admin's inlines or a shell can change a step without recording a version.
    before = editor.get(PIPELINE)["ETag"]

    PipelineStep.objects.filter(pipeline=iris, order=2).update(name="Renamed")

    assert editor.get(PIPELINE)["ETag"] != before


@pytest.mark.parametrize("path", [PIPELINE, STEPS, f"{STEPS}1/"])
def test_the_body_and_the_etag_come_from_one_read_of_the_steps(iris, editor, path):
    with CaptureQueriesContext(connection) as queries:
        editor.get(path)

    step_reads = [q for q in queries if q["sql"].startswith('SELECT "pipelines_pipelinestep"')]
    assert len(step_reads) == 1


# Writes


@pytest.mark.parametrize("edit", EDITS)
def test_an_edit_answers_the_etag_a_read_then_gives(iris, editor, edit):
    before = editor.get(PIPELINE)["ETag"]

    response = send(editor, edit)

    assert response.status_code in (200, 201, 204)
    assert response["ETag"] not in ("", before)
    assert response["ETag"] == editor.get(PIPELINE)["ETag"]


@pytest.mark.parametrize("edit", WRITES)
def test_an_edit_with_the_etag_as_read_succeeds(iris, editor, edit):
    etag = editor.get(PIPELINE)["ETag"]

    response = send(editor, edit, HTTP_IF_MATCH=etag)

    assert response.status_code in (200, 201, 204)


@pytest.mark.parametrize("edit", WRITES)
def test_an_edit_with_a_stale_etag_is_412_and_changes_nothing(iris, editor, edit):
    stale = editor.get(PIPELINE)["ETag"]
    changed_by_someone_else(iris)
    before = state(iris)

    response = send(editor, edit, HTTP_IF_MATCH=stale)

    assert response.status_code == 412
    assert response.json() == {
        "code": "precondition_failed",
        "message": "iris changed since it was read: it is at version 2 now. "
        "Read it again and redo the change.",
        "errors": [],
    }
    assert state(iris) == before


def test_two_edits_sent_with_the_same_etag_cannot_both_pass(iris, editor):
    etag = editor.get(STEPS)["ETag"]

    first = editor.delete(f"{STEPS}2/", HTTP_IF_MATCH=etag)
    second = editor.patch(
        f"{STEPS}2/", {"name": "Meant for Clean"}, format="json", HTTP_IF_MATCH=etag
    )

    assert (first.status_code, second.status_code) == (204, 412)
    assert [step.name for step in iris.steps.all()] == ["Load", "Fill"]


def test_a_stale_etag_is_412_even_for_a_step_that_is_gone(iris, editor):
    # The order was read from an older version: "read again" helps more than a 404.
    stale = editor.get(STEPS)["ETag"]
    step_edits.remove_step(iris, 2)

    response = editor.patch(f"{STEPS}2/", {"name": "x"}, format="json", HTTP_IF_MATCH=stale)

    assert response.status_code == 412


def test_the_next_edit_goes_through_with_the_etag_an_edit_answered(iris, editor):
    etag = editor.get(STEPS)["ETag"]

    moved = editor.post(f"{STEPS}reorder/", {"order": [1, 3, 2]}, format="json", HTTP_IF_MATCH=etag)
    renamed = editor.patch(
        f"{STEPS}3/", {"name": "Drop missing"}, format="json", HTTP_IF_MATCH=moved["ETag"]
    )

    assert renamed.status_code == 200
    assert [step.name for step in iris.steps.all()] == ["Load", "Fill", "Drop missing"]


@pytest.mark.parametrize("if_match", ["*", ""])
def test_a_star_or_no_if_match_edits_whatever_the_version(iris, editor, if_match):
    changed_by_someone_else(iris)

    response = editor.patch(
        PIPELINE, {"description": "Flowers"}, format="json", HTTP_IF_MATCH=if_match
    )

    assert response.status_code == 200


def test_a_weakened_etag_names_the_same_version(iris, editor):
    # Proxies compressing answers turn "x" into W/"x".
    etag = editor.get(PIPELINE)["ETag"]

    response = editor.patch(
        PIPELINE, {"description": "Flowers"}, format="json", HTTP_IF_MATCH=f"W/{etag}"
    )

    assert response.status_code == 200


@pytest.mark.parametrize("if_match", ["abc", '"a", "b"', '"unclosed'])
def test_an_if_match_that_is_not_one_etag_is_400_and_changes_nothing(iris, editor, if_match):
    before = state(iris)

    response = editor.delete(PIPELINE, HTTP_IF_MATCH=if_match)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["errors"][0]["field"] == "If-Match"
    assert state(iris) == before


# The services: the version is checked against the row as locked, not the caller's copy


def test_an_update_is_checked_against_the_saved_definition_not_the_callers_copy(iris):
    read = Pipeline.objects.get(pk=iris.pk)
    version = services.definition_version(read)
    services.update_pipeline(iris, name="iris-renamed")
    before = state(iris)

    with pytest.raises(services.PipelineChanged):
        services.update_pipeline(read, settings={"description": "x"}, expected_version=version)
    with pytest.raises(services.PipelineChanged):
        step_edits.remove_step(read, 1, expected_version=version)
    with pytest.raises(services.PipelineChanged):
        services.delete_pipeline(read, expected_version=version)
    assert state(iris) == before


def test_an_update_gives_the_version_it_saved(iris):
    version = services.definition_version(iris)

    services.update_pipeline(iris, settings={"description": "x"}, expected_version=version)

    assert iris.saved_version == services.definition_version(iris) != version


# Through the WSGI application, as a server serves it


@pytest.mark.django_db(transaction=True)
def test_an_etag_read_through_a_server_guards_the_next_edit(django_user_model, make_pipeline):
    make_pipeline([LOAD, CLEAN, FILL], name="iris")
    token = token_for(django_user_model, "integrator", "change_pipeline")
    read = serve("GET", STEPS, token)

    as_read = {"HTTP_IF_MATCH": read.headers["ETag"]}

    edited = serve("POST", f"{STEPS}reorder/", token, {"order": [1, 3, 2]}, **as_read)
    refused = serve("PATCH", f"{STEPS}2/", token, {"name": "Meant for Clean"}, **as_read)

    assert edited.status == 200 and edited.headers["ETag"] != read.headers["ETag"]
    assert refused.status == 412
    assert refused.json()["code"] == "precondition_failed"
    assert serve("GET", STEPS, token).headers["ETag"] == edited.headers["ETag"]
    assert [step["name"] for step in serve("GET", STEPS, token).json()] == [
        "Load",
        "Fill",
        "Clean",
    ]


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_of_edits_racing_with_one_etag_exactly_one_passes(make_pipeline):
    # Eight editors read the same version and save at once: the check under the row lock
    # lets one through; the others find the definition changed.
    pipeline = make_pipeline([LOAD, CLEAN, FILL], name="iris")
    read = services.definition_version(pipeline)
    versions_before = pipeline.versions.count()
    barrier, outcomes = threading.Barrier(8), []

    def edit(number):
        try:
            barrier.wait()
            step_edits.change_step(
                Pipeline.objects.get(pk=pipeline.pk),
                2,
                name=f"edit {number}",
                expected_version=read,
            )
            outcomes.append("saved")
        except services.PipelineChanged:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=edit, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["refused"] * 7 + ["saved"]
    assert pipeline.versions.count() == versions_before + 1
    assert PipelineStep.objects.get(pipeline=pipeline, order=2).name.startswith("edit ")
