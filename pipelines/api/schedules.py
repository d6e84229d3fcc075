"""/api/v1/schedules/: a pipeline's schedules, their next fire times, and their actions.

Every change goes through `pipelines.schedules`, the functions the settings page, the
admin and the `schedules` command call; its refusals become 400s naming the field.
"""

from datetime import UTC

import django_filters
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.fields import empty
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from pipelines import schedules
from pipelines.api.errors import Conflict, ErrorSerializer
from pipelines.api.filters import PipelineReferenceFilter
from pipelines.api.pagination import PagePagination
from pipelines.api.permissions import ModelPermissions, requires
from pipelines.api.schema import ApiViewMixin
from pipelines.api.serializers import RejectsUnknownFields
from pipelines.models import Pipeline, PipelineSchedule, ScheduleTick

NEXT_RUNS = 5
SCHEDULE_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The schedule's id.")
CHANGE = "pipelines.change_pipelineschedule"


class PipelineReferenceField(serializers.CharField):
    """A pipeline given by name or id; shown by name."""

    def run_validation(self, data=empty) -> Pipeline:
        reference = super().run_validation(data)  # blank, too long, NUL characters
        try:
            return Pipeline.objects.get_by_reference(reference)
        except Pipeline.DoesNotExist as exc:
            raise ValidationError(str(exc)) from None

    def to_representation(self, pipeline: Pipeline) -> str:
        return pipeline.name


class NextRunSerializer(serializers.Serializer):
    utc = serializers.DateTimeField(help_text="The moment in UTC.")
    local = serializers.DateTimeField(
        help_text="The same moment in the schedule's time zone, with its offset."
    )


class ScheduleSerializer(RejectsUnknownFields, serializers.ModelSerializer):
    body_name = "a schedule"
    url = serializers.HyperlinkedIdentityField(view_name="pipelines-api:schedule-detail")
    pipeline = PipelineReferenceField(
        max_length=Pipeline._meta.get_field("name").max_length,
        help_text="The pipeline it runs: its name or id (shown by name).",
    )
    rule = serializers.SerializerMethodField(help_text="The rule in words.")
    next_runs = serializers.SerializerMethodField(
        help_text=f"The next {NEXT_RUNS} fire times, the first possibly overdue; "
        "empty while paused."
    )

    class Meta:
        model = PipelineSchedule
        fields = [
            "id",
            "url",
            "pipeline",
            "cron",
            "interval_seconds",
            "timezone",
            "enabled",
            "overlap_policy",
            "catch_up",
            "rule",
            "next_runs",
            "created_at",
        ]
        # A field left out of a create or a PUT takes the model's default; PATCH keeps it.
        extra_kwargs = {
            "cron": {
                "default": "",
                "help_text": "Five fields (minute hour day-of-month month day-of-week) "
                "or an alias such as @daily, read as wall-clock times in `timezone`; "
                "empty for an interval schedule.",
            },
            "interval_seconds": {
                "default": None,
                # The service says why a short interval is refused; the maximum is what
                # every database stores in the column.
                "min_value": None,
                "max_value": 2**31 - 1,
                "help_text": f"Instead of cron: at least {schedules.MIN_INTERVAL_SECONDS} s.",
            },
            "timezone": {"default": "UTC", "help_text": "An IANA name such as Europe/Paris."},
            "enabled": {"default": True, "help_text": "False while paused."},
            "overlap_policy": {"default": PipelineSchedule.overlap_policy.field.default},
            "catch_up": {"default": PipelineSchedule.catch_up.field.default},
        }

    def get_rule(self, schedule: PipelineSchedule) -> str:
        return schedules.describe_rule(schedule)

    @extend_schema_field(NextRunSerializer(many=True))
    def get_next_runs(self, schedule: PipelineSchedule) -> list[dict]:
        ticks = schedules.upcoming_ticks(schedule, NEXT_RUNS)
        return [{"utc": _iso(tick.astimezone(UTC)), "local": _iso(tick)} for tick in ticks]


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class TickSerializer(serializers.ModelSerializer):
    run = serializers.HyperlinkedRelatedField(
        view_name="pipelines-api:run-detail",
        read_only=True,
        allow_null=True,
        help_text="The run the tick started; null when it was skipped.",
    )

    class Meta:
        model = ScheduleTick
        fields = ["tick_at", "outcome", "reason", "run"]
        read_only_fields = fields
        extra_kwargs = {"reason": {"help_text": "Why it was skipped, or how it was fired."}}


