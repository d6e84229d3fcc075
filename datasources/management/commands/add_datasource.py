import getpass
import json
import os

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from datasources.models import DataSource, DataSourceKind
from datasources.sources import save_source


class Command(BaseCommand):
    help = "Register a data source (or update one of the same name). The secret is never echoed."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--kind", required=True, choices=DataSourceKind.values)
        parser.add_argument("--host", required=True)
        parser.add_argument("--port", type=int)
        parser.add_argument("--database", default="")
        parser.add_argument("--user", default="")
        parser.add_argument(
            "--password-env", help="Read the secret from this environment variable."
        )
        parser.add_argument("--no-password", action="store_true", help="Store no secret.")
        parser.add_argument("--options", default="{}", help='JSON, e.g. {"tls": true}.')
        parser.add_argument("--allow-writes", action="store_true")

    def handle(self, *args, **options):
        secret = self._secret(options)
        try:
            extra = json.loads(options["options"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--options is not valid JSON: {exc}") from None
        values = {
            "name": options["name"],
            "kind": options["kind"],
            "host": options["host"],
            "port": options["port"],
            "database": options["database"],
            "user": options["user"],
            "options": extra,
            "allow_writes": options["allow_writes"],
        }
        existing = DataSource.objects.filter(name=options["name"]).first()
        try:
            source = save_source(values, secret, existing)
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(m)}" for field, m in exc.message_dict.items())
            raise CommandError(problems) from None
        verb = "Updated" if existing else "Added"
        self.stdout.write(f"{verb} data source {source.name} (id {source.pk}, {source.kind}).")

    def _secret(self, options) -> str | None:
        if options["no_password"]:
            return ""
        variable = options["password_env"]
        if variable:
            if variable not in os.environ:
                raise CommandError(f"--password-env: environment variable {variable} is not set")
            return os.environ[variable]
        if not self.stdin_is_tty():
            raise CommandError("give --password-env VAR or --no-password (no terminal to prompt)")
        return getpass.getpass("Password: ")

    @staticmethod
    def stdin_is_tty() -> bool:
        import sys

        return sys.stdin.isatty()
