"""/api/v1/pipelines/{reference}/steps/: a pipeline's steps, read and edited one at a time."""

import json
import urllib.error
import urllib.request

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from pipelines import runs, services
from pipelines.api.tokens import issue_token
from pipelines.engine.registry import STEP_TYPES

CHANGE = "pipelines.change_pipeline"
NO_PERMISSION = "This needs the pipelines.change_pipeline permission."
LOAD = {"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}}
CLEAN = {"type": "drop_na", "name": "Clean", "params": {"columns": ["target"]}}
TRIM = {"type": "drop_columns", "name": "Trim", "params": {"columns": ["sepal width (cm)"]}}
FILL = {"type": "fill_na", "name": "Fill", "params": {"value": 0}}
# Filled in when the test runs: test modules register step types of their own (sleep).
KNOWN_TYPES = "<the registered step types>"


def error(code: str, message: str, *errors: dict) -> dict:
    return {"code": code, "message": message, "errors": list(errors)}


def invalid(step: int | None, field: str, message: str) -> dict:
    """The body of an edit refused by pipeline validation, with one error."""
    where = f"step {step}" if step is not None else "pipeline"
    item = {"step": step, "field": field, "message": message}
    return error("pipeline_invalid", f"{where}, {field}: {message}", item)


def malformed(field: str, message: str) -> dict:
    """The body of a request refused before any edit: one rejected field."""
    return error("invalid", f"{field}: {message}", {"field": field, "message": message})


def step(order: int, definition: dict, **changes) -> dict:
    """A step as the API shows it."""
    return {"order": order, "name": "", "params": {}, "enabled": True, **definition, **changes}


def steps_of(pipeline) -> list[dict]:
    return [
        {
            "order": s.order,
            "type": s.step_type,
            "name": s.name,
            "params": s.params,
            "enabled": s.enabled,
        }
        for s in pipeline.steps.all()
    ]


def state(pipeline) -> tuple:
    """What an edit changes: the stored steps and the recorded versions."""
    return steps_of(pipeline), list(pipeline.versions.values_list("number", "summary"))


def latest_version(pipeline):
    return pipeline.versions.order_by("-number").first()


def url(pipeline, tail: str = "") -> str:
    return f"/api/v1/pipelines/{pipeline.name}/steps/{tail}"


@pytest.fixture
def pipeline(make_pipeline):
    return make_pipeline([LOAD, CLEAN, TRIM], name="iris")


@pytest.fixture
def editor(api_as):
    return api_as(CHANGE, username="editor")


@pytest.fixture
def reader(api_as):
    return api_as(username="reader")


# Reading


def test_the_list_gives_every_step_in_order(pipeline, reader):
    response = reader.get(url(pipeline))

    assert response.status_code == 200
    assert response.json() == [step(1, LOAD), step(2, CLEAN), step(3, TRIM)]


def test_one_step_is_read_by_its_order_and_the_pipeline_by_name_or_id(pipeline, reader):
    by_name = reader.get(url(pipeline, "2/"))
    by_id = reader.get(f"/api/v1/pipelines/{pipeline.pk}/steps/2/")

    assert by_name.status_code == by_id.status_code == 200
    assert by_name.json() == by_id.json() == step(2, CLEAN)


@pytest.mark.parametrize(
    "path, message",
    [
        ("/api/v1/pipelines/iris/steps/4/", "iris has no step 4"),
        (
            "/api/v1/pipelines/iris/steps/99999999999999999999/",
            "iris has no step 99999999999999999999",
        ),
        ("/api/v1/pipelines/nothing/steps/", "no pipeline named or numbered 'nothing'"),
        ("/api/v1/pipelines/nothing/steps/1/", "no pipeline named or numbered 'nothing'"),
    ],
)
def test_reading_what_does_not_exist_is_404(pipeline, reader, path, message):
    response = reader.get(path)

    assert response.status_code == 404
    assert response.json() == error("not_found", message)


@pytest.mark.parametrize("tail", ["", "1/"])
def test_reading_needs_a_login(pipeline, tail):
    response = APIClient().get(url(pipeline, tail))

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_the_list_costs_the_same_queries_however_many_steps(make_pipeline, reader):
    short = make_pipeline([LOAD], name="short")
    long = make_pipeline([LOAD, CLEAN, TRIM, FILL, CLEAN, TRIM], name="long")
    reader.get(url(short))  # the first request of a user also records its throttle row

    with CaptureQueriesContext(connection) as one_step:
        assert len(reader.get(url(short)).json()) == 1
    with CaptureQueriesContext(connection) as six_steps:
        assert len(reader.get(url(long)).json()) == 6

    assert len(six_steps) == len(one_step)


def test_the_unversioned_alias_serves_the_steps(pipeline, reader):
    assert reader.get("/api/pipelines/iris/steps/").json() == reader.get(url(pipeline)).json()


# Adding


def test_a_step_added_without_an_order_goes_last(pipeline, editor):
    response = editor.post(
        url(pipeline), {"type": "fill_na", "params": {"value": 0}}, format="json"
    )

    assert response.status_code == 201
    assert response.json() == step(4, {"type": "fill_na", "params": {"value": 0}})
    assert response["Location"] == "http://testserver/api/v1/pipelines/iris/steps/4/"
    assert steps_of(pipeline)[3] == response.json()
    version = latest_version(pipeline)
    assert (version.number, version.summary, version.changed_by) == (2, "added step 4", editor.user)


def test_a_step_added_at_an_order_moves_the_later_steps_down(pipeline, editor):
    response = editor.post(url(pipeline), {**FILL, "order": 2, "enabled": False}, format="json")

    assert response.status_code == 201
    assert response.json() == step(2, FILL, enabled=False)
    assert steps_of(pipeline) == [
        step(1, LOAD),
        step(2, FILL, enabled=False),
        step(3, CLEAN),
        step(4, TRIM),
    ]
    assert latest_version(pipeline).summary == "added step 2"


def test_a_step_can_be_added_to_a_pipeline_with_none(editor):
    draft = services.create_pipeline("draft")

    response = editor.post(url(draft), {**LOAD, "order": 1}, format="json")

    assert response.status_code == 201
    assert steps_of(draft) == [step(1, LOAD)]


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            {"type": "nope"},
            invalid(4, "type", f"unknown step type 'nope' (known: {KNOWN_TYPES})"),
        ),
        (
            {"type": "drop_na", "params": {"how": "some"}},
            invalid(4, "params.how", "Input should be 'any' or 'all'"),
        ),
        (
            {"type": "drop_na", "params": {"colour": "red"}},
            invalid(4, "params.colour", "is not a parameter of this step type"),
        ),
        (
            {"type": "drop_columns"},
            invalid(4, "params.columns", "Field required"),
        ),
        (
            {"type": "fill_na", "params": {"strategy": "value"}},
            invalid(4, "params.value", "required when strategy is 'value'"),
        ),
        (
            {**CLEAN, "order": 1},
            invalid(1, "type", "drop_na needs 'data', which no earlier step produces"),
        ),
        ({**FILL, "order": 5}, invalid(None, "order", "must be between 1 and 4")),
        ({"name": "Fill"}, malformed("type", "This field is required.")),
        (
            {**FILL, "colour": "red"},
            malformed(
                "colour", "Unknown field; a new step accepts: type, name, params, enabled, order."
            ),
        ),
        (
            {**FILL, "order": 0},
            malformed("order", "Ensure this value is greater than or equal to 1."),
        ),
        (
            {"type": "fill_na", "params": ["value", 0]},
            malformed("params", 'Expected a dictionary of items but got type "list".'),
        ),
        (
            {**FILL, "name": "x" * 101},
            malformed("name", "Ensure this field has no more than 100 characters."),
        ),
    ],
)
def test_an_invalid_step_is_refused_and_nothing_is_saved(pipeline, editor, body, expected):
    before = state(pipeline)

    response = editor.post(url(pipeline), body, format="json")

    assert response.status_code == 400
    known = ", ".join(sorted(STEP_TYPES))
    assert response.json() == json.loads(json.dumps(expected).replace(KNOWN_TYPES, known))
    assert state(pipeline) == before


