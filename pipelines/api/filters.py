"""Query parameters of the list endpoints (django-filter)."""

import django_filters
from rest_framework.exceptions import ValidationError

from pipelines.choices import RunStatus, RunTrigger
from pipelines.models import Pipeline, PipelineRun


class PipelineFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(
        lookup_expr="icontains", help_text="Part of the name, any case."
    )
    owner = django_filters.CharFilter(field_name="owner__username", help_text="Owner's username.")
    last_status = django_filters.ChoiceFilter(
        field_name="last_run_status",
        choices=RunStatus.choices,
        help_text="Status of the pipeline's latest run.",
    )
    ordering = django_filters.OrderingFilter(
        fields=[("name", "name"), ("created_at", "created"), ("last_run_at", "last_run")],
        help_text="Sort by name (default), created or last_run; `-` first for descending.",
    )

    class Meta:
        model = Pipeline
        fields = []


class RunFilter(django_filters.FilterSet):
    pipeline = django_filters.CharFilter(method="by_reference", help_text="Pipeline name or id.")
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)
    trigger = django_filters.ChoiceFilter(choices=RunTrigger.choices)
    started_by = django_filters.CharFilter(
        field_name="started_by__username", help_text="Username of who started the run."
    )
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Created at or after (ISO 8601)."
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Created before (ISO 8601)."
    )

    class Meta:
        model = PipelineRun
        fields = []

    def by_reference(self, runs, name, value):
        try:
            pipeline = Pipeline.objects.get_by_reference(value)
        except Pipeline.DoesNotExist as exc:
            raise ValidationError({"pipeline": [str(exc)]}) from None
        return runs.filter(pipeline=pipeline)
