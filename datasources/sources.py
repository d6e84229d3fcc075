"""Registering and testing data sources."""

from django.core.exceptions import ValidationError
from django.db import transaction

from datasources.connectors import connector_class
from datasources.connectors.base import ConnectorError
from datasources.models import DataSource

SOURCE_FIELDS = ("name", "kind", "host", "port", "database", "user", "options", "allow_writes")


def save_source(
    values: dict, secret: str | None = None, source: DataSource | None = None
) -> DataSource:
    """Create or update a data source; the secret changes only when one is given."""
    source = source or DataSource()
    unknown = set(values) - set(SOURCE_FIELDS)
    if unknown:
        raise ValidationError({field: "Not a data source field." for field in unknown})
    for field, value in values.items():
        setattr(source, field, value)
    if secret is not None:
        source.set_secret(secret)
    source.full_clean()
    unknown_options = set(source.options) - set(connector_class(source.kind).options)
    if unknown_options:
        raise ValidationError(
            {"options": f"Unknown option(s): {', '.join(sorted(unknown_options))}."}
        )
    with transaction.atomic():
        source.save()
    return source


def check_source(source: DataSource) -> tuple[bool, str]:
    """Connect and read; (True, server description) or (False, what went wrong)."""
    try:
        return True, source.connector().test()
    except ConnectorError as exc:
        return False, str(exc)
