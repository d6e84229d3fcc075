"""Schemathesis against the live schema, through the project's WSGI application.

For every operation under /api/v1/ (prediction included: with no model registered it
answers 404s, which must conform too): generated requests, with a token of a superuser and
the demo data, never get a 5xx, and every answer (status, content type, headers, body) is
the schema's. Half of the requests name objects that exist (a demo pipeline, its run, a
dataset, a schedule, a source), so detail operations answer more than 404s.
Transactional: the WSGI handler closes the database connection after each request.
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from datasources.models import Dataset, DataSource
from datasources.sources import save_source
from mlops_site.wsgi import application
from pipelines import demo, runs
from pipelines.api.schema import TARGETS
from pipelines.api.tokens import issue_token
from pipelines.models import Pipeline, PipelineRun, PipelineSchedule
from pipelines.schedules import create_schedule

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def token(django_user_model):
    admin = django_user_model.objects.create_superuser("schemathesis", "s@example.com", "x")
    demo.seed_demo(owner=admin)
    for pipeline in Pipeline.objects.all()[:2]:
        runs.start_run(pipeline, user=admin)
    create_schedule(Pipeline.objects.first(), cron="0 6 * * *")
    save_source({"name": "warehouse", "kind": "postgresql", "host": "127.0.0.1", "port": 5432})
    return issue_token(admin, "schemathesis")[1]


def existing_objects() -> dict[str, dict]:
    """Path parameters naming objects the fixture made, by the path's first segment."""
    pipeline = Pipeline.objects.order_by("pk").first()
    dataset = Dataset.objects.order_by("pk").first()
    return {
        "pipelines": {"reference": pipeline.name, "order": 1, "number": 1},
        "runs": {"id": PipelineRun.objects.order_by("pk").first().pk},
        "schedules": {"id": PipelineSchedule.objects.get().pk},
        "datasources": {"id": DataSource.objects.get().pk},
        "datasets": {"name": dataset.name, "version": dataset.version},
    }


def half_of_them_existing(schema) -> None:
    existing = existing_objects()

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        if not path_parameters:
            return st.just(path_parameters)
        segment = context.operation.path.removeprefix("/api/v1/").split("/")[0]
        known = existing.get(segment, {})
        real = {name: known.get(name, value) for name, value in path_parameters.items()}
        return st.sampled_from([path_parameters, real])


def test_every_answer_conforms_to_the_schema(token):
    # One Hypothesis test per operation, run here: schemathesis's pytest loader
    # (`from_fixture`) fails on this pytest (no `_nodeid` on its subtests).
    headers = {"Authorization": f"Token {token}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application, headers=headers)
    half_of_them_existing(schema)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    # MLOPS_SCHEMATHESIS_PATHS=/api/v1/datasets/ checks only the operations under it.
    only = os.environ.get("MLOPS_SCHEMATHESIS_PATHS")
    if only:
        operations = [op for op in operations if op.path.startswith(only)]
    # Deletions last, so the objects other operations name still exist; revoking tokens
    # the very last: a generated id may be this test's own token.
    operations.sort(key=lambda op: (op.method == "delete", op.path == "/api/v1/tokens/{id}/"))
    answered = {}

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            database=None,
            derandomize=True,  # the same requests on every run: CI does not flake
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def conforms(case):
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            answered.setdefault(case.operation.label, set()).add(response.status_code)

        conforms()

    if not only:
        reads = ["pipelines/{reference}", "runs/{id}", "schedules/{id}", "datasources/{id}"]
        for path in [*reads, "datasets/{name}"]:
            assert 200 in answered[f"GET /api/v1/{path}/"], path


def test_following_the_schemas_links_from_a_new_pipeline_to_its_runs_conforms(
    token, django_user_model
):
    # The schema's links (pipelines.api.schema.NEXT_STEPS), followed as a client would:
    # create a pipeline, then every operation its answer links to (run it, read it...),
    # then every operation the run's answer links to (read, log, rerun, cancel). Walked
    # in order rather than by Hypothesis's state machine: each step changes the database,
    # which Hypothesis cannot replay.
    headers = {"Authorization": f"Token {token}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application, headers=headers)
    iris = [{"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}}]
    visited = []

    def call(operation_id, body=None, **path_parameters):
        operation = schema.find_operation_by_id(operation_id)
        extra = {} if body is None else {"body": body, "media_type": "application/json"}
        case = operation.Case(path_parameters=path_parameters, **extra)
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)
        visited.append((operation_id, response.status_code))
        return operation, response

    def follow(operation, response):
        links = operation.definition.raw["responses"][str(response.status_code)]["links"]
        answers = []
        for link in links.values():
            parameters = {
                name: response.json()[expression.removeprefix("$response.body#/")]
                for name, expression in link["parameters"].items()
            }
            answers.append(call(link["operationId"], **parameters))
        return answers

    created = call("pipelines_create", {"name": "linked", "steps": iris})
    answers = dict(zip(NEXT_STEPS_OF_A_PIPELINE, follow(*created), strict=True))
    run_answers = follow(*answers["pipelines_runs_create"])

    assert visited == [
        ("pipelines_create", 201),
        ("pipelines_retrieve", 200),
        ("pipelines_runs_create", 202),
        ("pipelines_steps_list", 200),
        ("pipelines_freshness_list", 200),
        ("pipelines_versions_list", 200),
        ("pipelines_export_retrieve", 200),
        ("runs_retrieve", 200),
        ("runs_log_retrieve", 200),
        ("runs_cancel_create", 200),
        ("runs_rerun_create", 202),
    ]
    assert len(run_answers) == 4


NEXT_STEPS_OF_A_PIPELINE = TARGETS["pipeline"]