def test_an_order_beyond_a_pipeline_with_no_steps_is_refused(editor):
    draft = services.create_pipeline("draft")

    response = editor.post(url(draft), {**LOAD, "order": 2}, format="json")

    assert response.json() == invalid(None, "order", "must be 1")
    assert steps_of(draft) == []


# Changing, enabling, disabling


def test_a_step_is_renamed_and_its_params_replaced(pipeline, editor):
    changes = {"name": "Clean all", "params": {"how": "all"}}

    response = editor.patch(url(pipeline, "2/"), changes, format="json")

    assert response.status_code == 200
    assert response.json() == step(2, {"type": "drop_na", **changes})
    assert steps_of(pipeline) == [step(1, LOAD), response.json(), step(3, TRIM)]
    version = latest_version(pipeline)
    assert (version.summary, version.changed_by) == ("changed step 2 name, params", editor.user)


def test_a_step_is_disabled_and_enabled_again(pipeline, editor):
    disabled = editor.patch(url(pipeline, "3/"), {"enabled": False}, format="json")
    assert disabled.json() == step(3, TRIM, enabled=False)
    assert latest_version(pipeline).summary == "disabled step 3"

    enabled = editor.patch(url(pipeline, "3/"), {"enabled": True}, format="json")
    assert enabled.json() == step(3, TRIM)
    assert latest_version(pipeline).summary == "enabled step 3"
    assert pipeline.versions.count() == 3


