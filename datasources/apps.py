from django.apps import AppConfig


class DatasourcesConfig(AppConfig):
    name = "datasources"

    def ready(self):
        from datasources import checks  # noqa: F401  (registers the system checks)
