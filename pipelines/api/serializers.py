"""What the API shows of pipelines and runs. Read-only except the run trigger's options."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pipelines.choices import RunStatus
from pipelines.lineage import run_lineage
from pipelines.models import Pipeline, PipelineRun, PipelineStep, StepRun


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
        fields = [*PipelineSerializer.Meta.fields, "max_active_runs", "concurrency_policy", "steps"]


class RunTriggerSerializer(serializers.Serializer):
    from_step = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="Order of the step to start from, reusing the fresh cached steps before it.",
    )

    def validate(self, attrs):
        # A misspelt option would otherwise be dropped, and a full run started instead.
        # The browsable API's form posts its CSRF token along with the options.
        unknown = sorted(set(self.initial_data) - {*self.fields, "csrfmiddlewaretoken"})
        if unknown:
            message = f"Unknown field; a trigger accepts: {', '.join(self.fields)}."
            raise serializers.ValidationError({name: [message] for name in unknown})
        return attrs


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
