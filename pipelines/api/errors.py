"""One body for every 4xx answer of the API.

    {"code": "invalid", "message": "...", "errors": [{"field": "from_step", "message": "..."}]}

`code` is machine-readable (DRF's codes: `invalid`, `parse_error`, `not_authenticated`,
`authentication_failed`, `permission_denied`, `not_found`, `method_not_allowed`,
`unsupported_media_type`, `throttled`; and `conflict`, `pipeline_invalid`,
`precondition_failed`); `message` is for a person. `errors` lists each rejected field
(`field` is null for an error of the whole request) and, for a pipeline definition, the
order of the step it is in (`step`).
"""

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, serializers, status
from rest_framework.views import exception_handler

from pipelines.runs import PipelineBusy
from pipelines.services import PipelineChanged, PipelineInUse
from pipelines.validation import PipelineInvalid


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class PreconditionFailed(exceptions.APIException):
    """A 412: the If-Match sent names another version of the pipeline than its current one."""

    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_code = "precondition_failed"
    default_detail = "The pipeline changed since it was read."


class ItemErrors(exceptions.APIException):
    """A 400 whose `errors` are already the body's items (step or record, field, message)."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, errors: list[dict]):
        super().__init__(message)
        self.errors = errors


class InvalidPipeline(ItemErrors):
    """A pipeline definition refused by pipelines.validation: one error per step and field."""

    default_code = "pipeline_invalid"

    def __init__(self, invalid: PipelineInvalid):
        errors = [
            {"step": error.order, "field": error.field, "message": error.message}
            for error in invalid.errors
        ]
        super().__init__(str(invalid), errors)


def handle(exc, context):
    """DRF's handler (status, WWW-Authenticate, Retry-After), with the one error body.

    The services' refusals are answered here, so views leave them alone: Django's
    ValidationError (keyed by field or not) is a 400 naming each field; an invalid pipeline
    a 400 per step and field; a pipeline at its run limit, or deleted while it runs, a 409;
    an edit of a definition changed since it was read, a 412. A view catches only the
    refusals that mean something else where it is (a dataset in use: a 409).
    """
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_by_field(exc))
    elif isinstance(exc, PipelineInvalid):
        exc = InvalidPipeline(exc)
    elif isinstance(exc, PipelineBusy | PipelineInUse):
        exc = Conflict(str(exc))
    elif isinstance(exc, PipelineChanged):
        exc = PreconditionFailed(str(exc))
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    response.data = error_body(exc)
    return response


def _by_field(exc: DjangoValidationError) -> dict:
    errors = exc.message_dict if hasattr(exc, "error_dict") else {NON_FIELD_ERRORS: exc.messages}
    return {
        ("non_field_errors" if field == NON_FIELD_ERRORS else field): messages
        for field, messages in errors.items()
    }


def error_body(exc: exceptions.APIException) -> dict:
    if isinstance(exc, ItemErrors):
        return {"code": exc.default_code, "message": str(exc.detail), "errors": exc.errors}
    if isinstance(exc, exceptions.ValidationError) or not isinstance(exc.detail, str):
        errors = list(_flatten(exc.detail, None))
        message = "; ".join(
            f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors
        )
        return {"code": exc.default_code, "message": message, "errors": errors}
    return {"code": exc.detail.code or exc.default_code, "message": str(exc.detail), "errors": []}


def _flatten(detail, field):
    """DRF's nested error detail as {field, message} items; nested fields joined by dots."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = None if key == "non_field_errors" else str(key)
            yield from _flatten(value, ".".join(filter(None, [field, name])) or None)
    elif isinstance(detail, list):
        for index, item in enumerate(detail):
            # A list of messages belongs to the field; a list of objects is indexed.
            inner = f"{field}.{index}" if isinstance(item, dict | list) and field else field
            yield from _flatten(item, inner)
    else:
        yield {"field": field, "message": str(detail)}


class ErrorItemSerializer(serializers.Serializer):
    step = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="Order of the step the error is in: pipeline definitions only.",
    )
    record = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="Index of the record the error is in: prediction requests only.",
    )
    field = serializers.CharField(
        allow_null=True,
        help_text="The rejected field (dotted when nested), header or query parameter; "
        "null for the request as a whole.",
    )
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable, e.g. invalid, not_found.")
    message = serializers.CharField()
    errors = ErrorItemSerializer(many=True, help_text="Empty unless fields were rejected.")


def page_not_found(request, exception):
    """Django's 404 page, or under /api/ the API's error body: a client that sends a path
    no route matches (an alias with a slash, a negative version) still gets JSON."""
    if not request.path.startswith("/api/"):
        return defaults.page_not_found(request, exception)
    body = {"code": "not_found", "message": f"Nothing at {request.path}.", "errors": []}
    return JsonResponse(body, status=404)
