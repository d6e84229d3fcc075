from django.core.management.base import BaseCommand, CommandError

from pipelines import runs
from pipelines.choices import RunStatus, RunTrigger
from pipelines.management.commands._helpers import get_pipeline
from pipelines.runs import PipelineBusy
from pipelines.validation import PipelineInvalid


class Command(BaseCommand):
    help = "Run a pipeline in this process and print its progress, status and metrics."

    def add_arguments(self, parser):
        parser.add_argument("pipeline", help="Pipeline name or id.")
        parser.add_argument(
            "--from-step",
            type=int,
            dest="from_step",
            help="Start at the step of this order, reusing fresh cached steps before it.",
        )
        parser.add_argument(
            "--queue",
            action="store_true",
            help="Hand the run to the workers and return at once instead of running it here.",
        )

    def handle(self, *args, pipeline, from_step, queue, **options):
        target = get_pipeline(pipeline)
        try:
            run = runs.start_run(
                target, trigger=RunTrigger.COMMAND, from_step=from_step, wait=not queue
            )
        except PipelineInvalid as exc:
            raise CommandError(f"{target} is invalid: {exc}") from None
        except PipelineBusy as exc:
            raise CommandError(str(exc)) from None
        if queue:
            self.stdout.write(f"Run #{run.pk} queued.")
            return
        self.stdout.write(run.logs, ending="")
        for step in run.step_runs.all():
            self.stdout.write(f"  step {step.order} {step.step_type}: {step.get_status_display()}")
        self.stdout.write(f"Run #{run.pk}: {run.status}")
        for name, value in run.metrics.items():
            self.stdout.write(f"  {name}: {value:.4f}")
        if run.mlflow_run_id:
            self.stdout.write(f"MLflow run: {run.mlflow_run_id}")
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(run.error_message or f"run ended {run.status}")
