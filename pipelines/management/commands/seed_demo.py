from django.core.management.base import BaseCommand

from pipelines.demo import queue_demo_runs, seed_demo


class Command(BaseCommand):
    help = "Create the demo datasets and the breast-cancer and diabetes pipelines."

    def add_arguments(self, parser):
        parser.add_argument(
            "--run",
            action="store_true",
            help="Also queue one run of each demo pipeline that has never run.",
        )

    def handle(self, *args, run, **options):
        created = seed_demo()
        for item in created:
            self.stdout.write(f"Created {item}.")
        if not created:
            self.stdout.write("Demo data already present.")
        for item in queue_demo_runs() if run else []:
            self.stdout.write(f"Queued {item}.")
