"""/api/v1/step-types/: the catalog a client builds its step forms from, as the editor does."""

import functools
import inspect

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from pipelines.api.schema import ApiViewMixin
from pipelines.engine.registry import STEP_TYPES

KINDS = ["extraction", "preprocessing", "features", "training", "prediction", "save"]


class StepTypeSerializer(serializers.Serializer):
    slug = serializers.CharField()
    kind = serializers.CharField(help_text=f"One of: {', '.join(KINDS)}.")
    label = serializers.CharField()
    description = serializers.SerializerMethodField()
    requires = serializers.ListField(
        child=serializers.CharField(), help_text="Context keys it reads (data, model, ...)."
    )
    produces = serializers.ListField(
        child=serializers.CharField(), help_text="Context keys it writes."
    )
    params_schema = serializers.SerializerMethodField(
        help_text="JSON Schema of the step's params (its pydantic declaration)."
    )

    def get_description(self, step_class) -> str:
        return inspect.cleandoc(step_class.__doc__ or "")

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_params_schema(self, step_class) -> dict:
        return params_schema(step_class.Params)


@functools.cache
def params_schema(params_class) -> dict:
    """Built once per process: pydantic takes about 0.3 ms per step type to build it."""
    return params_class.model_json_schema()


SLUG = OpenApiParameter("slug", str, OpenApiParameter.PATH, description="e.g. csv, drop_na.")


@extend_schema_view(
    list=extend_schema(description="Every registered step type, by slug."),
    retrieve=extend_schema(parameters=[SLUG]),
)
class StepTypeViewSet(ApiViewMixin, viewsets.ViewSet):
    serializer_class = StepTypeSerializer
    lookup_field = "slug"
    lookup_value_regex = "[^/]+"

    def list(self, request):
        types = [STEP_TYPES[slug] for slug in sorted(STEP_TYPES)]
        return Response(StepTypeSerializer(types, many=True).data)

    def retrieve(self, request, slug=None):
        try:
            return Response(StepTypeSerializer(STEP_TYPES[slug]).data)
        except KeyError:
            raise NotFound(f"No step type {slug!r}.") from None
