"""Parameters and answers several API resources share."""

import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from pipelines.api.errors import ErrorSerializer
from pipelines.api.serializers import RunSerializer
from pipelines.models import Pipeline, PipelineRun

REFERENCE = OpenApiParameter(
    "reference", OpenApiTypes.STR, OpenApiParameter.PATH, description="Pipeline name or id."
)
ORDER = OpenApiParameter(
    "order",
    {"type": "integer", "minimum": 1},
    OpenApiParameter.PATH,
    description="The step's place in the pipeline, from 1.",
)
KEY_LENGTH = PipelineRun._meta.get_field("idempotency_key").max_length
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "maxLength": KEY_LENGTH},
    OpenApiParameter.HEADER,
    description=(
        "A string unique to this request, such as a UUID. Sent again by the same user "
        "within 24 hours, it returns the run the first request started (200) instead of "
        "starting another, so a request whose answer was lost can be retried safely."
    ),
)


def location(description: str, *codes: int) -> OpenApiParameter:
    """The Location response header of the answers with these status codes."""
    return OpenApiParameter(
        "Location",
        OpenApiTypes.URI,
        OpenApiParameter.HEADER,
        response=list(codes),
        description=description,
    )


RUN_LOCATION = location("The run's URL, to follow it.", 200, 202)

IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "The pipeline's ETag as last read (GET of the pipeline or of its steps): the change "
        "is made only if the pipeline is still at that version, else 412 and nothing "
        "changes. `*` or no header: whatever its version. Anything but one ETag or `*` is "
        "a 400."
    ),
)
PRECONDITION_FAILED = OpenApiResponse(
    ErrorSerializer,
    "`precondition_failed`: the pipeline changed since the version If-Match names; "
    "nothing changed. Read it again (for its new ETag) and redo the change.",
)
# One entity-tag, its W/ prefix allowed: proxies compressing an answer (nginx's gzip)
# weaken its ETag, and the version it names is the same.
ENTITY_TAG = re.compile(r'(?:W/)?"([^"]*)"')


def pipeline_etag(*codes: int) -> OpenApiParameter:
    """The ETag response header of the answers with these status codes."""
    return OpenApiParameter(
        "ETag",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=list(codes),
        description="The version of the pipeline's definition: send it as If-Match with "
        "the next change.",
    )


def etag(version: str) -> dict[str, str]:
    """The headers naming a `services.definition_version`."""
    return {"ETag": f'"{version}"'}


def expected_version(request) -> str | None:
    """The definition version the request's If-Match names; None without one or with `*`."""
    header = request.headers.get("If-Match", "").strip()
    if header in ("", "*"):
        return None
    tag = ENTITY_TAG.fullmatch(header)
    if tag is None:
        message = "Must be one ETag, quotes included, as a GET of the pipeline answered it; or *."
        raise ValidationError({"If-Match": [message]})
    return tag[1]


def pipeline_or_404(reference: str, queryset=None) -> Pipeline:
    """The pipeline a path's `reference` (name or id) names, or the API's 404."""
    try:
        pipelines = Pipeline.objects.all() if queryset is None else queryset
        return pipelines.get_by_reference(reference)
    except Pipeline.DoesNotExist as exc:
        raise NotFound(str(exc)) from None


def idempotency_key(request) -> str:
    key = request.headers.get("Idempotency-Key", "")
    if len(key) > KEY_LENGTH:
        message = f"Ensure this header has no more than {KEY_LENGTH} characters."
        raise ValidationError({"Idempotency-Key": [message]})
    return key


def triggered(run: PipelineRun, context: dict) -> Response:
    """202 for a new run; 200 for the one an earlier request with the same key started."""
    data = RunSerializer(run, context=context).data
    code = status.HTTP_200_OK if getattr(run, "replayed", False) else status.HTTP_202_ACCEPTED
    # The url is DRF's Hyperlink, a str subclass; WSGI servers accept only str itself.
    return Response(data, status=code, headers={"Location": str(data["url"])})
