from django.core.management.base import BaseCommand

from pipelines.accounts import INTEGRATION_PERMISSIONS, create_integration_user


class Command(BaseCommand):
    help = (
        "Create a user that may start, follow and cancel runs, and print a new API token "
        "(shown once; it expires after MLOPS_API_TOKEN_TTL_DAYS)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", help="One user per integration, e.g. ci-bot.")
        parser.add_argument(
            "--token-name",
            default="integration",
            help="What the token is for (listed in GET /api/v1/tokens/).",
        )

    def handle(self, *args, username, token_name, **options):
        token, created = create_integration_user(username, token_name)
        what = "Created" if created else "Updated"
        self.stderr.write(f"{what} {username} with {', '.join(INTEGRATION_PERMISSIONS)}.")
        self.stdout.write(token)
