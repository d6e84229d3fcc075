import json

from django.core.management.base import BaseCommand

from pipelines import services
from pipelines.management.commands._helpers import get_pipeline


class Command(BaseCommand):
    help = "Print a pipeline's definition as JSON (name, description, steps)."

    def add_arguments(self, parser):
        parser.add_argument("pipeline", help="Pipeline name or id.")

    def handle(self, *args, pipeline, **options):
        data = services.export_pipeline(get_pipeline(pipeline))
        self.stdout.write(json.dumps(data, indent=2, sort_keys=False))
