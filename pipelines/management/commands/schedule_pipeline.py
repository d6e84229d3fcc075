from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from pipelines import schedules
from pipelines.choices import CatchUpPolicy, OverlapPolicy
from pipelines.management.commands._helpers import get_pipeline

# The option that sets each schedule field, to name it in errors.
OPTIONS = {
    "cron": "--cron",
    "timezone": "--tz",
    "interval_seconds": "--every",
    "overlap_policy": "--overlap",
    "catch_up": "--catch-up",
}


class Command(BaseCommand):
    help = "Schedule a pipeline on a cron expression in a time zone, or every N seconds."

    def add_arguments(self, parser):
        parser.add_argument("pipeline", help="Pipeline name or id.")
        rule = parser.add_mutually_exclusive_group(required=True)
        rule.add_argument("--cron", help='Five-field cron expression, e.g. "0 6 * * *".')
        rule.add_argument(
            "--every",
            type=int,
            metavar="SECONDS",
            help=f"Fire every SECONDS (at least {schedules.MIN_INTERVAL_SECONDS}).",
        )
        parser.add_argument(
            "--tz", default="UTC", help="Time zone the cron expression is read in (IANA name)."
        )
        parser.add_argument(
            "--overlap",
            choices=OverlapPolicy.values,
            default=OverlapPolicy.SKIP,
            help="What a tick does while a run of the pipeline is active (default skip).",
        )
        parser.add_argument(
            "--catch-up",
            dest="catch_up",
            choices=CatchUpPolicy.values,
            default=CatchUpPolicy.NONE,
            help="Ticks missed while no scheduler ran: none, the latest, or all (default none).",
        )

    def handle(self, *args, pipeline, cron, every, tz, overlap, catch_up, **options):
        target = get_pipeline(pipeline)
        try:
            schedule = schedules.create_schedule(
                target,
                cron=cron,
                timezone=tz,
                interval_seconds=every,
                overlap_policy=overlap,
                catch_up=catch_up,
            )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(
                    f"{OPTIONS.get(field, field)}: {' '.join(messages)}"
                    for field, messages in exc.message_dict.items()
                )
            ) from None
        self.stdout.write(
            f"Schedule #{schedule.pk}: {target} {schedules.describe_rule(schedule)} "
            f"({schedule.timezone}), overlap {schedule.overlap_policy}, "
            f"catch-up {schedule.catch_up}."
        )
        self.stdout.write(f"Next run: {schedules.local_time(schedule, schedule.next_tick_at)}")
