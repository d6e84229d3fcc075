from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from pipelines import runs, services
from pipelines.choices import RunStatus
from pipelines.engine.registry import STEP_TYPES, parameter_summary
from pipelines.forms import StepForm, StepInlineFormSet
from pipelines.models import Pipeline, PipelineRun, PipelineStep, RunOutput, StepRun
from pipelines.runs import PipelineBusy
from pipelines.validation import PipelineInvalid


class PipelineStepInline(admin.TabularInline):
    model = PipelineStep
    form = StepForm
    formset = StepInlineFormSet
    extra = 0
    fields = ("order", "step_type", "name", "params", "enabled")


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "step_count", "last_run_status", "updated_at")
    search_fields = ("name", "description")
    readonly_fields = ("cache_state", "step_type_reference", "created_at", "updated_at")
    inlines = [PipelineStepInline]
    actions = ["run_pipelines", "clear_caches"]

    def save_model(self, request, obj, form, change):
        # Read before saving: the version recorded after the steps are saved can then
        # say what changed even for a pipeline that has no history yet.
        if change:
            obj.definition_before = services.export_pipeline(Pipeline.objects.get(pk=obj.pk))
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        """Record the saved pipeline (with its steps) as a version, as every edit is."""
        super().save_related(request, form, formsets, change)
        pipeline = form.instance
        before = getattr(pipeline, "definition_before", None)
        summary = "" if change else "created in the admin"
        services.record_version(pipeline, request.user, summary=summary, before=before)

    def get_queryset(self, request):
        # The step count and the latest run come annotated: one query for the whole list.
        return super().get_queryset(request).with_run_summary().select_related("owner")

    @admin.display(description="Steps", ordering="step_count")
    def step_count(self, pipeline):
        return pipeline.step_count

    @admin.display(description="Last run", ordering="last_run_at")
    def last_run_status(self, pipeline):
        status = pipeline.last_run_status
        return RunStatus(status).label if status else "-"

    @admin.display(description="Step cache")
    def cache_state(self, pipeline):
        if not pipeline.pk:
            return "-"
        rows = format_html_join(
            "",
            "<li>step {}: {}</li>",
            ((item.order, _freshness(item)) for item in services.step_freshness(pipeline)),
        )
        return format_html("<ul>{}</ul>", rows) if rows else "-"

    @admin.display(description="Step types")
    def step_type_reference(self, pipeline):
        rows = format_html_join(
            "",
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (slug, cls.kind, ", ".join(cls.requires) or "-", _params_text(cls))
                for slug, cls in sorted(STEP_TYPES.items())
            ),
        )
        return format_html(
            "<table><tr><th>type</th><th>kind</th><th>needs</th><th>params</th></tr>{}</table>",
            rows,
        )

    @admin.action(description="Run selected pipelines", permissions=["run"])
    def run_pipelines(self, request, queryset):
        for pipeline in queryset:
            try:
                run = runs.start_run(pipeline, user=request.user)
            except (PipelineInvalid, PipelineBusy) as exc:
                self.message_user(request, f"{pipeline}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"Run #{run.pk} of {pipeline} queued.", messages.SUCCESS)

    def has_run_permission(self, request):
        """Starting a run needs the permission the Run button and the API ask for."""
        return request.user.has_perm("pipelines.add_pipelinerun")

    @admin.action(description="Clear step cache", permissions=["change"])
    def clear_caches(self, request, queryset):
        removed = sum(services.clear_cache(pipeline) for pipeline in queryset)
        self.message_user(request, f"Removed {removed} cached step file(s).", messages.SUCCESS)


def _freshness(item: services.StepFreshness) -> str:
    state = item.state.replace("_", " ")
    text = f"{state} ({item.reason})" if item.reason else state
    if item.last_read_at is not None:
        # What the cached read recorded; the page never queries the source itself.
        read_at = localtime(item.last_read_at).strftime("%Y-%m-%d %H:%M %Z")
        version = "" if item.last_version is None else f" at version {item.last_version}"
        text += f"; source last read {read_at}{version}"
    return text


def _params_text(step_class) -> str:
    return "; ".join(
        f"{p['name']}{'' if p['required'] else '?'}: {p['type']}"
        for p in parameter_summary(step_class)
    )


class StepRunInline(admin.TabularInline):
    model = StepRun
    extra = 0
    can_delete = False
    fields = (
        "order",
        "step_type",
        "name",
        "status",
        "started_at",
        "finished_at",
        "rows_in",
        "columns_in",
        "rows_out",
        "columns_out",
        "summary",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RunOutputInline(admin.TabularInline):
    """What the run wrote: read-only, the save steps record it."""

    model = RunOutput
    extra = 0
    can_delete = False
    fields = ("step_order", "kind", "dataset", "datasource", "table", "mode", "rows", "model_uri")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "pipeline",
        "status",
        "trigger",
        "started_by",
        "created_at",
        "duration",
    )
    list_filter = ("status", "trigger", "pipeline")
    list_select_related = ("pipeline", "started_by")
    readonly_fields = (
        "pipeline",
        "status",
        "trigger",
        "started_by",
        "created_at",
        "dispatched_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
        "attempt",
        "retry_of",
        "start_step",
        "cancel_requested",
        "metrics",
        "mlflow_run_id",
        "error_message",
        "log_output",
        "error_traceback",
        "definition",
    )
    exclude = ("logs",)
    inlines = [StepRunInline, RunOutputInline]
    actions = ["cancel_runs"]

    @admin.action(description="Cancel selected runs", permissions=["cancel"])
    def cancel_runs(self, request, queryset):
        for run in queryset:
            outcome = runs.cancel_run(run)
            self.message_user(request, f"Run #{run.pk}: {outcome}.", messages.INFO)

    def has_cancel_permission(self, request):
        # Not has_change_permission: runs are read-only here, cancelling is the one change.
        return request.user.has_perm("pipelines.change_pipelinerun")

    @admin.display(description="Logs")
    def log_output(self, run):
        return format_html("<pre>{}</pre>", run.logs)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


from pipelines import admin_schedules  # noqa: E402,F401
