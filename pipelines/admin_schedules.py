"""Admin for pipeline schedules and their tick history (imported by pipelines.admin)."""

from django.contrib import admin, messages

from pipelines import schedules
from pipelines.forms import ScheduleForm
from pipelines.models import PipelineSchedule, ScheduleTick


def in_schedule_zone(schedule: PipelineSchedule, moment) -> str:
    """A moment in the schedule's time zone, named: 2026-03-30 06:00 CEST (Europe/Paris)."""
    text = schedules.local_time(schedule, moment)
    if moment is None or text.endswith(f" {schedule.timezone}"):
        return text  # "-", or a zone whose abbreviation is its name (UTC)
    return f"{text} ({schedule.timezone})"


class ScheduleTickInline(admin.TabularInline):
    """The latest ticks of a schedule, newest first; the full history has its own page."""

    model = ScheduleTick
    limit = 20
    verbose_name_plural = f"latest {limit} ticks"
    extra = 0
    can_delete = False
    fields = ("tick_local", "outcome", "reason", "run", "created_at")
    readonly_fields = fields
    ordering = ("-tick_at",)

    @admin.display(description="Tick")
    def tick_local(self, tick):
        return in_schedule_zone(tick.schedule, tick.tick_at)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PipelineSchedule)
class PipelineScheduleAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "pipeline",
        "rule",
        "enabled",
        "overlap_policy",
        "catch_up",
        "next_tick_local",
    )
    list_filter = ("enabled", "overlap_policy", "catch_up", "pipeline")
    list_select_related = ("pipeline",)
    fields = (
        "pipeline",
        "cron",
        "timezone",
        "interval_seconds",
        "enabled",
        "overlap_policy",
        "catch_up",
        "next_tick_local",
        "created_at",
    )
    readonly_fields = ("next_tick_local", "created_at")
    form = ScheduleForm
    inlines = [ScheduleTickInline]
    actions = ["pause", "resume", "fire_now"]

    @admin.display(description="Rule")
    def rule(self, schedule):
        return schedules.describe_rule(schedule)

    @admin.display(description="Next tick", ordering="next_tick_at")
    def next_tick_local(self, schedule):
        return in_schedule_zone(schedule, schedule.next_tick_at) if schedule.enabled else "-"

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, ScheduleTickInline):
            latest = []
            if obj is not None and obj.pk:
                latest = obj.ticks.order_by("-tick_at").values_list("pk", flat=True)
                latest = list(latest[: inline.limit])
            kwargs["queryset"] = kwargs["queryset"].filter(pk__in=latest).select_related("schedule")
        return kwargs

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)  # save() gives the first tick
            return
        # The form has already put the new values on obj: the service compares them with
        # the stored ones to know whether the rule changed or the schedule was enabled.
        stored = PipelineSchedule.objects.get(pk=obj.pk)
        changes = {name: getattr(obj, name) for name in form.changed_data}
        obj.next_tick_at = schedules.update_schedule(stored, **changes).next_tick_at

    @admin.action(description="Pause selected schedules", permissions=["change"])
    def pause(self, request, queryset):
        for schedule in queryset:
            schedules.pause_schedule(schedule)
        self.message_user(request, f"Paused {len(queryset)} schedule(s).", messages.SUCCESS)

    @admin.action(
        description="Resume selected schedules (from now, without catching up)",
        permissions=["change"],
    )
    def resume(self, request, queryset):
        # Enabled schedules are left alone: resuming would move a tick that is due.
        paused = list(queryset.filter(enabled=False))
        for schedule in paused:
            schedules.resume_schedule(schedule)
        self.message_user(request, f"Resumed {len(paused)} schedule(s).", messages.SUCCESS)

    @admin.action(description="Fire a tick now (overlap policy applies)", permissions=["fire"])
    def fire_now(self, request, queryset):
        for schedule in queryset.select_related("pipeline"):
            tick = schedules.fire_now(schedule)
            if tick is None:
                continue
            if tick.run_id:
                self.message_user(
                    request, f"{schedule}: started run #{tick.run_id}.", messages.SUCCESS
                )
            else:
                self.message_user(request, f"{schedule}: skipped, {tick.reason}.", messages.WARNING)

    def has_fire_permission(self, request):
        """Firing changes the schedule's history and starts a run: it needs both rights."""
        return request.user.has_perms(
            ["pipelines.change_pipelineschedule", "pipelines.add_pipelinerun"]
        )


@admin.register(ScheduleTick)
class ScheduleTickAdmin(admin.ModelAdmin):
    """Read-only tick history. Deleting stays allowed, so schedules (whose ticks cascade)
    can be deleted and old history pruned."""

    list_display = ("tick_local", "schedule", "outcome", "reason", "run", "created_at")
    list_filter = ("outcome", "schedule__pipeline")
    list_select_related = ("schedule__pipeline", "run__pipeline")
    date_hierarchy = "tick_at"
    search_fields = ("reason", "schedule__pipeline__name")
    fields = ("schedule", "tick_local", "outcome", "reason", "run", "created_at")
    readonly_fields = ("tick_local",)

    @admin.display(description="Tick", ordering="tick_at")
    def tick_local(self, tick):
        return in_schedule_zone(tick.schedule, tick.tick_at)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
