import json

from django.core.management.base import BaseCommand, CommandError

from pipelines import services
from pipelines.validation import PipelineInvalid


class Command(BaseCommand):
    help = "Create a pipeline from exported JSON; it is validated before anything is saved."

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the JSON file.")
        parser.add_argument(
            "--replace", action="store_true", help="Overwrite a pipeline of the same name."
        )

    def handle(self, *args, file, replace, **options):
        try:
            with open(file, encoding="utf-8") as handle:
                data = json.load(handle)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise CommandError(f"{file} is not valid JSON: {exc}") from None
        try:
            pipeline = services.import_pipeline(data, replace=replace)
        except PipelineInvalid as exc:
            lines = "\n".join(f"  {error}" for error in exc.errors)
            raise CommandError(f"{file} is not a valid pipeline:\n{lines}") from None
        self.stdout.write(f"Imported pipeline {pipeline.name} (id {pipeline.pk}).")
