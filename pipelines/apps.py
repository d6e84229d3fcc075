from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    name = "pipelines"

    def ready(self):
        from importlib import import_module

        from django.conf import settings

        # Importing the step modules registers every step type by slug.
        from pipelines import steps  # noqa: F401

        for module in settings.MLOPS_STEP_MODULES:
            import_module(module)
