"""/api/v1/pipelines/: pipelines as a resource, their history, freshness and runs.

Each action is one function of `pipelines.services` (runs: `pipelines.runs.start_run`),
the one the pages, the admin and the commands call; a view parses, calls and answers.
The collection's own actions (`validate/`, `import/`) take those two words as paths, so a
pipeline named "validate" or "import" is reached by its id.
"""

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.settings import api_settings

from pipelines import services
from pipelines.api.common import (
    IDEMPOTENCY_KEY,
    IF_MATCH,
    PRECONDITION_FAILED,
    REFERENCE,
    RUN_LOCATION,
    etag,
    expected_version,
    idempotency_key,
    location,
    pipeline_etag,
    pipeline_or_404,
    triggered,
)
from pipelines.api.errors import ErrorSerializer, InvalidPipeline
from pipelines.api.filters import PipelineFilter
from pipelines.api.pagination import PagePagination
from pipelines.api.permissions import ModelPermissions, requires
from pipelines.api.schema import ApiViewMixin
from pipelines.api.serializers import (
    DuplicateSerializer,
    ImportOptionsSerializer,
    PipelineCheckSerializer,
    PipelineDetailSerializer,
    PipelineExportSerializer,
    PipelineSerializer,
    PipelineWriteSerializer,
    RunSerializer,
    RunTriggerSerializer,
    StepFreshnessSerializer,
    ValidSerializer,
    VersionDiffQuerySerializer,
    VersionDiffSerializer,
    VersionSerializer,
)
from pipelines.choices import RunTrigger
from pipelines.models import Pipeline, PipelineVersion
from pipelines.runs import start_run
from pipelines.validation import PipelineInvalid, StepError

CHANGE_PERMISSION = "pipelines.change_pipeline"
PIPELINE_LOCATION = location("The new pipeline's URL.", 201)
# Nine digits at most, as the path's pattern allows: a number the database column holds.
VERSION_NUMBER = OpenApiParameter(
    "number",
    {"type": "integer", "minimum": 1, "maximum": 999_999_999},
    OpenApiParameter.PATH,
    description="The version's number: 1, 2, ...",
)
INVALID_DEFINITION = OpenApiResponse(
    ErrorSerializer,
    "`invalid`: the body is malformed (each rejected field, dotted: `steps.0.type`); "
    "`pipeline_invalid`: the definition is refused (each error with its step and field).",
)
ONE_ACTION = {"filter_backends": [], "pagination_class": None}


