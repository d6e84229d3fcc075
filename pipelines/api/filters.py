"""Query parameters of the list endpoints (django-filter)."""

import django_filters
from rest_framework.exceptions import ValidationError

from pipelines.choices import RunStatus, RunTrigger
from pipelines.models import Pipeline, PipelineRun


class PipelineReferenceFilter(django_filters.CharFilter):
    """Rows of the pipeline a name or id names; an unknown one is a 400 naming the parameter."""

    def __init__(self, **kwargs):
        super().__init__(field_name="pipeline", help_text="Pipeline name or id.", **kwargs)

    def filter(self, rows, value):
        if not value:
            return rows
        try:
            pipeline = Pipeline.objects.get_by_reference(value)
        except Pipeline.DoesNotExist as exc:
            raise ValidationError({"pipeline": [str(exc)]}) from None
        return rows.filter(pipeline=pipeline)


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
    pipeline = PipelineReferenceFilter()
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
