from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.utils.crypto import get_random_string


class Command(BaseCommand):
    help = "Create a local superuser with a generated password, printed once."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(
                f"Log in as {username!r} (password printed when it was created; "
                f"reset it with: manage.py changepassword {username})."
            )
            return
        password = get_random_string(16)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(f"Created local admin login: {username} / {password}")
