"""What the API shows of pipelines and runs, and the bodies it accepts.

The bodies are only parsed and typed here; `pipelines.services` validates a definition as
a whole and saves it, as it does for the pages, the admin and the commands.
"""

from collections.abc import Mapping

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pipelines.choices import RunStatus
from pipelines.lineage import run_lineage
from pipelines.models import Pipeline, PipelineRun, PipelineStep, PipelineVersion, StepRun
from pipelines.services import RUN_SETTINGS, SETTINGS, STEP_FIELDS

# The model's help text is HTML, escaped for forms.
EXPERIMENT_HELP = "The MLflow experiment runs are tracked in; empty: pipeline/<name>."
# The browsable API's forms post their CSRF token along with the fields.
FORM_FIELDS = {"csrfmiddlewaretoken"}


def _default(field: str):
    return Pipeline._meta.get_field(field).get_default()


class RejectsUnknownFields:
    """Refuses a field the body does not declare: a misspelt one would otherwise be
    dropped, and the request done without it. `tolerated` names fields read elsewhere
    (a pipeline's read-only ones), ignored so that what was read can be sent back;
    `hints` replaces the message for a field that is known to be asked for.
    The schema declares these bodies closed (pipelines.api.schema.ApiSchema)."""

    body_name = "this body"
    tolerated: frozenset = frozenset()
    hints: dict[str, str] = {}

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - {*self.fields, *self.tolerated, *FORM_FIELDS})
            if unknown:
                writable = [name for name, field in self.fields.items() if not field.read_only]
                message = f"Unknown field; {self.body_name} accepts: {', '.join(writable)}."
                raise serializers.ValidationError(
                    {name: [self.hints.get(name, message)] for name in unknown}
                )
        return super().to_internal_value(data)


class StepSerializer(serializers.ModelSerializer):
    type = serializers.CharField(source="step_type")

    class Meta:
        model = PipelineStep
        fields = ["order", "type", "name", "params", "enabled"]


class PipelineSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(
        view_name="pipelines-api:pipeline-detail", lookup_url_kwarg="reference"
    )
    experiment = serializers.CharField(source="experiment_name", read_only=True)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    # Annotated by the view, so a page of pipelines is one query.
    step_count = serializers.IntegerField(read_only=True)
    last_run_status = serializers.ChoiceField(
        choices=RunStatus.choices, read_only=True, allow_null=True
    )

    class Meta:
        model = Pipeline
        fields = [
            "id",
            "url",
            "name",
            "description",
            "owner",
            "experiment",
            "step_count",
            "last_run_status",
        ]


class PipelineDetailSerializer(PipelineSerializer):
    steps = StepSerializer(many=True, read_only=True)

    class Meta(PipelineSerializer.Meta):
        fields = [*PipelineSerializer.Meta.fields, *RUN_SETTINGS, "steps"]
        extra_kwargs = {"mlflow_experiment": {"help_text": EXPERIMENT_HELP}}


class StepInputSerializer(RejectsUnknownFields, serializers.ModelSerializer):
    body_name = "a step"
    type = serializers.CharField(help_text="A step type's slug (see /api/v1/step-types/).")
    order = serializers.IntegerField(
        required=False,
        help_text="Optional: the steps run sorted by it, renumbered 1..n; without it, in "
        "the list's order.",
    )
    params = serializers.DictField(
        required=False, help_text="The step type's parameters (its params_schema)."
    )

    class Meta:
        model = PipelineStep
        fields = list(STEP_FIELDS)


class PipelineWriteSerializer(RejectsUnknownFields, serializers.ModelSerializer):
    """A pipeline definition as a client sends it: name, description, run settings, steps."""

    body_name = "a pipeline"
    tolerated = frozenset(
        set(PipelineDetailSerializer.Meta.fields)
        - {"name", "description", "steps"}
        - {*RUN_SETTINGS}
    )
    steps = StepInputSerializer(
        many=True, help_text="The steps in the order they run; [] for a draft to fill in later."
    )

    class Meta:
        model = Pipeline
        fields = ["name", "description", *RUN_SETTINGS, "steps"]
        extra_kwargs = {
            # The service checks the name, so a taken one gets the same message everywhere.
            "name": {"validators": []},
            "mlflow_experiment": {"help_text": EXPERIMENT_HELP},
            # A setting left out of a new or replaced definition takes its default; a
            # partial update (PATCH) skips defaults and keeps the current value.
            **{field: {"default": _default(field)} for field in SETTINGS},
        }


class PipelineCheckSerializer(PipelineWriteSerializer):
    """A definition to check: the name is optional, and checked only when given."""

    class Meta(PipelineWriteSerializer.Meta):
        extra_kwargs = {
            **PipelineWriteSerializer.Meta.extra_kwargs,
            "name": {"validators": [], "required": False},
        }


class ValidSerializer(serializers.Serializer):
    valid = serializers.BooleanField(help_text="Always true: an invalid definition is a 400.")


class ExportedStepSerializer(StepInputSerializer):
    order = serializers.IntegerField(help_text="The step's place: 1, 2, ...")


class RunSettingsSerializer(RejectsUnknownFields, serializers.ModelSerializer):
    body_name = "run_settings"

    class Meta:
        model = Pipeline
        fields = list(RUN_SETTINGS)


