"""/api/v1/pipelines/{reference}/steps/: a pipeline's steps, read and edited one at a time.

A step is addressed by its `order` (1..n). Each edit is a function of
`pipelines.step_edits`, saved through `services.update_pipeline` as the editor saves:
validated as a whole, recorded as a version, and nothing saved when invalid. The orders
are renumbered 1..n after every edit, so an order read before an edit may name another
step after it: every read answers the pipeline's ETag, and an edit sent with it as
If-Match is refused (412) when another edit came first.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import SAFE_METHODS, IsAuthenticated
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from pipelines import services, step_edits
from pipelines.api.common import (
    IF_MATCH,
    ORDER,
    PRECONDITION_FAILED,
    REFERENCE,
    etag,
    expected_version,
    location,
    pipeline_etag,
    pipeline_or_404,
)
from pipelines.api.errors import ErrorSerializer
from pipelines.api.permissions import requires
from pipelines.api.schema import ApiViewMixin
from pipelines.api.serializers import RejectsUnknownFields, StepSerializer
from pipelines.models import Pipeline, PipelineStep

CHANGE = "pipelines.change_pipeline"
NAME_LENGTH = PipelineStep._meta.get_field("name").max_length
LOCATION = location("The new step's URL.", 201)
INVALID_EDIT = (
    "`pipeline_invalid`: the pipeline would be invalid; an error per step (its order after "
    "the edit) and field, nothing saved. `invalid`: the body is malformed (each rejected field)."
)
NO_STEP = "No such pipeline, or the pipeline has no step of that order."


class StepChangeSerializer(RejectsUnknownFields, serializers.Serializer):
    """The fields to change; those left out stay as they are."""

    body_name = "a step change"
    name = serializers.CharField(max_length=NAME_LENGTH, allow_blank=True, required=False)
    params = serializers.DictField(
        required=False,
        help_text="Replaces the step's params as a whole; GET /api/v1/step-types/{slug}/ "
        "gives their JSON Schema.",
    )
    enabled = serializers.BooleanField(
        required=False, help_text="A disabled step is skipped by runs."
    )
    hints = {
        "order": "Move steps with POST /api/v1/pipelines/{reference}/steps/reorder/.",
        "type": "A step's type cannot change: delete the step and add one.",
    }


class NewStepSerializer(RejectsUnknownFields, serializers.Serializer):
    """A step to add."""

    body_name = "a new step"
    type = serializers.CharField(help_text="A step type's slug, from GET /api/v1/step-types/.")
    name = serializers.CharField(max_length=NAME_LENGTH, allow_blank=True, default="")
    params = serializers.DictField(
        default=dict, help_text="The step type's params (its JSON Schema: /api/v1/step-types/)."
    )
    enabled = serializers.BooleanField(default=True)
    order = serializers.IntegerField(
        min_value=1,
        required=False,
        help_text="Where to insert it (the steps from there move down one); default: last.",
    )


class ReorderSerializer(RejectsUnknownFields, serializers.Serializer):
    """The steps' new sequence."""

    body_name = "a reorder"
    order = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Every step's current order once, in the new sequence: [2, 1, 3] swaps "
        "the first two steps.",
    )


# Reading needs a login; any edit of a step is a change of its pipeline. (A comment: a
# docstring would describe every operation in the schema.)
class StepsView(ApiViewMixin, APIView):
    serializer_class = StepSerializer  # what the schema shows unless an operation says

    def get_permissions(self):
        if self.request.method in SAFE_METHODS:
            return [IsAuthenticated()]
        return [IsAuthenticated(), requires(CHANGE)()]

    def pipeline(self) -> Pipeline:
        return pipeline_or_404(self.kwargs["reference"])

    def read(self) -> tuple[Pipeline, dict[str, str]]:
        """The pipeline with its steps, and the ETag of the definition as read: the body
        and the ETag come from the one read, so the ETag never names a newer version."""
        pipeline = pipeline_or_404(
            self.kwargs["reference"], Pipeline.objects.prefetch_related("steps")
        )
        return pipeline, etag(services.definition_version(pipeline))

    def parsed(self, serializer_class: type[serializers.Serializer]) -> dict:
        given = serializer_class(data=self.request.data)
        given.is_valid(raise_exception=True)
        return given.validated_data


@contextmanager
def answering() -> Iterator[None]:
    """A step an edit names that the pipeline does not have, as the API's 404 (its other
    refusals are the API's answers already: pipelines.api.errors.handle)."""
    try:
        yield
    except PipelineStep.DoesNotExist as exc:
        raise NotFound(str(exc)) from None