def parsed(serializer_class, data, **kwargs) -> dict:
    """The serializer's validated data, or the API's 400 naming each rejected field."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# /pipelines/validate/ and /pipelines/import/ are the collection's actions, POST only; no
# pipeline may take those names (services.RESERVED_NAMES).
ACTION_PATH = OpenApiResponse(
    ErrorSerializer,
    "`method_not_allowed`: `reference` is `validate` or `import`, the "
    "collection's actions, which only take POST.",
)


@extend_schema_view(
    list=extend_schema(description="Pipelines by name, with their latest run's status."),
    retrieve=extend_schema(
        parameters=[REFERENCE, pipeline_etag(200)],
        responses={200: PipelineDetailSerializer, 405: ACTION_PATH},
    ),
    create=extend_schema(
        description="A new pipeline owned by you, its steps validated as a whole. A "
        "setting left out takes its default. Recorded as the pipeline's version 1.",
        parameters=[PIPELINE_LOCATION],
        request=PipelineWriteSerializer,
        responses={201: PipelineDetailSerializer, 400: INVALID_DEFINITION},
    ),
    update=extend_schema(
        description="Replace the definition: name, description, every run setting (one "
        "left out takes its default) and the steps. Recorded as a new version when "
        "something changed; an invalid definition changes nothing. A new name also "
        "changes the default MLflow experiment (pipeline/<name>).",
        parameters=[REFERENCE, IF_MATCH, pipeline_etag(200)],
        request=PipelineWriteSerializer,
        responses={
            200: PipelineDetailSerializer,
            400: INVALID_DEFINITION,
            405: ACTION_PATH,
            412: PRECONDITION_FAILED,
        },
    ),
    partial_update=extend_schema(
        description="Change only the fields given: name, description, run settings; "
        "`steps`, when given, replaces the whole list.",
        parameters=[REFERENCE, IF_MATCH, pipeline_etag(200)],
        request=PipelineWriteSerializer,
        responses={
            200: PipelineDetailSerializer,
            400: INVALID_DEFINITION,
            405: ACTION_PATH,
            412: PRECONDITION_FAILED,
        },
    ),
    destroy=extend_schema(
        description="Delete the pipeline with its steps, runs, schedules, history and "
        "cached step files.",
        parameters=[REFERENCE, IF_MATCH],
        responses={
            204: OpenApiResponse(None, "Deleted."),
            400: OpenApiResponse(ErrorSerializer, "`invalid`: If-Match is not one ETag or *."),
            405: ACTION_PATH,
            409: OpenApiResponse(ErrorSerializer, "Refused: a run is queued or running."),
            412: PRECONDITION_FAILED,
        },
    ),
)
class PipelineViewSet(ApiViewMixin, viewsets.ModelViewSet):
    serializer_class = PipelineSerializer
    permission_classes = [IsAuthenticated, ModelPermissions]
    permission_model = Pipeline
    # Definitions nest lists of objects, which forms cannot carry; the run trigger's
    # options come from the browsable API's form too.
    parser_classes = [JSONParser]
    lookup_url_kwarg = "reference"
    lookup_value_regex = "[^/]+"
    filter_backends = [DjangoFilterBackend]
    filterset_class = PipelineFilter
    pagination_class = PagePagination

    def get_queryset(self):
        pipelines = Pipeline.objects.with_run_summary().select_related("owner")
        return pipelines if self.action == "list" else pipelines.prefetch_related("steps")

    def get_serializer_class(self):
        if self.action == "retrieve":
            return PipelineDetailSerializer
        if self.action in ("create", "update", "partial_update"):
            return PipelineWriteSerializer
        return super().get_serializer_class()  # each other action declares its own

    def get_object(self):
        pipeline = pipeline_or_404(self.kwargs["reference"], self.get_queryset())
        self.check_object_permissions(self.request, pipeline)
        return pipeline

    def shown(
        self, pipeline: Pipeline, code: int = status.HTTP_200_OK, headers: dict | None = None
    ) -> Response:
        """The pipeline's detail as saved; a new one's URL in Location."""
        saved = self.get_queryset().get(pk=pipeline.pk)
        data = PipelineDetailSerializer(saved, context=self.get_serializer_context()).data
        headers = dict(headers or {})
        if code == status.HTTP_201_CREATED:
            # The url is DRF's Hyperlink, a str subclass; WSGI servers accept only str itself.
            headers["Location"] = str(data["url"])
        return Response(data, status=code, headers=headers)

    def retrieve(self, request, *args, **kwargs):
        # Body and ETag from the one instance read, so the ETag never names a newer
        # definition than the body shows.
        pipeline = self.get_object()
        data = self.get_serializer(pipeline).data
        return Response(data, headers=etag(services.definition_version(pipeline)))

    def create(self, request, *args, **kwargs):
        definition = parsed(PipelineWriteSerializer, request.data)
        name, steps = definition.pop("name"), definition.pop("steps")
        pipeline = services.create_pipeline(
            name, owner=request.user, steps=steps, settings=definition, user=request.user
        )
        return self.shown(pipeline, status.HTTP_201_CREATED)

    def update(self, request, *args, partial=False, **kwargs):
        pipeline = self.get_object()
        changes = parsed(PipelineWriteSerializer, request.data, partial=partial)
        name, steps = changes.pop("name", None), changes.pop("steps", None)
        expected = expected_version(request)
        services.update_pipeline(
            pipeline,
            name=name,
            steps=steps,
            settings=changes,
            user=request.user,
            expected_version=expected,
        )
        # The version the update saved, not one read now: another edit may have landed since.
        return self.shown(pipeline, headers=etag(pipeline.saved_version))

    def destroy(self, request, *args, **kwargs):
        pipeline, expected = self.get_object(), expected_version(request)
        services.delete_pipeline(pipeline, request.user, expected_version=expected)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        description="Check a definition as creating it would, saving nothing. The name "
        "is optional; when given it must be free.",
        request=PipelineCheckSerializer,
        responses={200: ValidSerializer, 400: INVALID_DEFINITION},
    )
    @action(
        detail=False,
        methods=["post"],
        serializer_class=PipelineCheckSerializer,
        permission_classes=[IsAuthenticated],
        **ONE_ACTION,
    )
    def validate(self, request):
        definition = parsed(PipelineCheckSerializer, request.data)
        name, steps = definition.pop("name", None), definition.pop("steps")
        services.check_definition(steps, settings=definition, name=name)
        return Response({"valid": True})

    @extend_schema(
        description="The pipeline as JSON that import (or the Import page, or "
        "`manage.py import_pipeline`) reads back.",
        parameters=[REFERENCE],
        responses={200: PipelineExportSerializer},
    )
    @action(detail=True, serializer_class=PipelineExportSerializer, **ONE_ACTION)
    def export(self, request, reference=None):
        return Response(services.export_pipeline(self.get_object()))

    @extend_schema(
        description="A pipeline from exported JSON, owned by you. With `replace=true` a "
        "pipeline of that name is overwritten (a new version of it) instead of refused; "
        "that needs the pipelines.change_pipeline permission as well.",
        parameters=[ImportOptionsSerializer, PIPELINE_LOCATION],
        request=PipelineExportSerializer,
        responses={
            200: OpenApiResponse(PipelineDetailSerializer, "Replaced (with replace=true)."),
            201: OpenApiResponse(PipelineDetailSerializer, "Created."),
            400: OpenApiResponse(
                ErrorSerializer,
                "`invalid`: the body or the replace parameter is malformed; "
                "`pipeline_invalid`: the pipeline is refused, or its name is taken "
                "without replace=true.",
            ),
        },
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        url_name="import",
        serializer_class=PipelineExportSerializer,
        **ONE_ACTION,
    )
    def import_(self, request):
        replace = parsed(ImportOptionsSerializer, request.query_params)["replace"]
        if replace and not request.user.has_perm(CHANGE_PERMISSION):
            raise PermissionDenied(f"replace=true needs the {CHANGE_PERMISSION} permission.")
        data = parsed(PipelineExportSerializer, request.data)
        same_name = Pipeline.objects.filter(name=data["name"]).values_list("pk", flat=True)
        replaced_pk = same_name.first() if replace else None
        pipeline = services.import_pipeline(
            data, owner=request.user, replace=replace, user=request.user
        )
        created = pipeline.pk != replaced_pk
        return self.shown(pipeline, status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        description="A copy of the pipeline's steps and settings, owned by you. Its "
        "schedules, runs and history stay with the original.",
        parameters=[REFERENCE, PIPELINE_LOCATION],
        request=DuplicateSerializer,
        responses={201: PipelineDetailSerializer, 400: INVALID_DEFINITION},
    )
    @action(detail=True, methods=["post"], serializer_class=DuplicateSerializer, **ONE_ACTION)
    def duplicate(self, request, reference=None):
        pipeline = self.get_object()
        name = parsed(DuplicateSerializer, request.data).get("name")
        copy = services.duplicate_pipeline(pipeline, name, request.user)
        return self.shown(copy, status.HTTP_201_CREATED)

    @extend_schema(
        description="For each enabled step, whether its cached output is current "
        "(fresh), outdated (stale) or absent (never_run), and why. Reads no data source.",
        parameters=[REFERENCE],
        responses={200: StepFreshnessSerializer(many=True)},
    )
    @action(detail=True, serializer_class=StepFreshnessSerializer, **ONE_ACTION)
    def freshness(self, request, reference=None):
        states = services.step_freshness(self.get_object())
        return Response(StepFreshnessSerializer(states, many=True).data)

    @extend_schema(
        description="The definition's versions, newest first, with who changed what.",
        parameters=[REFERENCE],
        responses={200: VersionSerializer(many=True)},
    )
    @action(
        detail=True,
        serializer_class=VersionSerializer,
        filter_backends=[],
        pagination_class=PagePagination,
    )
    def versions(self, request, reference=None):
        history = self.get_object().versions.select_related("changed_by").order_by("-number")
        page = self.paginate_queryset(history)
        return self.get_paginated_response(VersionSerializer(page, many=True).data)

    @extend_schema(parameters=[REFERENCE, VERSION_NUMBER], responses={200: VersionSerializer})
    @action(
        detail=True,
        url_path=r"versions/(?P<number>[0-9]{1,9})",
        serializer_class=VersionSerializer,
        **ONE_ACTION,
    )
    def version(self, request, reference=None, number=None):
        pipeline = self.get_object()
        try:
            found = pipeline.versions.select_related("changed_by").get(number=number)
        except PipelineVersion.DoesNotExist:
            raise NotFound(f"{pipeline.name} has no version {number}.") from None
        return Response(VersionSerializer(found).data)

    @extend_schema(
        description="What changed from version `a` to version `b`, as a unified diff of "
        "their definitions.",
        parameters=[REFERENCE, VersionDiffQuerySerializer],
        responses={
            200: VersionDiffSerializer,
            400: OpenApiResponse(ErrorSerializer, "`a` or `b` is missing or not a number."),
            404: OpenApiResponse(ErrorSerializer, "No such pipeline or version."),
        },
    )
    @action(
        detail=True,
        url_path="versions/diff",
        serializer_class=VersionDiffSerializer,
        **ONE_ACTION,
    )
    def diff(self, request, reference=None):
        pipeline = self.get_object()
        chosen = parsed(VersionDiffQuerySerializer, request.query_params)
        try:
            lines = services.version_diff(pipeline, chosen["a"], chosen["b"])
        except PipelineVersion.DoesNotExist as exc:
            raise NotFound(f"{exc}.") from None
        return Response({"lines": lines})

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
                "`pipeline_invalid`: the pipeline is invalid, or from_step, to_step or "
                "only_step names no step or a disabled one (an error per step and field); "
                "`invalid`: the body or the Idempotency-Key header is malformed (each "
                "rejected field or header).",
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
        permission_classes=[IsAuthenticated, requires("pipelines.add_pipelinerun")],
        parser_classes=api_settings.DEFAULT_PARSER_CLASSES,
        **ONE_ACTION,
    )
    def trigger(self, request, reference=None):
        """Queue a run of the pipeline; a worker executes it.

        A request repeating the Idempotency-Key of an earlier one gets that run back.
        """
        pipeline = self.get_object()
        options = parsed(RunTriggerSerializer, request.data)
        key = idempotency_key(request)
        try:
            run = start_run(
                pipeline,
                trigger=RunTrigger.API,
                user=request.user,
                from_step=options.get("from_step"),
                to_step=options.get("to_step"),
                idempotency_key=key,
            )
        except PipelineInvalid as exc:
            raise InvalidPipeline(_as_sent(exc, options)) from None
        return triggered(run, self.get_serializer_context())


def _as_sent(invalid: PipelineInvalid, options: dict) -> PipelineInvalid:
    """only_step is checked as from_step and to_step: its errors, once, on only_step."""
    if options.get("only_step") is None:
        return invalid
    renamed = (
        StepError(error.order, "only_step", error.message)
        if error.field in ("from_step", "to_step")
        else error
        for error in invalid.errors
    )
    return PipelineInvalid(list(dict.fromkeys(renamed)))