class PipelineExportSerializer(RejectsUnknownFields, serializers.Serializer):
    """The JSON that export writes and import reads, as the pages and commands do."""

    body_name = "an exported pipeline"
    name = serializers.CharField(max_length=Pipeline._meta.get_field("name").max_length)
    description = serializers.CharField(allow_blank=True, required=False, default="")
    run_settings = RunSettingsSerializer(required=False)
    steps = ExportedStepSerializer(many=True)


class ImportOptionsSerializer(serializers.Serializer):
    replace = serializers.BooleanField(
        default=False,
        help_text="Overwrite the pipeline of that name instead of refusing the import.",
    )


class DuplicateSerializer(RejectsUnknownFields, serializers.Serializer):
    body_name = "a duplicate"
    name = serializers.CharField(
        max_length=Pipeline._meta.get_field("name").max_length,
        required=False,
        allow_blank=True,
        help_text="The copy's name; empty or absent: <name>-copy (-copy-2, ... when taken).",
    )


class FreshnessSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["fresh", "stale", "never_run"])
    reason = serializers.CharField(allow_blank=True, help_text="Why it is stale; empty if not.")
    last_version = serializers.CharField(
        allow_null=True,
        help_text="A database read: the value its version query returned (null without one).",
    )
    last_read_at = serializers.DateTimeField(
        allow_null=True, help_text="A database read: when it read the source."
    )


class StepFreshnessSerializer(FreshnessSerializer):
    order = serializers.IntegerField()
    type = serializers.CharField(source="step_type")


@extend_schema_field(PipelineExportSerializer)
class DefinitionField(serializers.JSONField):
    """A stored definition, shown as stored."""


class VersionSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(
        source="changed_by", slug_field="username", read_only=True, allow_null=True
    )
    definition = DefinitionField(
        read_only=True, help_text="The pipeline as it was then, as export writes it."
    )

    class Meta:
        model = PipelineVersion
        fields = ["number", "created_at", "user", "summary", "definition"]


class VersionDiffQuerySerializer(serializers.Serializer):
    MAX = 2**31 - 1  # what every database stores in the version number's column
    a = serializers.IntegerField(min_value=1, max_value=MAX, help_text="The older version.")
    b = serializers.IntegerField(min_value=1, max_value=MAX, help_text="The newer version.")


class VersionDiffSerializer(serializers.Serializer):
    lines = serializers.ListField(
        child=serializers.CharField(allow_blank=True),
        help_text="Unified diff of the two definitions; empty when they are equal.",
    )


class RunTriggerSerializer(RejectsUnknownFields, serializers.Serializer):
    body_name = "a trigger"
    from_step = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="Order of the step to start from, reusing the fresh cached steps before it.",
    )
    to_step = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="Order of the step to stop after.",
    )
    only_step = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="Order of the one step to run, reusing the fresh cached steps before it; "
        "not with from_step or to_step.",
    )

    def validate(self, attrs):
        only = attrs.get("only_step")
        if only is None:
            return attrs
        if attrs.get("from_step") is not None or attrs.get("to_step") is not None:
            message = "Give only_step alone, or from_step and to_step instead."
            raise serializers.ValidationError({"only_step": [message]})
        return {**attrs, "from_step": only, "to_step": only}


class StepRunSerializer(serializers.ModelSerializer):
    type = serializers.CharField(source="step_type")

    class Meta:
        model = StepRun
        fields = [
            "order",
            "type",
            "name",
            "status",
            "started_at",
            "finished_at",
            "rows_in",
            "columns_in",
            "rows_out",
            "columns_out",
            "summary",
        ]


class RunSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="pipelines-api:run-detail")
    pipeline = serializers.SlugRelatedField(slug_field="name", read_only=True)
    started_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = PipelineRun
        fields = [
            "id",
            "url",
            "pipeline",
            "status",
            "trigger",
            "started_by",
            "start_step",
            "attempt",
            "created_at",
            "started_at",
            "finished_at",
        ]


class RunDetailSerializer(RunSerializer):
    step_runs = StepRunSerializer(many=True, read_only=True)
    lineage = serializers.SerializerMethodField(
        help_text="What the run read (datasets and checksums, data sources and queries), "
        "what it wrote (dataset versions, tables, registered models) and the models its "
        "predictions came from."
    )

    class Meta(RunSerializer.Meta):
        fields = [
            *RunSerializer.Meta.fields,
            "cancel_requested",
            "error_message",
            "metrics",
            "mlflow_run_id",
            "step_runs",
            "lineage",
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_lineage(self, run: PipelineRun) -> dict:
        return run_lineage(run).as_dict()


class StaffRunDetailSerializer(RunDetailSerializer):
    """Tracebacks show the server's code and paths, so only staff see them."""

    class Meta(RunDetailSerializer.Meta):
        fields = [*RunDetailSerializer.Meta.fields, "error_traceback"]


class ProblemSerializer(serializers.Serializer):
    """DRF's own error body, which the prediction endpoint still gives.

    The views of pipelines.api answer every 4xx with pipelines.api.errors.ErrorSerializer.
    """

    detail = serializers.CharField()
