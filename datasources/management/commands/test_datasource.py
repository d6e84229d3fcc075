from django.core.management.base import BaseCommand, CommandError

from datasources.models import DataSource
from datasources.sources import READ_ONLY_REPORT, check_source


class Command(BaseCommand):
    help = (
        "Connect to a data source and report the server and what its account may do "
        "besides reading, or what went wrong. Fails when extraction from it is refused."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name, **options):
        try:
            source = DataSource.objects.get_by_reference(name)
        except DataSource.DoesNotExist as exc:
            raise CommandError(str(exc)) from None
        check = check_source(source)
        if not check.ok:
            raise CommandError(f"{source.name}: {check.message}")
        self.stdout.write(f"{source.name}: OK, {check.message}")
        if check.worrying:
            self.stderr.write(self.style.WARNING(check.warning))
        else:
            self.stdout.write(check.warning or READ_ONLY_REPORT)
        if check.refusal:
            raise CommandError(f"{source.name}: {check.refusal}")
