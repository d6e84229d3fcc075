"""The integration API: list pipelines, trigger runs and follow them.

Runs start and stop through `pipelines.runs`, the same functions every other trigger uses.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response

from pipelines.api.serializers import (
    FieldErrorsSerializer,
    PipelineDetailSerializer,
    PipelineInvalidSerializer,
    PipelineSerializer,
    ProblemSerializer,
    RunDetailSerializer,
    RunFilterSerializer,
    RunSerializer,
    RunTriggerSerializer,
    StaffRunDetailSerializer,
)
from pipelines.choices import RunTrigger
from pipelines.models import Pipeline, PipelineRun
from pipelines.runs import PipelineBusy, cancel_run, start_run
from pipelines.validation import PipelineInvalid


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class CanStartRuns(BasePermission):
    message = "Starting a run needs the pipelines.add_pipelinerun permission."

    def has_permission(self, request, view):
        return request.user.has_perm("pipelines.add_pipelinerun")


class CanCancelRuns(BasePermission):
    message = "Cancelling a run needs the pipelines.change_pipelinerun permission."

    def has_permission(self, request, view):
        return request.user.has_perm("pipelines.change_pipelinerun")


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
TRIGGER_ERRORS = PolymorphicProxySerializer(
    component_name="TriggerErrors",
    serializers=[PipelineInvalidSerializer, FieldErrorsSerializer],
    resource_type_field_name=None,
)


@extend_schema_view(retrieve=extend_schema(parameters=[REFERENCE]))
class PipelineViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PipelineSerializer
    lookup_url_kwarg = "reference"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        pipelines = Pipeline.objects.with_run_summary()
        return pipelines.prefetch_related("steps") if self.action == "retrieve" else pipelines

    def get_serializer_class(self):
        if self.action == "retrieve":
            return PipelineDetailSerializer
        return super().get_serializer_class()  # the trigger action declares its own

    def get_object(self):
        try:
            pipeline = self.get_queryset().get_by_reference(self.kwargs["reference"])
        except Pipeline.DoesNotExist as exc:
            raise NotFound(str(exc)) from None
        self.check_object_permissions(self.request, pipeline)
        return pipeline

    @extend_schema(
        parameters=[REFERENCE, IDEMPOTENCY_KEY, RUN_LOCATION],
        request=RunTriggerSerializer,
        responses={
            200: OpenApiResponse(
                RunSerializer, "The run an earlier request with this Idempotency-Key started."
            ),
            202: OpenApiResponse(RunSerializer, "Queued for a worker."),
            400: OpenApiResponse(
                TRIGGER_ERRORS,
                "The pipeline is invalid, or from_step names no step or a disabled one "
                "(`detail` and per-step `errors`); or the body or the Idempotency-Key header "
                "is malformed (each rejected field or header with its messages).",
            ),
            403: OpenApiResponse(ProblemSerializer, "No permission to start runs."),
            409: OpenApiResponse(ProblemSerializer, "Refused: the pipeline is at its limit."),
        },
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="runs",
        url_name="trigger",
        serializer_class=RunTriggerSerializer,
        permission_classes=[IsAuthenticated, CanStartRuns],
    )
    def trigger(self, request, reference=None):
        """Queue a run of the pipeline; a worker executes it.

        A request repeating the Idempotency-Key of an earlier one gets that run back.
        """
        pipeline = self.get_object()
        options = self.get_serializer(data=request.data)
        options.is_valid(raise_exception=True)
        key = _idempotency_key(request)
        try:
            run = start_run(
                pipeline,
                trigger=RunTrigger.API,
                user=request.user,
                from_step=options.validated_data.get("from_step"),
                idempotency_key=key,
            )
        except PipelineInvalid as exc:
            return _invalid(exc)
        except PipelineBusy as exc:
            raise Conflict(str(exc)) from None
        return _triggered(run, self.get_serializer_context())


@extend_schema_view(
    list=extend_schema(parameters=[RunFilterSerializer]),
    retrieve=extend_schema(description="Staff users also get the error's `error_traceback`."),
)
class RunViewSet(viewsets.ReadOnlyModelViewSet):
    def get_queryset(self):
        runs = PipelineRun.objects.select_related("pipeline", "started_by")
        if self.action == "list":
            return self._filter(runs)
        return runs.prefetch_related("step_runs")

    def get_serializer_class(self):
        if self.action == "list":
            return RunSerializer
        return StaffRunDetailSerializer if self.request.user.is_staff else RunDetailSerializer

    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(RunDetailSerializer, "Cancelled, or cancelling if running."),
            403: OpenApiResponse(ProblemSerializer, "No permission to cancel runs."),
            409: OpenApiResponse(ProblemSerializer, "The run has already finished."),
        },
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated, CanCancelRuns])
    def cancel(self, request, pk=None):
        """Drop a queued run, or stop a running one before its next step."""
        run = self.get_object()
        outcome = cancel_run(run)
        run.refresh_from_db()
        if outcome == "finished":
            raise Conflict(f"Run #{run.pk} has already finished ({run.status}).")
        return Response(self.get_serializer(run).data)

    def _filter(self, runs):
        query = RunFilterSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        if "pipeline" in query.validated_data:
            try:
                pipeline = Pipeline.objects.get_by_reference(query.validated_data["pipeline"])
            except Pipeline.DoesNotExist as exc:
                raise ValidationError({"pipeline": [str(exc)]}) from None
            runs = runs.filter(pipeline=pipeline)
        if "status" in query.validated_data:
            runs = runs.filter(status=query.validated_data["status"])
        return runs


def _idempotency_key(request) -> str:
    key = request.headers.get("Idempotency-Key", "")
    if len(key) > KEY_LENGTH:
        message = f"Ensure this header has no more than {KEY_LENGTH} characters."
        raise ValidationError({"Idempotency-Key": [message]})
    return key


def _triggered(run: PipelineRun, context: dict) -> Response:
    """202 for a new run; 200 for the one an earlier request with the same key started."""
    data = RunSerializer(run, context=context).data
    code = status.HTTP_200_OK if getattr(run, "replayed", False) else status.HTTP_202_ACCEPTED
    # The url is DRF's Hyperlink, a str subclass; WSGI servers accept only str itself.
    return Response(data, status=code, headers={"Location": str(data["url"])})


def _invalid(exc: PipelineInvalid) -> Response:
    errors = [{"step": e.order, "field": e.field, "message": e.message} for e in exc.errors]
    return Response({"detail": str(exc), "errors": errors}, status=status.HTTP_400_BAD_REQUEST)
