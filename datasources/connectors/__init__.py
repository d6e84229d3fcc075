"""Connectors by data source kind, imported lazily by dotted path."""

from django.conf import settings
from django.utils.module_loading import import_string

from datasources.connectors.base import ConnectionSettings, Connector

CONNECTORS: dict[str, str] = {
    "mysql": "datasources.connectors.mysql.MySQLConnector",
    "postgresql": "datasources.connectors.postgresql.PostgreSQLConnector",
    "mongodb": "datasources.connectors.mongodb.MongoConnector",
    "cratedb": "datasources.connectors.cratedb.CrateConnector",
}


def connector_class(kind: str) -> type[Connector]:
    try:
        return import_string(CONNECTORS[kind])
    except KeyError:
        raise ValueError(f"no connector for data source kind {kind!r}") from None


def get_connector(source) -> Connector:
    """The connector of a DataSource, with its decrypted secret."""
    connection = ConnectionSettings(
        host=source.host,
        port=source.port,
        database=source.database,
        user=source.user,
        secret=source.get_secret(),
        options=source.options or {},
        allow_writes=source.allow_writes,
        require_read_only_account=settings.MLOPS_REQUIRE_READONLY_ACCOUNTS,
    )
    return connector_class(source.kind)(connection)