class StepListView(StepsView):
    @extend_schema(
        parameters=[REFERENCE, pipeline_etag(200)],
        responses={200: StepSerializer(many=True)},
        description="The pipeline's steps, in order.",
    )
    def get(self, request, reference):
        pipeline, headers = self.read()
        return Response(StepSerializer(pipeline.steps.all(), many=True).data, headers=headers)

    @extend_schema(
        parameters=[REFERENCE, IF_MATCH, LOCATION, pipeline_etag(201)],
        request=NewStepSerializer,
        responses={
            201: OpenApiResponse(StepSerializer, "Added; the answer is the new step."),
            400: OpenApiResponse(ErrorSerializer, INVALID_EDIT),
            403: OpenApiResponse(ErrorSerializer, f"No permission: this needs {CHANGE}."),
            412: PRECONDITION_FAILED,
        },
    )
    def post(self, request, reference):
        """Add a step, after the last or at a given order."""
        pipeline, fields = self.pipeline(), self.parsed(NewStepSerializer)
        at, expected = fields.pop("order", None), expected_version(request)
        with answering():
            step = step_edits.add_step(
                pipeline, fields, at=at, user=request.user, expected_version=expected
            )
        url = reverse(
            "pipelines-api:pipeline-step",
            kwargs={"reference": reference, "order": step.order},
            request=request,
        )
        headers = {"Location": url, **etag(pipeline.saved_version)}
        return Response(StepSerializer(step).data, status=status.HTTP_201_CREATED, headers=headers)


class StepDetailView(StepsView):
    @extend_schema(
        parameters=[REFERENCE, ORDER, pipeline_etag(200)],
        responses={200: StepSerializer, 404: OpenApiResponse(ErrorSerializer, NO_STEP)},
        description="One step, by its order.",
    )
    def get(self, request, reference, order):
        pipeline, headers = self.read()
        # Matched here rather than in SQL: any int a URL holds is then a plain miss.
        step = next((s for s in pipeline.steps.all() if s.order == order), None)
        if step is None:
            raise NotFound(f"{pipeline.name} has no step {order}")
        return Response(StepSerializer(step).data, headers=headers)

    @extend_schema(
        parameters=[REFERENCE, ORDER, IF_MATCH, pipeline_etag(200)],
        request=StepChangeSerializer,
        responses={
            200: OpenApiResponse(StepSerializer, "Changed (or unchanged); the step as saved."),
            400: OpenApiResponse(ErrorSerializer, INVALID_EDIT),
            403: OpenApiResponse(ErrorSerializer, f"No permission: this needs {CHANGE}."),
            404: OpenApiResponse(ErrorSerializer, NO_STEP),
            412: PRECONDITION_FAILED,
        },
    )
    def patch(self, request, reference, order):
        """Rename the step, change its params, or enable or disable it."""
        pipeline, changes = self.pipeline(), self.parsed(StepChangeSerializer)
        expected = expected_version(request)
        with answering():
            step = step_edits.change_step(
                pipeline, order, user=request.user, expected_version=expected, **changes
            )
        return Response(StepSerializer(step).data, headers=etag(pipeline.saved_version))

    @extend_schema(
        parameters=[REFERENCE, ORDER, IF_MATCH, pipeline_etag(204)],
        responses={
            204: OpenApiResponse(description="Deleted; the steps after it moved up one."),
            400: OpenApiResponse(ErrorSerializer, INVALID_EDIT),
            403: OpenApiResponse(ErrorSerializer, f"No permission: this needs {CHANGE}."),
            404: OpenApiResponse(ErrorSerializer, NO_STEP),
            412: PRECONDITION_FAILED,
        },
    )
    def delete(self, request, reference, order):
        """Delete the step; refused when a later step needs what it produced."""
        pipeline, expected = self.pipeline(), expected_version(request)
        with answering():
            step_edits.remove_step(pipeline, order, user=request.user, expected_version=expected)
        return Response(status=status.HTTP_204_NO_CONTENT, headers=etag(pipeline.saved_version))


class StepReorderView(StepsView):
    @extend_schema(
        parameters=[REFERENCE, IF_MATCH, pipeline_etag(200)],
        request=ReorderSerializer,
        responses={
            200: OpenApiResponse(StepSerializer(many=True), "The steps in their new order."),
            400: OpenApiResponse(ErrorSerializer, INVALID_EDIT),
            403: OpenApiResponse(ErrorSerializer, f"No permission: this needs {CHANGE}."),
            412: PRECONDITION_FAILED,
        },
    )
    def post(self, request, reference):
        """Put the steps in a new order, validated as a whole."""
        pipeline, fields = self.pipeline(), self.parsed(ReorderSerializer)
        expected = expected_version(request)
        with answering():
            step_edits.move_steps(
                pipeline, fields["order"], user=request.user, expected_version=expected
            )
        steps = StepSerializer(pipeline.steps.all(), many=True).data
        return Response(steps, headers=etag(pipeline.saved_version))
