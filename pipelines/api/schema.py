"""The schema's error answers, described once: each operation lists the 4xx it can give."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse

from pipelines.api.errors import ErrorSerializer, handle

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class ApiSchema(AutoSchema):
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