def test_a_patch_changing_nothing_records_no_version(pipeline, editor):
    before = state(pipeline)

    response = editor.patch(url(pipeline, "2/"), {"name": "Clean"}, format="json")

    assert response.status_code == 200
    assert state(pipeline) == before


@pytest.mark.parametrize(
    "order, changes, expected",
    [
        (
            2,
            {"params": {"how": "some"}},
            invalid(2, "params.how", "Input should be 'any' or 'all'"),
        ),
        (3, {"params": {}}, invalid(3, "params.columns", "Field required")),
        (
            1,
            {"enabled": False},
            invalid(2, "type", "drop_na needs 'data', which no earlier step produces"),
        ),
        (
            2,
            {"order": 1},
            malformed(
                "order", "Move steps with POST /api/v1/pipelines/{reference}/steps/reorder/."
            ),
        ),
        (
            2,
            {"type": "fill_na"},
            malformed("type", "A step's type cannot change: delete the step and add one."),
        ),
        (
            2,
            {"colour": "red"},
            malformed("colour", "Unknown field; a step change accepts: name, params, enabled."),
        ),
        (2, {"name": None}, malformed("name", "This field may not be null.")),
        (
            2,
            {"params": "how=all"},
            malformed("params", 'Expected a dictionary of items but got type "str".'),
        ),
        (2, {"enabled": "sometimes"}, malformed("enabled", "Must be a valid boolean.")),
    ],
)
def test_an_invalid_change_is_refused_and_nothing_is_saved(
    pipeline, editor, order, changes, expected
):
    before = state(pipeline)

    response = editor.patch(url(pipeline, f"{order}/"), changes, format="json")

    assert response.status_code == 400
    assert response.json() == expected
    assert state(pipeline) == before


def test_a_step_changed_through_the_api_is_stale_afterwards(pipeline, editor):
    runs.start_run(pipeline, wait=True)
    assert [f.state for f in services.step_freshness(pipeline)] == ["fresh"] * 3

    editor.patch(url(pipeline, "2/"), {"params": {"how": "all"}}, format="json")

    freshness = services.step_freshness(pipeline)
    assert [f.state for f in freshness] == ["fresh", "stale", "stale"]
    assert [f.reason for f in freshness[1:]] == [
        "its parameters changed",
        "an earlier step changed",
    ]


# Reordering


def test_steps_are_reordered_as_a_whole(pipeline, editor):
    response = editor.post(url(pipeline, "reorder/"), {"order": [1, 3, 2]}, format="json")

    assert response.status_code == 200
    assert response.json() == [step(1, LOAD), step(2, TRIM), step(3, CLEAN)]
    assert steps_of(pipeline) == response.json()
    version = latest_version(pipeline)
    assert (version.summary, version.changed_by) == ("moved step 3 to 2", editor.user)


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            {"order": [1, 1, 2]},
            invalid(None, "order", "must list every step's order once: repeats [1]; misses [3]"),
        ),
        (
            {"order": [1, 2, 3, 4]},
            invalid(None, "order", "must list every step's order once: names no step [4]"),
        ),
        (
            {"order": [1, 3, 0, -2]},
            invalid(
                None,
                "order",
                "must list every step's order once: names no step [-2, 0]; misses [2]",
            ),
        ),
        (
            {"order": []},
            invalid(None, "order", "must list every step's order once: misses [1, 2, 3]"),
        ),
        (
            {"order": [2, 1, 3]},
            invalid(1, "type", "drop_na needs 'data', which no earlier step produces"),
        ),
        ({}, malformed("order", "This field is required.")),
        ({"order": "3,2,1"}, malformed("order", 'Expected a list of items but got type "str".')),
        ({"order": [1, "two", 3]}, malformed("order.1", "A valid integer is required.")),
        (
            {"order": [1, 2, 3], "steps": [1]},
            malformed("steps", "Unknown field; a reorder accepts: order."),
        ),
    ],
)
def test_an_order_that_is_not_a_valid_sequence_of_the_steps_is_refused(
    pipeline, editor, body, expected
):
    before = state(pipeline)

    response = editor.post(url(pipeline, "reorder/"), body, format="json")

    assert response.status_code == 400
    assert response.json() == expected
    assert state(pipeline) == before


