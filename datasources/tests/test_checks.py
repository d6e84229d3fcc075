"""The system check that keeps the connector registry and DataSourceKind one list."""

from django.core.management import call_command

from datasources import connectors
from datasources.checks import check_connector_registry
from datasources.connectors.mysql import MySQLConnector


def ids(errors) -> list[str]:
    return [error.id for error in errors]


def test_registry_and_kinds_agree():
    assert check_connector_registry() == []
    call_command("check", "datasources")  # raises SystemCheckError on an error


def test_a_kind_without_connector_is_reported(monkeypatch):
    registry = {k: v for k, v in connectors.CONNECTORS.items() if k != "cratedb"}
    monkeypatch.setattr(connectors, "CONNECTORS", registry)

    errors = check_connector_registry()

    assert ids(errors) == ["datasources.E001"]
    assert errors[0].msg == "Data source kind 'cratedb' has no connector."


def test_a_connector_without_kind_is_reported(monkeypatch):
    registry = {**connectors.CONNECTORS, "oracle": "datasources.connectors.mysql.MySQLConnector"}
    monkeypatch.setattr(connectors, "CONNECTORS", registry)

    errors = check_connector_registry()

    assert ids(errors) == ["datasources.E002", "datasources.E004"]
    assert "'oracle' is not a DataSourceKind choice" in errors[0].msg
    assert "registered as 'oracle' but its kind is 'mysql'" in errors[1].msg


def test_an_unimportable_connector_is_reported(monkeypatch):
    registry = {**connectors.CONNECTORS, "mysql": "datasources.connectors.nope.Missing"}
    monkeypatch.setattr(connectors, "CONNECTORS", registry)

    assert ids(check_connector_registry()) == ["datasources.E003"]


def test_a_connector_whose_kind_differs_from_its_key_is_reported(monkeypatch):
    monkeypatch.setattr(MySQLConnector, "kind", "mariadb")

    assert ids(check_connector_registry()) == ["datasources.E004"]
