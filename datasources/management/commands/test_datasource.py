from django.core.management.base import BaseCommand, CommandError

from datasources.models import DataSource
from datasources.sources import check_source


class Command(BaseCommand):
    help = "Connect to a data source and report the server, or what went wrong."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name, **options):
        try:
            source = DataSource.objects.get_by_reference(name)
        except DataSource.DoesNotExist as exc:
            raise CommandError(str(exc)) from None
        ok, message = check_source(source)
        if not ok:
            raise CommandError(f"{source.name}: {message}")
        self.stdout.write(f"{source.name}: OK, {message}")