class ScheduleFilter(django_filters.FilterSet):
    pipeline = PipelineReferenceFilter()
    enabled = django_filters.TypedChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        coerce=lambda text: text == "true",
        help_text="true: the active schedules; false: the paused ones.",
    )

    class Meta:
        model = PipelineSchedule
        fields = []


def needs(*perms: str) -> list:
    return [IsAuthenticated, requires(*perms)]


DETAIL_ACTION = {
    "filter_backends": [],
    "pagination_class": None,
    "detail": True,
    "methods": ["post"],
}
FORBIDDEN = "No permission (the message names it)."


@extend_schema_view(
    list=extend_schema(description="Schedules by pipeline, each with its next fire times."),
    create=extend_schema(
        description="A schedule of a pipeline: a cron rule in a time zone, or an interval. "
        "Its first tick is the first one after now."
    ),
    retrieve=extend_schema(parameters=[SCHEDULE_ID]),
    update=extend_schema(
        parameters=[SCHEDULE_ID],
        description="Replace the settings; a field left out takes its default. A changed "
        "rule starts from now, without catching up.",
    ),
    partial_update=extend_schema(
        parameters=[SCHEDULE_ID],
        description="Change the given settings. A changed rule, or `enabled` set on a "
        "paused schedule, starts from now, without catching up.",
    ),
    destroy=extend_schema(
        parameters=[SCHEDULE_ID],
        request=None,
        description="Delete the schedule and its tick history; the runs it started stay.",
    ),
)
class ScheduleViewSet(ApiViewMixin, viewsets.ModelViewSet):
    queryset = PipelineSchedule.objects.select_related("pipeline").order_by("pipeline", "pk")
    serializer_class = ScheduleSerializer
    permission_classes = [IsAuthenticated, ModelPermissions]
    permission_model = PipelineSchedule
    filter_backends = [DjangoFilterBackend]
    filterset_class = ScheduleFilter
    pagination_class = PagePagination
    lookup_value_regex = "[^/]+"  # a malformed id is a 404 of the API, not an HTML page

    # The services' refusals are 400s naming each field (pipelines.api.errors.handle).
    def perform_create(self, serializer):
        serializer.instance = schedules.create_schedule(**serializer.validated_data)

    def perform_update(self, serializer):
        schedules.update_schedule(serializer.instance, **serializer.validated_data)

    def perform_destroy(self, schedule):
        schedules.delete_schedule(schedule)

    @extend_schema(
        parameters=[SCHEDULE_ID],
        request=None,
        responses={
            200: OpenApiResponse(ScheduleSerializer, "Paused, or already paused."),
            403: OpenApiResponse(ErrorSerializer, FORBIDDEN),
        },
    )
    @action(permission_classes=needs(CHANGE), **DETAIL_ACTION)
    def pause(self, request, pk=None):
        """Stop firing until resumed."""
        schedule = schedules.pause_schedule(self.get_object())
        return Response(self.get_serializer(schedule).data)

    @extend_schema(
        parameters=[SCHEDULE_ID],
        request=None,
        responses={
            200: OpenApiResponse(ScheduleSerializer, "Enabled, or already enabled."),
            403: OpenApiResponse(ErrorSerializer, FORBIDDEN),
        },
    )
    @action(permission_classes=needs(CHANGE), **DETAIL_ACTION)
    def resume(self, request, pk=None):
        """Fire again from now: ticks due while it was paused are not caught up.

        An enabled schedule is left as it is, so a tick that is due stays due.
        """
        schedule = self.get_object()
        if not schedule.enabled:
            schedules.resume_schedule(schedule)
        return Response(self.get_serializer(schedule).data)

    @extend_schema(
        parameters=[SCHEDULE_ID],
        request=None,
        responses={
            200: OpenApiResponse(TickSerializer, "The tick: the run it started, or why not."),
            403: OpenApiResponse(ErrorSerializer, FORBIDDEN),
            409: OpenApiResponse(ErrorSerializer, "A scheduler recorded a tick this moment."),
        },
    )
    @action(permission_classes=needs(CHANGE, "pipelines.add_pipelinerun"), **DETAIL_ACTION)
    def fire(self, request, pk=None):
        """Fire a tick now, outside the rule: the overlap policy applies and the next tick
        stays as it was. Paused schedules fire too."""
        tick = schedules.fire_now(self.get_object())
        if tick is None:
            raise Conflict("Another scheduler recorded a tick of this schedule at this moment.")
        return Response(TickSerializer(tick, context=self.get_serializer_context()).data)
