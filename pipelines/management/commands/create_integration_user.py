from django.core.management.base import BaseCommand

from pipelines.accounts import INTEGRATION_PERMISSIONS, create_integration_user


class Command(BaseCommand):
    help = "Create a user that may start, follow and cancel runs, and print its API token."

    def add_arguments(self, parser):
        parser.add_argument("username", help="One user per integration, e.g. ci-bot.")

    def handle(self, *args, username, **options):
        token, created = create_integration_user(username)
        what = "Created" if created else "Updated"
        self.stderr.write(f"{what} {username} with {', '.join(INTEGRATION_PERMISSIONS)}.")
        self.stdout.write(token)
