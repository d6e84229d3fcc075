"""The schema's error answers, described once: each operation lists the 4xx it can give."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse

from pipelines.api.errors import ErrorSerializer, handle

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class ApiSchema(AutoSchema):
    def _map_basic_serializer(self, serializer, direction):
        # A body refusing unknown fields says so, and schema-driven clients (and
        # schemathesis) send none.
        from pipelines.api.serializers import RejectsUnknownFields

        component = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, RejectsUnknownFields):
            component["additionalProperties"] = False
        return component

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description in self._error_responses():
            if code not in responses:
                body = OpenApiResponse(ErrorSerializer, description)
                responses[code] = self._get_response_for_code(body, code, direction=direction)
        return responses

    def _error_responses(self):
        paged = self._is_list_view() and self._get_paginator() is not None
        if self.get_request_serializer() is not None and self.method in UNSAFE:
            yield "400", "The body is malformed: each rejected field with its message."
        elif self.get_filter_backends():
            yield "400", "A query parameter is invalid: each rejected one with its message."
        yield "401", "No credentials, or an invalid, expired or revoked token."
        if self.method in UNSAFE:
            yield "403", "No permission (the message names it), or a session without CSRF token."
        if "{" in self.path or paged:
            yield "404", "Not found" + (" (or an invalid page or cursor)." if paged else ".")
        if self.view.get_throttles():
            yield "429", "Too many requests; Retry-After says when to try again."


def only_v1(endpoints, **kwargs):
    """/api/ (the alias kept for one release) and other paths serve the same views."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/v1/")]


# The API's error body and schema; every view of pipelines.api uses it. (A comment, not a
# docstring: drf-spectacular would describe every operation with a docstring.)
class ApiViewMixin:
    schema = ApiSchema()

    def get_exception_handler(self):
        return handle


# What a client can do next with what an operation answered: OpenAPI links, which
# clients and schemathesis's stateful tests follow (create a pipeline, run it, read the run).
# Source operation and status -> (target path parameter, where its value is, targets).
NEXT_STEPS = {
    ("pipelines_create", "201"): ("reference", "$response.body#/name", "pipeline"),
    ("pipelines_import_create", "201"): ("reference", "$response.body#/name", "pipeline"),
    ("pipelines_duplicate_create", "201"): ("reference", "$response.body#/name", "pipeline"),
    ("pipelines_runs_create", "202"): ("id", "$response.body#/id", "run"),
    ("runs_rerun_create", "202"): ("id", "$response.body#/id", "run"),
    ("schedules_create", "201"): ("id", "$response.body#/id", "schedule"),
    ("datasources_create", "201"): ("id", "$response.body#/id", "datasource"),
    ("datasets_create", "201"): ("name", "$response.body#/name", "dataset"),
}
TARGETS = {
    "pipeline": [
        "pipelines_retrieve",
        "pipelines_runs_create",
        "pipelines_steps_list",
        "pipelines_freshness_list",
        "pipelines_versions_list",
        "pipelines_export_retrieve",
    ],
    "run": ["runs_retrieve", "runs_log_retrieve", "runs_cancel_create", "runs_rerun_create"],
    "schedule": ["schedules_retrieve", "schedules_pause_create", "schedules_resume_create"],
    "datasource": ["datasources_retrieve", "datasources_test_create"],
    "dataset": ["datasets_retrieve"],
}


def add_links(result, generator, request, public):
    """A drf-spectacular postprocessing hook: NEXT_STEPS as each response's `links`."""
    operations = {
        operation["operationId"]: operation
        for path in result["paths"].values()
        for operation in path.values()
    }
    for (source, code), (parameter, value, kind) in NEXT_STEPS.items():
        response = operations.get(source, {}).get("responses", {}).get(code)
        if response is None:
            continue
        response["links"] = {
            target: {"operationId": target, "parameters": {parameter: value}}
            for target in TARGETS[kind]
            if target in operations
        }
    return result
