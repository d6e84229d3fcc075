"""The integration API: list pipelines, trigger runs and follow them.

Runs start and stop through `pipelines.runs`, the same functions every other trigger uses.
"""

import hashlib

from django.db.models import Count, Max
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response

from pipelines.api.errors import Conflict, ErrorSerializer, InvalidPipeline
from pipelines.api.filters import PipelineFilter, RunFilter
from pipelines.api.pagination import NewestFirstCursorPagination, PagePagination
from pipelines.api.schema import ApiViewMixin
from pipelines.api.serializers import (
    PipelineDetailSerializer,
    PipelineSerializer,
    RunDetailSerializer,
    RunSerializer,
    RunTriggerSerializer,
    StaffRunDetailSerializer,
)
from pipelines.choices import RunTrigger
from pipelines.models import Pipeline, PipelineRun
from pipelines.runs import PipelineBusy, cancel_run, start_run
from pipelines.validation import PipelineInvalid


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
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="The ETag of the run as last read: 304 and no body while it is unchanged.",
)
RUN_ETAG = OpenApiParameter(
    "ETag",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[200, 304],
    description="Changes with the run's status, heartbeat and step progress.",
)


@extend_schema_view(
    list=extend_schema(description="Pipelines by name, with their latest run's status."),
    retrieve=extend_schema(parameters=[REFERENCE]),
)
class PipelineViewSet(ApiViewMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = PipelineSerializer
    lookup_url_kwarg = "reference"
    lookup_value_regex = "[^/]+"
    filter_backends = [DjangoFilterBackend]
    filterset_class = PipelineFilter
    pagination_class = PagePagination

    def get_queryset(self):
        pipelines = Pipeline.objects.with_run_summary().select_related("owner")
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
                ErrorSerializer,
                "`pipeline_invalid`: the pipeline is invalid, or from_step names no step or "
                "a disabled one (an error per step and field); `invalid`: the body or the "
                "Idempotency-Key header is malformed (each rejected field or header).",
            ),
            403: OpenApiResponse(ErrorSerializer, "No permission to start runs."),
            409: OpenApiResponse(ErrorSerializer, "Refused: the pipeline is at its limit."),
        },
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="runs",
        url_name="trigger",
        serializer_class=RunTriggerSerializer,
        permission_classes=[IsAuthenticated, CanStartRuns],
        filter_backends=[],
        pagination_class=None,
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
            raise InvalidPipeline(exc) from None
        except PipelineBusy as exc:
            raise Conflict(str(exc)) from None
        return _triggered(run, self.get_serializer_context())


@extend_schema_view(
    list=extend_schema(description="Runs, newest first, a cursor page at a time."),
    retrieve=extend_schema(
        description="Staff users also get the error's `error_traceback`. Poll it with "
        "`If-None-Match`: an unchanged run answers 304 with no body.",
        parameters=[IF_NONE_MATCH, RUN_ETAG],
        responses={
            200: RunDetailSerializer,
            304: OpenApiResponse(None, "Unchanged since the ETag given in If-None-Match."),
        },
    ),
)
class RunViewSet(ApiViewMixin, viewsets.ReadOnlyModelViewSet):
    filter_backends = [DjangoFilterBackend]
    filterset_class = RunFilter
    pagination_class = NewestFirstCursorPagination

    def get_queryset(self):
        runs = PipelineRun.objects.select_related("pipeline", "started_by")
        return runs if self.action == "list" else runs.prefetch_related("step_runs")

    def get_serializer_class(self):
        if self.action == "list":
            return RunSerializer
        return StaffRunDetailSerializer if self.request.user.is_staff else RunDetailSerializer

    def retrieve(self, request, *args, **kwargs):
        # The ETag comes from one small query, so an unchanged run costs a poller little.
        # It is read before the body: a run changing in between gets a newer body under
        # the older ETag, and the next poll a 200 again, never a stale 304.
        etag = _run_etag(self.kwargs["pk"], request.user.is_staff)
        if etag is None:
            raise NotFound("No run has this id.")
        headers = {"ETag": etag, "Vary": "Authorization, Cookie"}
        if _matches(request.headers.get("If-None-Match", ""), etag):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
        response = super().retrieve(request, *args, **kwargs)
        for name, value in headers.items():
            response[name] = value
        return response

    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(RunDetailSerializer, "Cancelled, or cancelling if running."),
            403: OpenApiResponse(ErrorSerializer, "No permission to cancel runs."),
            409: OpenApiResponse(ErrorSerializer, "The run has already finished."),
        },
    )
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[IsAuthenticated, CanCancelRuns],
        filter_backends=[],
        pagination_class=None,
    )
    def cancel(self, request, pk=None):
        """Drop a queued run, or stop a running one before its next step."""
        run = self.get_object()
        outcome = cancel_run(run)
        run.refresh_from_db()
        if outcome == "finished":
            raise Conflict(f"Run #{run.pk} has already finished ({run.status}).")
        return Response(self.get_serializer(run).data)


def _run_etag(pk: str, staff: bool) -> str | None:
    if not str(pk).isdigit():
        return None
    row = (
        PipelineRun.objects.filter(pk=pk)
        .values("status", "heartbeat_at", "cancel_requested", "finished_at", "mlflow_run_id")
        .annotate(
            steps=Count("step_runs"),
            step_started=Max("step_runs__started_at"),
            step_finished=Max("step_runs__finished_at"),
        )
        .order_by("pk")
        .first()
    )
    if row is None:
        return None
    state = repr((sorted(row.items()), staff)).encode()
    return f'W/"{hashlib.blake2b(state, digest_size=12).hexdigest()}"'


def _matches(if_none_match: str, etag: str) -> bool:
    """The weak comparison of RFC 9110: a W/ prefix is ignored; `*` matches any run."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


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
