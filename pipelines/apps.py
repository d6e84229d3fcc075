from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    name = "pipelines"

    def ready(self):
        # Importing the step modules registers every step type by slug.
        from pipelines import steps  # noqa: F401
