from django.core.management.base import BaseCommand

from pipelines.demo import seed_demo


class Command(BaseCommand):
    help = "Create the demo datasets and the breast-cancer and diabetes pipelines."

    def handle(self, *args, **options):
        created = seed_demo()
        for item in created:
            self.stdout.write(f"Created {item}.")
        if not created:
            self.stdout.write("Demo data already present.")
