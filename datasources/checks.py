"""System checks: the connector registry and the DataSource kinds must agree.

The kinds are listed twice on purpose (the model's choices live in migrations; the
registry holds dotted paths imported lazily): this check keeps the two lists one.
"""

from django.core import checks
from django.utils.module_loading import import_string


@checks.register(checks.Tags.models)
def check_connector_registry(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    from datasources.connectors import CONNECTORS
    from datasources.models import DataSourceKind

    errors = []
    for kind in sorted(set(DataSourceKind.values) - set(CONNECTORS)):
        errors.append(
            checks.Error(
                f"Data source kind {kind!r} has no connector.",
                hint="Register its connector class in CONNECTORS "
                "(datasources/connectors/__init__.py).",
                obj=DataSourceKind,
                id="datasources.E001",
            )
        )
    for kind in sorted(set(CONNECTORS) - set(DataSourceKind.values)):
        errors.append(
            checks.Error(
                f"Connector {kind!r} is not a DataSourceKind choice: no source can use it.",
                hint="Add it to DataSourceKind (datasources/models.py) with a migration.",
                id="datasources.E002",
            )
        )
    for kind, path in sorted(CONNECTORS.items()):
        errors.extend(_check_connector(kind, path))
    return errors


def _check_connector(kind: str, path: str) -> list[checks.CheckMessage]:
    try:
        connector = import_string(path)
    except ImportError as exc:
        return [
            checks.Error(
                f"Connector {kind!r} cannot be imported from {path!r}: {exc}",
                id="datasources.E003",
            )
        ]
    if getattr(connector, "kind", None) != kind:
        return [
            checks.Error(
                f"Connector {path!r} is registered as {kind!r} but its kind is "
                f"{getattr(connector, 'kind', None)!r}.",
                id="datasources.E004",
            )
        ]
    return []
