from django.core.management.base import BaseCommand, CommandError

from pipelines import runs
from pipelines.models import PipelineRun

MESSAGES = {
    "cancelled": "Run #{pk} was queued and is now cancelled.",
    "cancelling": "Run #{pk} will stop before its next step (or after the grace period).",
    "finished": "Run #{pk} had already ended ({status}); nothing to cancel.",
}


class Command(BaseCommand):
    help = "Cancel a queued or running pipeline run."

    def add_arguments(self, parser):
        parser.add_argument("run", type=int, help="Run id.")

    def handle(self, *args, run, **options):
        try:
            target = PipelineRun.objects.get(pk=run)
        except PipelineRun.DoesNotExist:
            raise CommandError(f"no run #{run}") from None
        outcome = runs.cancel_run(target)
        self.stdout.write(MESSAGES[outcome].format(pk=target.pk, status=target.status))
