from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from pipelines import runs, services
from pipelines.engine.registry import STEP_TYPES, parameter_summary
from pipelines.forms import StepInlineFormSet
from pipelines.models import Pipeline, PipelineRun, PipelineStep, StepRun
from pipelines.runs import PipelineBusy
from pipelines.validation import PipelineInvalid


class PipelineStepInline(admin.TabularInline):
    model = PipelineStep
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

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("owner").prefetch_related("steps")

    @admin.display(description="Steps")
    def step_count(self, pipeline):
        return len(pipeline.steps.all())

    @admin.display(description="Last run")
    def last_run_status(self, pipeline):
        run = pipeline.runs.first()
        return run.get_status_display() if run else "-"

    @admin.display(description="Step cache")
    def cache_state(self, pipeline):
        if not pipeline.pk:
            return "-"
        rows = [
            format_html("<li>step {}: {} {}</li>", item.order, item.state, item.reason)
            for item in services.step_freshness(pipeline)
        ]
        return format_html("<ul>{}</ul>", format_html("".join(rows))) if rows else "-"

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
        header = "<tr><th>type</th><th>kind</th><th>needs</th><th>params</th></tr>"
        return format_html("<table>{}{}</table>", format_html(header), rows)

    @admin.action(description="Run selected pipelines")
    def run_pipelines(self, request, queryset):
        for pipeline in queryset:
            try:
                run = runs.start_run(pipeline, user=request.user)
            except (PipelineInvalid, PipelineBusy) as exc:
                self.message_user(request, f"{pipeline}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"Run #{run.pk} of {pipeline} queued.", messages.SUCCESS)

    @admin.action(description="Clear step cache")
    def clear_caches(self, request, queryset):
        removed = sum(services.clear_cache(pipeline) for pipeline in queryset)
        self.message_user(request, f"Removed {removed} cached step file(s).", messages.SUCCESS)


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
    inlines = [StepRunInline]
    actions = ["cancel_runs"]

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request, queryset):
        for run in queryset:
            outcome = runs.cancel_run(run)
            self.message_user(request, f"Run #{run.pk}: {outcome}.", messages.INFO)

    @admin.display(description="Logs")
    def log_output(self, run):
        return format_html("<pre>{}</pre>", run.logs)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


from pipelines import admin_schedules  # noqa: E402,F401
