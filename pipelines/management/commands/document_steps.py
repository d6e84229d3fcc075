from django.core.management.base import BaseCommand, CommandError

from pipelines.docs import render_step_reference, step_reference_path


class Command(BaseCommand):
    help = "Write docs/step-types.md, the reference of every step type and its parameters."

    def add_arguments(self, parser):
        parser.add_argument(
            "--check",
            action="store_true",
            help="Write nothing; fail when the file is not up to date (for CI).",
        )

    def handle(self, *args, check, **options):
        path = step_reference_path()
        text = render_step_reference()
        if check:
            if not path.exists() or path.read_text() != text:
                raise CommandError(f"{path} is stale: run `manage.py document_steps`.")
            self.stdout.write(f"{path} is up to date.")
            return
        path.write_text(text)
        self.stdout.write(f"Wrote {path}.")
