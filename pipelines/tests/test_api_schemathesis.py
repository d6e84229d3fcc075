"""Schemathesis against the live schema, through the project's WSGI application.

For every operation under /api/v1/ (prediction included: with no model registered it
answers 404s, which must conform too): generated requests, with a token of a superuser and the demo data,
never get a 5xx, and every answer (status, content type, headers, body) is the schema's.
Transactional: the WSGI handler closes the database connection after each request.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mlops_site.wsgi import application
from pipelines import demo, runs
from pipelines.api.tokens import issue_token
from pipelines.models import Pipeline

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
    return issue_token(admin, "schemathesis")[1]


def test_every_answer_conforms_to_the_schema(token):
    # One Hypothesis test per operation, run here: schemathesis's pytest loader
    # (`from_fixture`) fails on this pytest (no `_nodeid` on its subtests).
    headers = {"Authorization": f"Token {token}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application, headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def conforms(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        conforms()
