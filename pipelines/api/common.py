"""Parameters and answers several API resources share."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from pipelines.api.serializers import RunSerializer
from pipelines.models import Pipeline, PipelineRun

REFERENCE = OpenApiParameter(
    "reference", OpenApiTypes.STR, OpenApiParameter.PATH, description="Pipeline name or id."
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
RUN_LOCATION = OpenApiParameter(
    "Location",
    OpenApiTypes.URI,
    OpenApiParameter.HEADER,
    response=[200, 202],
    description="The run's URL, to follow it.",
)


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
