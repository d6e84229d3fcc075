"""Every API endpoint served the way `runserver` and gunicorn serve it.

The test client calls Django below the WSGI layer, so it accepts responses a real server
refuses: a `Location` header given as DRF's `Hyperlink` passed every test in
test_api.py, yet was a 500 under `runserver`, after the run had been queued. Here each
request goes through the project's WSGI application wrapped in `wsgiref.validate`,
which asserts what a WSGI server requires.

These tests use a transactional database: the WSGI handler closes the database
connection at the end of each request, which would break a test wrapped in a transaction.
"""

import io
import json
from dataclasses import dataclass
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest
from django.contrib.auth.models import Permission

from mlops_site.wsgi import application
from pipelines.api.tokens import issue_token
from pipelines.models import PipelineRun

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("error::wsgiref.validate.WSGIWarning"),
]

STEPS = [{"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}}]


@dataclass
class WsgiResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def serve(method: str, path: str, token: str = "", body=None, **headers) -> WsgiResponse:
    """One request through the validated WSGI application, as a server would make it.

    `headers` are given as WSGI names (HTTP_IDEMPOTENCY_KEY="...").
    """
    payload = json.dumps(body).encode() if body is not None else b""
    path, _, query = path.partition("?")
    environ = {}
    setup_testing_defaults(environ)
    environ.update(
        {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "HTTP_HOST": "testserver",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(payload)),
            "wsgi.input": io.BytesIO(payload),
            **({"HTTP_AUTHORIZATION": f"Token {token}"} if token else {}),
            **headers,
        }
    )
    started = {}

    def start_response(status, response_headers, exc_info=None):
        started.update(status=status, headers=response_headers)
        return lambda data: None

    result = validator(application)(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        result.close()
    return WsgiResponse(int(started["status"].split()[0]), dict(started["headers"]), content)


def token_for(django_user_model, username: str, *codenames: str) -> str:
    user = django_user_model.objects.create_user(username)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return issue_token(user, "tests")[1]


@pytest.fixture
def token(django_user_model):
    return token_for(django_user_model, "integrator", "add_pipelinerun", "change_pipelinerun")


@pytest.fixture
def viewer_token(django_user_model):
    return token_for(django_user_model, "viewer")


@pytest.fixture
def pipeline(make_pipeline):
    return make_pipeline(STEPS, name="iris", concurrency_policy="refuse")


def test_pipeline_list_and_detail(token, pipeline):
    assert serve("GET", "/api/v1/pipelines/", token).json()["count"] == 1
    assert serve("GET", "/api/v1/pipelines/iris/", token).json()["steps"][0]["type"] == (
        "sklearn_dataset"
    )
    assert serve("GET", "/api/v1/pipelines/nothing/", token).status == 404
    assert serve("GET", "/api/v1/pipelines/").status == 401


def test_trigger_is_202_with_the_run_as_a_str_location(token, pipeline):
    response = serve("POST", "/api/v1/pipelines/iris/runs/", token, {})

    assert response.status == 202
    run = PipelineRun.objects.get()
    assert type(response.headers["Location"]) is str
    assert response.headers["Location"] == f"http://testserver/api/v1/runs/{run.pk}/"
    assert response.json()["url"] == response.headers["Location"]


def test_trigger_replayed_with_its_idempotency_key_is_200_with_the_same_location(token, pipeline):
    first = serve("POST", "/api/v1/pipelines/iris/runs/", token, {}, HTTP_IDEMPOTENCY_KEY="k-1")

    again = serve("POST", "/api/v1/pipelines/iris/runs/", token, {}, HTTP_IDEMPOTENCY_KEY="k-1")

    assert (first.status, again.status) == (202, 200)
    assert again.headers["Location"] == first.headers["Location"]
    assert PipelineRun.objects.count() == 1


def test_trigger_refusals(token, viewer_token, pipeline):
    trigger = "/api/v1/pipelines/iris/runs/"

    misspelt = serve("POST", trigger, token, {"from_stepp": 1})
    assert misspelt.status == 400
    assert misspelt.json()["errors"] == [
        {
            "field": "from_stepp",
            "message": "Unknown field; a trigger accepts: from_step, to_step, only_step.",
        }
    ]
    assert serve("POST", trigger, token, {"from_step": 9}).status == 400
    assert serve("POST", trigger, viewer_token, {}).status == 403
    assert serve("POST", trigger, token, {}).status == 202
    assert serve("POST", trigger, token, {}).status == 409  # the refuse policy
    assert PipelineRun.objects.count() == 1


def test_run_list_detail_and_cancel(token, viewer_token, pipeline):
    url = serve("POST", "/api/v1/pipelines/iris/runs/", token, {}).json()["url"]
    path = url.removeprefix("http://testserver")

    assert (
        len(serve("GET", "/api/v1/runs/?pipeline=iris&status=queued", token).json()["results"]) == 1
    )
    assert serve("GET", "/api/v1/runs/?status=paused", token).status == 400
    assert serve("GET", path, token).json()["status"] == "queued"
    assert serve("POST", f"{path}cancel/", viewer_token).status == 403
    assert serve("POST", f"{path}cancel/", token).json()["status"] == "cancelled"
    assert serve("POST", f"{path}cancel/", token).status == 409


def test_schema_and_docs_page(token):
    schema = serve("GET", "/api/v1/schema/", token)
    docs = serve("GET", "/api/v1/docs/", token)

    assert schema.status == 200 and b"/api/v1/pipelines/{reference}/runs/" in schema.body
    assert docs.status == 200 and b"swagger-ui-bundle.js" in docs.body


def test_the_unversioned_api_serves_the_same_views_linking_to_v1(token, pipeline):
    triggered = serve("POST", "/api/pipelines/iris/runs/", token, {})
    run = PipelineRun.objects.get()

    assert triggered.status == 202
    assert triggered.headers["Location"] == f"http://testserver/api/v1/runs/{run.pk}/"
    assert serve("GET", f"/api/runs/{run.pk}/", token).json()["id"] == run.pk
    assert serve("GET", "/api/pipelines/", token).json()["count"] == 1
    assert serve("GET", "/api/schema/", token).status == 200
    assert b'"/api/pipelines/' not in serve("GET", "/api/schema/?format=json", token).body
