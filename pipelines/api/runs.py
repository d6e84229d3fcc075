"""/api/v1/runs/: list runs, follow one (cheaply, with ETags), tail its log, cancel it
and run it again.

Runs stop through `pipelines.runs.cancel_run` and start again through
`pipelines.runs.rerun`, as from the pages and the admin; the log comes from
`pipelines.progress.run_progress`, which the run page polls.
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
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from pipelines import runs
from pipelines.api.common import IDEMPOTENCY_KEY, RUN_LOCATION, idempotency_key, triggered
from pipelines.api.errors import Conflict, ErrorSerializer
from pipelines.api.filters import RunFilter
from pipelines.api.pagination import NewestFirstCursorPagination
from pipelines.api.permissions import requires
from pipelines.api.schema import ApiViewMixin
from pipelines.api.serializers import (
    RunDetailSerializer,
    RunSerializer,
    StaffRunDetailSerializer,
)
from pipelines.choices import RunStatus, RunTrigger
from pipelines.models import PipelineRun
from pipelines.progress import run_progress

# The largest offset every supported database takes in SUBSTR (PostgreSQL's is an int4).
MAX_LOG_OFFSET = 2**31 - 1

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


class LogQuerySerializer(serializers.Serializer):
    offset = serializers.IntegerField(
        min_value=0,
        max_value=MAX_LOG_OFFSET,
        default=0,
        help_text="Characters of the log already read: the `next_offset` of the last answer.",
    )


class RunLogSerializer(serializers.Serializer):
    offset = serializers.IntegerField(help_text="The offset asked for.")
    next_offset = serializers.IntegerField(
        help_text="The log's length in characters now: the offset to ask for next time. "
        "Below `offset` when that was past the end of the log."
    )
    text = serializers.CharField(
        allow_blank=True, help_text="The log from `offset` on; empty when nothing is new."
    )
    status = serializers.ChoiceField(choices=RunStatus.choices)
    finished = serializers.BooleanField(
        help_text="The run has ended and its last lines are in: polling may stop."
    )


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
        found = PipelineRun.objects.select_related("pipeline", "started_by")
        if self.action in ("log", "rerun"):
            return found.defer("logs")  # the log is read from its offset on only
        return found if self.action == "list" else found.prefetch_related("step_runs")

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
        permission_classes=[IsAuthenticated, requires("pipelines.change_pipelinerun")],
        filter_backends=[],
        pagination_class=None,
    )
    def cancel(self, request, pk=None):
        """Drop a queued run, or stop a running one before its next step."""
        run = self.get_object()
        outcome = runs.cancel_run(run)
        run.refresh_from_db()
        if outcome == "finished":
            raise Conflict(f"Run #{run.pk} has already finished ({run.status}).")
        return Response(self.get_serializer(run).data)

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY, RUN_LOCATION],
        responses={
            200: OpenApiResponse(
                RunSerializer, "The run an earlier request with this Idempotency-Key started."
            ),
            202: OpenApiResponse(RunSerializer, "The new run, queued for a worker."),
            400: OpenApiResponse(
                ErrorSerializer,
                "`pipeline_invalid`: the pipeline is now invalid, or the run's steps are "
                "gone or disabled (an error per step and field); `invalid`: the "
                "Idempotency-Key header is too long.",
            ),
            403: OpenApiResponse(ErrorSerializer, "No permission to start runs."),
            409: OpenApiResponse(ErrorSerializer, "Refused: the pipeline is at its limit."),
        },
    )
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[IsAuthenticated, requires("pipelines.add_pipelinerun")],
        filter_backends=[],
        pagination_class=None,
    )
    def rerun(self, request, pk=None):
        """Start the run's pipeline again over the same steps (its start and stop step).

        The new run runs the pipeline as it is defined now. A request repeating the
        Idempotency-Key of an earlier one gets that run back.
        """
        run = self.get_object()
        key = idempotency_key(request)
        new = runs.rerun(run, trigger=RunTrigger.API, user=request.user, idempotency_key=key)
        return triggered(new, self.get_serializer_context())

    @extend_schema(
        parameters=[LogQuerySerializer],
        responses={
            200: RunLogSerializer,
            400: OpenApiResponse(ErrorSerializer, "`offset` is not a non-negative integer."),
        },
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def log(self, request, pk=None):
        """The run's log from a character offset on, to tail it: ask again with
        `next_offset` until `finished`. Only the new part is read from the database."""
        run = self.get_object()
        query = LogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        offset = query.validated_data["offset"]
        progress = run_progress(run, offset)
        answer = {
            "offset": offset,
            "next_offset": progress.log_position,
            "text": progress.log_text,
            "status": progress.status,
            "finished": progress.finished,
        }
        return Response(RunLogSerializer(answer).data)


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
