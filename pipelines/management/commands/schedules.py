from django.core.management.base import BaseCommand, CommandError

from pipelines import schedules
from pipelines.models import PipelineSchedule


class Command(BaseCommand):
    help = "List, pause, resume or delete pipeline schedules, or fire the due ticks now."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        actions.add_parser("list", help="Every schedule with its next and last tick.")
        for name, text in [
            ("pause", "Stop a schedule from firing."),
            ("resume", "Fire again from now on; ticks due while paused are not caught up."),
            ("delete", "Delete a schedule and its tick history."),
        ]:
            actions.add_parser(name, help=text).add_argument("id", type=int, help="Schedule id.")
        actions.add_parser("fire", help="Fire the ticks that are due now and print them.")

    def handle(self, *args, action, **options):
        if action == "list":
            return self.list_schedules()
        if action == "fire":
            return self.fire_due()
        schedule = self.get(options["id"])
        if action == "pause":
            schedules.pause_schedule(schedule)
            self.stdout.write(f"Schedule #{schedule.pk} paused.")
        elif action == "resume":
            # An enabled schedule keeps its next tick: recomputing it could skip a due one.
            state = "is already enabled" if schedule.enabled else "resumed"
            if not schedule.enabled:
                schedules.resume_schedule(schedule)
            self.stdout.write(
                f"Schedule #{schedule.pk} {state}; next run "
                f"{schedules.local_time(schedule, schedule.next_tick_at)}."
            )
        elif action == "delete":
            pk = schedule.pk
            schedule.delete()
            self.stdout.write(f"Schedule #{pk} deleted.")

    def get(self, pk: int) -> PipelineSchedule:
        schedule = PipelineSchedule.objects.select_related("pipeline").filter(pk=pk).first()
        if schedule is None:
            raise CommandError(f"no schedule #{pk}")
        return schedule

    def list_schedules(self):
        rows = [("ID", "PIPELINE", "RULE", "TZ", "STATE", "NEXT TICK", "LAST TICK")]
        for schedule in PipelineSchedule.objects.select_related("pipeline"):
            last = schedule.ticks.first()
            rows.append(
                (
                    str(schedule.pk),
                    schedule.pipeline.name,
                    schedules.describe_rule(schedule),
                    schedule.timezone,
                    "enabled" if schedule.enabled else "paused",
                    schedules.local_time(schedule, schedule.next_tick_at)
                    if schedule.enabled
                    else "-",
                    f"{schedules.local_time(schedule, last.tick_at)} {_outcome(last)}"
                    if last
                    else "-",
                )
            )
        if len(rows) == 1:
            self.stdout.write("No schedules.")
            return
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            self.stdout.write("  ".join([*cells, row[-1]]))

    def fire_due(self):
        ticks = schedules.fire_due_ticks()
        if not ticks:
            self.stdout.write("No tick was due.")
        for tick in ticks:
            self.stdout.write(
                f"Schedule #{tick.schedule_id} ({tick.schedule.pipeline}) tick "
                f"{schedules.local_time(tick.schedule, tick.tick_at)}: {_outcome(tick)}"
            )


def _outcome(tick) -> str:
    if tick.run_id:
        return f"{tick.outcome} run #{tick.run_id}"
    return f"{tick.outcome}: {tick.reason}"