# Deleting


def test_a_deleted_step_is_gone_and_the_later_steps_move_up(pipeline, editor):
    response = editor.delete(url(pipeline, "2/"))

    assert response.status_code == 204
    assert steps_of(pipeline) == [step(1, LOAD), step(2, TRIM)]
    version = latest_version(pipeline)
    assert (version.summary, version.changed_by) == ("removed step 2", editor.user)


def test_a_step_later_steps_need_is_not_deleted(pipeline, editor):
    before = state(pipeline)

    response = editor.delete(url(pipeline, "1/"))

    assert response.status_code == 400
    assert response.json() == invalid(
        1, "type", "drop_na needs 'data', which no earlier step produces"
    )
    assert state(pipeline) == before


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_editing_a_step_that_does_not_exist_is_404(pipeline, editor, method):
    before = state(pipeline)

    response = getattr(editor, method)(url(pipeline, "4/"), {}, format="json")

    assert response.status_code == 404
    assert response.json() == error("not_found", "iris has no step 4")
    assert state(pipeline) == before


# Permissions

EDITS = [
    ("post", "", {**FILL}),
    ("patch", "2/", {"name": "Renamed"}),
    ("delete", "3/", None),
    ("post", "reorder/", {"order": [1, 3, 2]}),
]


@pytest.mark.parametrize("method, tail, body", EDITS)
def test_editing_without_the_change_permission_is_403_and_changes_nothing(
    pipeline, api_as, method, tail, body
):
    # Adding or deleting a step changes the pipeline: the add and delete permissions of
    # pipelines are not enough.
    client = api_as("pipelines.add_pipeline", "pipelines.delete_pipeline")
    before = state(pipeline)

    response = getattr(client, method)(url(pipeline, tail), body, format="json")

    assert response.status_code == 403
    assert response.json() == error("permission_denied", NO_PERMISSION)
    assert state(pipeline) == before


@pytest.mark.parametrize("method, tail, body", EDITS)
def test_editing_without_a_login_is_401_and_changes_nothing(pipeline, method, tail, body):
    before = state(pipeline)

    response = getattr(APIClient(), method)(url(pipeline, tail), body, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert state(pipeline) == before


@pytest.mark.parametrize("method, tail, body", EDITS)
def test_editing_with_the_change_permission_succeeds(pipeline, editor, method, tail, body):
    response = getattr(editor, method)(url(pipeline, tail), body, format="json")

    assert response.status_code in (200, 201, 204)
    assert pipeline.versions.count() == 2


# Through a real server


@pytest.mark.django_db(transaction=True)
def test_a_step_added_through_a_real_server_is_at_its_location(live_server, pipeline, api_as):
    token = issue_token(api_as(CHANGE).user, "server")[1]

    def call(method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            path if path.startswith("http") else f"{live_server.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, response.headers, json.loads(response.read() or "null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, json.loads(exc.read())

    status, headers, body = call("POST", "/api/pipelines/iris/steps/", {**FILL, "order": 2})

    assert status == 201 and body == step(2, FILL)
    # Added through the alias, the step's link is to /api/v1/.
    assert headers["Location"] == f"{live_server.url}/api/v1/pipelines/iris/steps/2/"
    assert call("GET", headers["Location"])[2] == step(2, FILL)
    assert call("DELETE", headers["Location"])[0] == 204
    assert call("GET", "/api/v1/pipelines/iris/steps/")[2] == [
        step(1, LOAD),
        step(2, CLEAN),
        step(3, TRIM),
    ]
