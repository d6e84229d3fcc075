"""What a data source's account may do besides reading, reported when the source is
tested and, with MLOPS_REQUIRE_READONLY_ACCOUNTS on, refusing extraction.

MariaDB (127.0.0.1:3306, root) and PostgreSQL (127.0.0.1:5432, postgres) are real: root
and postgres are privileged, and each test module makes throwaway accounts that can only
read (`mlops_ro_<random>`), dropped afterwards. No MongoDB or CrateDB server runs here:
their rights come from mocked answers to the commands the connectors send
(connectionStatus with showPrivileges; sys.users and sys.privileges).
"""

import uuid
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from conftest import require_service
from datasources.connectors import base
from datasources.connectors.base import AccountRights, ConnectionSettings, QueryRefused
from datasources.connectors.cratedb import CrateConnector
from datasources.connectors.mongodb import MongoConnector
from datasources.connectors.mysql import MySQLConnector, grant_rights
from datasources.connectors.postgresql import PostgreSQLConnector
from datasources.sources import check_source, save_source

MARIADB = ("127.0.0.1", 3306)
POSTGRES = ("127.0.0.1", 5432)
PASSWORD = "ro-" + uuid.uuid4().hex[:12]


def connection_settings(**values) -> ConnectionSettings:
    defaults = dict(
        host="127.0.0.1",
        port=None,
        database="",
        user="",
        secret="",
        options={},
        allow_writes=False,
    )
    return ConnectionSettings(**{**defaults, **values})


# MariaDB: root, a SELECT-only account, and one with write and FILE rights


@pytest.fixture(scope="module")
def mariadb():
    """A database with a table, an account that can only SELECT from it, and one that
    can also INSERT (through a role it has not enabled) and read server files."""
    import MySQLdb

    require_service("MariaDB", *MARIADB)
    suffix = uuid.uuid4().hex[:10]
    names = {
        "database": f"mlops_rights_{suffix}",
        "reader": f"mlops_ro_{suffix}",
        "writer": f"mlops_rw_{suffix}",
        "role": f"mlops_role_{suffix}",
    }
    admin = MySQLdb.connect(host=MARIADB[0], port=MARIADB[1], user="root", autocommit=True)
    cursor = admin.cursor()
    database, reader, writer, role = (names[k] for k in ("database", "reader", "writer", "role"))
    cursor.execute(f"CREATE DATABASE `{database}`")
    cursor.execute(f"CREATE TABLE `{database}`.items (id INT PRIMARY KEY, name VARCHAR(20))")
    cursor.execute(f"INSERT INTO `{database}`.items VALUES (1, 'apple'), (2, 'pear')")
    for user in (reader, writer):
        cursor.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'")
        cursor.execute(f"GRANT SELECT ON `{database}`.* TO '{user}'@'%'")
    # Granted to the writer only: by default its creator (root) would hold it too.
    cursor.execute(f"CREATE ROLE `{role}` WITH ADMIN '{writer}'@'%'")
    cursor.execute(f"GRANT INSERT, DELETE ON `{database}`.* TO `{role}`")
    cursor.execute(f"GRANT FILE ON *.* TO '{writer}'@'%'")
    yield names
    for user in (reader, writer):
        cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
    cursor.execute(f"DROP ROLE IF EXISTS `{role}`")
    cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
    admin.close()


def mariadb_connector(mariadb, user="root", **values) -> MySQLConnector:
    secret = "" if user == "root" else PASSWORD
    return MySQLConnector(
        connection_settings(
            host=MARIADB[0],
            port=MARIADB[1],
            database=mariadb["database"],
            user=mariadb.get(user, user),
            secret=secret,
            **values,
        )
    )


def mariadb_source(mariadb, user="root", name="local-mariadb", **values):
    return save_source(
        {
            "name": name,
            "kind": "mysql",
            "host": MARIADB[0],
            "port": MARIADB[1],
            "database": mariadb["database"],
            "user": mariadb.get(user, user),
            **values,
        },
        secret="" if user == "root" else PASSWORD,
    )


def test_mariadb_root_can_write_read_files_and_administer(mariadb):
    rights = mariadb_connector(mariadb).account_rights()

    assert rights.write == ("ALL PRIVILEGES on *.*",)
    assert "FILE, by ALL PRIVILEGES" in rights.server_files
    assert "SUPER, by ALL PRIVILEGES" in rights.admin
    assert not rights.read_only


def test_mariadb_select_only_account_is_read_only(mariadb):
    assert mariadb_connector(mariadb, "reader").account_rights() == AccountRights()


def test_mariadb_rights_of_a_granted_role_and_file_are_reported(mariadb):
    rights = mariadb_connector(mariadb, "writer").account_rights()

    database = mariadb["database"]
    assert rights.write == (f"INSERT on {database}.*", f"DELETE on {database}.*")
    assert rights.server_files == ("FILE",)
    assert rights.admin == ()


def test_grant_lines_are_classified_and_never_keep_the_grantee():
    lines = [
        "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*59C66E12B8C113E0D908DA22'",
        "GRANT SELECT, INSERT (`a`, `b`), SUPER, BINLOG ADMIN, FILE ON *.* TO `u`@`%`",
        "GRANT SELECT, EXECUTE, SHOW VIEW ON `shop`.* TO `u`@`%` WITH GRANT OPTION",
        "GRANT `reader`, `audit` TO `u`@`%`",
        "SET DEFAULT ROLE `reader` FOR `u`@`%`",
    ]

    rights, roles = grant_rights(lines)

    assert rights == AccountRights(
        write=("INSERT on *.*",),
        server_files=("FILE",),
        admin=("SUPER", "BINLOG ADMIN", "GRANT OPTION on shop.*"),
    )
    assert roles == ["`reader`", "`audit`"]
    assert "59C66" not in str(rights)


# PostgreSQL: postgres (superuser), a SELECT-only role, a role with more


@pytest.fixture(scope="module")
def postgres():
    import psycopg

    require_service("PostgreSQL", *POSTGRES)
    suffix = uuid.uuid4().hex[:10]
    names = {
        "database": f"mlops_rights_{suffix}",
        "reader": f"mlops_ro_{suffix}",
        "writer": f"mlops_rw_{suffix}",
    }
    database, reader, writer = names["database"], names["reader"], names["writer"]

    def connect(dbname="postgres"):
        return psycopg.connect(
            host=POSTGRES[0], port=POSTGRES[1], user="postgres", dbname=dbname, autocommit=True
        )

    with connect() as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
        admin.execute(f"CREATE ROLE \"{reader}\" LOGIN PASSWORD '{PASSWORD}'")
        admin.execute(f"CREATE ROLE \"{writer}\" LOGIN CREATEROLE PASSWORD '{PASSWORD}'")
        admin.execute(f'GRANT pg_read_server_files TO "{writer}"')
    with connect(database) as admin:
        admin.execute("CREATE TABLE items (id INT PRIMARY KEY, name TEXT)")
        admin.execute("INSERT INTO items VALUES (1, 'apple'), (2, 'pear')")
        admin.execute(f'GRANT SELECT ON items TO "{reader}", "{writer}"')
        admin.execute(f'GRANT INSERT ON items TO "{writer}"')
    yield names
    with connect() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute(f'DROP ROLE IF EXISTS "{reader}"')
        admin.execute(f'DROP ROLE IF EXISTS "{writer}"')


def postgres_connector(postgres, user="postgres", **values) -> PostgreSQLConnector:
    return PostgreSQLConnector(
        connection_settings(
            host=POSTGRES[0],
            port=POSTGRES[1],
            database=postgres["database"],
            user=postgres.get(user, user),
            secret=PASSWORD,
            **values,
        )
    )


def test_postgres_superuser_is_reported(postgres):
    rights = postgres_connector(postgres).account_rights()

    assert rights == AccountRights(
        write=("superuser",), server_files=("superuser",), admin=("superuser",)
    )


def test_postgres_select_only_role_is_read_only(postgres):
    assert postgres_connector(postgres, "reader").account_rights() == AccountRights()


def test_postgres_table_writes_server_files_and_createrole_are_reported(postgres):
    rights = postgres_connector(postgres, "writer").account_rights()

    assert rights == AccountRights(
        write=("INSERT/UPDATE/DELETE on public.items",),
        server_files=("member of pg_read_server_files",),
        admin=("CREATEROLE",),
    )


def test_postgres_dblink_is_reported_for_a_select_only_role(postgres):
    import psycopg

    with psycopg.connect(
        host=POSTGRES[0],
        port=POSTGRES[1],
        user="postgres",
        dbname=postgres["database"],
        autocommit=True,
    ) as admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS dblink")
        try:
            rights = postgres_connector(postgres, "reader").account_rights()
        finally:
            admin.execute("DROP EXTENSION dblink")

    assert "dblink_exec (dblink: a second connection, not read-only)" in rights.write
    assert not rights.server_files and not rights.admin


# Testing a source reports the rights: the service, the command and the admin action


def test_check_source_warns_about_a_privileged_account(mariadb, db):
    source = mariadb_source(mariadb)

    check = check_source(source)

    assert check.ok and check.worrying and not check.refusal
    assert check.warning.startswith(
        "Warning: this account can write data (ALL PRIVILEGES on *.*), read or write server "
        "files (FILE, by ALL PRIVILEGES) and administer the server (SUPER, by ALL PRIVILEGES"
    )
    assert "cannot stop a stored function it calls from using them" in check.warning
    assert check.warning.endswith("Use an account with SELECT only.")


def test_check_source_of_a_read_only_account_says_so(postgres, db):
    source = save_source(
        {
            "name": "pg-reader",
            "kind": "postgresql",
            "host": POSTGRES[0],
            "port": POSTGRES[1],
            "database": postgres["database"],
            "user": postgres["reader"],
        },
        secret=PASSWORD,
    )

    check = check_source(source)

    assert check.ok and not check.worrying and check.warning == ""
    assert check.report.endswith(
        "The account can only read: no write, server-file or admin rights found."
    )


def test_check_source_of_a_source_that_allows_writes_states_its_write_rights(mariadb, db):
    source = mariadb_source(mariadb, "writer", allow_writes=True)

    check = check_source(source)

    database = mariadb["database"]
    assert check.worrying  # FILE is never needed
    assert "read or write server files (FILE)" in check.warning
    assert "write data" not in check.warning.split("It can write data")[0]
    assert check.warning.endswith(
        f"It can write data (INSERT on {database}.*, DELETE on {database}.*), "
        "as save steps to this source need."
    )


def test_test_datasource_command_prints_the_warning(mariadb, db, capsys):
    mariadb_source(mariadb)

    call_command("test_datasource", "local-mariadb")

    out, err = capsys.readouterr()
    assert out.startswith("local-mariadb: OK, MariaDB ")
    assert "Warning: this account can write data (ALL PRIVILEGES on *.*)" in err


def test_test_datasource_command_fails_when_extraction_would_be_refused(mariadb, db, settings):
    settings.MLOPS_REQUIRE_READONLY_ACCOUNTS = True
    mariadb_source(mariadb)
    mariadb_source(mariadb, "reader", name="reader")

    with pytest.raises(CommandError, match="local-mariadb: extraction from this data source"):
        call_command("test_datasource", "local-mariadb")
    call_command("test_datasource", "reader")  # a SELECT-only account passes


def test_admin_test_action_warns_with_the_name_as_typed(mariadb, admin_client):
    source = mariadb_source(mariadb)
    reader = mariadb_source(mariadb, "reader", name="ro-reader")

    response = admin_client.post(
        reverse("admin:datasources_datasource_changelist"),
        {"action": "test_connections", "_selected_action": [source.pk, reader.pk]},
        follow=True,
    )

    shown = {str(message): message.level_tag for message in response.context["messages"]}
    warned = next(text for text in shown if "local-mariadb" in text)
    assert shown[warned] == "warning"
    assert warned.startswith("Data source local-mariadb: MariaDB ")
    assert "this account can write data (ALL PRIVILEGES on *.*)" in warned
    fine = next(text for text in shown if "ro-reader" in text)
    assert shown[fine] == "success" and fine.endswith(
        "no write, server-file or admin rights found."
    )
    page = response.content.decode()
    assert "local-mariadb" in page and "Local-mariadb" not in page


# Extraction with MLOPS_REQUIRE_READONLY_ACCOUNTS


def test_extraction_from_a_privileged_account_is_refused_saying_why(mariadb, db, settings):
    settings.MLOPS_REQUIRE_READONLY_ACCOUNTS = True
    source = mariadb_source(mariadb)

    with pytest.raises(QueryRefused) as refused:
        source.connector().read("SELECT name FROM items")
    with pytest.raises(QueryRefused):
        source.connector().preview("items")

    message = str(refused.value)
    assert message.startswith("extraction from this data source is refused: its account can")
    assert "write data (ALL PRIVILEGES on *.*)" in message
    assert "administer the server (SUPER, by ALL PRIVILEGES" in message
    assert "MLOPS_REQUIRE_READONLY_ACCOUNTS is on" in message


def test_extraction_from_a_select_only_account_runs(mariadb, postgres, db, settings):
    settings.MLOPS_REQUIRE_READONLY_ACCOUNTS = True
    maria = mariadb_source(mariadb, "reader")
    pg = save_source(
        {
            "name": "pg",
            "kind": "postgresql",
            "host": POSTGRES[0],
            "port": POSTGRES[1],
            "database": postgres["database"],
            "user": postgres["reader"],
        },
        secret=PASSWORD,
    )

    assert maria.connector().read("SELECT name FROM items ORDER BY id")["name"].tolist() == [
        "apple",
        "pear",
    ]
    assert pg.connector().read("SELECT name FROM items ORDER BY id")["name"].tolist() == [
        "apple",
        "pear",
    ]


def test_a_source_that_allows_writes_is_refused_only_for_other_rights(postgres, settings):
    settings.MLOPS_REQUIRE_READONLY_ACCOUNTS = True
    writer = postgres_connector(
        postgres, "writer", allow_writes=True, require_read_only_account=True
    )

    with pytest.raises(QueryRefused) as refused:
        writer.read("SELECT 1")

    message = str(refused.value)
    assert "member of pg_read_server_files" in message and "CREATEROLE" in message
    assert "write data" not in message
    assert message.endswith("Use an account without them.")


def test_extraction_is_not_checked_when_the_setting_is_off(mariadb, db, settings):
    settings.MLOPS_REQUIRE_READONLY_ACCOUNTS = False
    source = mariadb_source(mariadb)

    with mock.patch.object(MySQLConnector, "account_rights") as asked:
        assert source.connector().read("SELECT 1 AS x")["x"].tolist() == [1]

    asked.assert_not_called()


def test_rights_are_asked_once_per_cache_period(mariadb, monkeypatch):
    connector = mariadb_connector(mariadb, "reader", require_read_only_account=True)
    calls = []
    real = MySQLConnector.account_rights
    monkeypatch.setattr(
        MySQLConnector, "account_rights", lambda self: calls.append(1) or real(self)
    )
    now = [1000.0]
    monkeypatch.setattr(base.time, "monotonic", lambda: now[0])

    connector.read("SELECT 1")
    connector.read("SELECT 1")
    now[0] += base.RIGHTS_CACHE_SECONDS + 1
    connector.read("SELECT 1")

    assert len(calls) == 2


def test_unverifiable_rights_refuse_extraction():
    connector = MongoConnector(
        connection_settings(database="shop", require_read_only_account=True),
        client=mongo_client({"authInfo": {"authenticatedUsers": []}, "ok": 1}),
    )

    with pytest.raises(QueryRefused, match="could not be checked \\(no user is authenticated"):
        connector.read({"collection": "orders"})


# MongoDB and CrateDB: mocked servers (none runs here)


def mongo_client(status: dict):
    client = mock.MagicMock()
    client.__getitem__.return_value.command.return_value = status
    return client


def test_mongodb_rights_come_from_connection_status():
    status = {
        "authInfo": {
            "authenticatedUsers": [{"user": "etl", "db": "admin"}],
            "authenticatedUserPrivileges": [
                {"resource": {"db": "shop", "collection": ""}, "actions": ["find", "insert"]},
                {"resource": {"cluster": True}, "actions": ["listDatabases", "shutdown"]},
                {"resource": {"db": "", "collection": ""}, "actions": ["createUser"]},
            ],
        },
        "ok": 1,
    }
    client = mongo_client(status)
    connector = MongoConnector(connection_settings(database="shop", user="etl"), client=client)

    rights = connector.account_rights()

    client.__getitem__.return_value.command.assert_called_once_with(
        {"connectionStatus": 1, "showPrivileges": True}
    )
    assert rights == AccountRights(
        write=("insert on shop.*",), admin=("shutdown on the cluster", "createUser on *.*")
    )


def test_mongodb_read_role_is_read_only():
    status = {
        "authInfo": {
            "authenticatedUsers": [{"user": "analyst", "db": "admin"}],
            "authenticatedUserPrivileges": [
                {
                    "resource": {"db": "shop", "collection": ""},
                    "actions": ["collStats", "find", "listCollections", "listIndexes"],
                }
            ],
        },
        "ok": 1,
    }
    connector = MongoConnector(
        connection_settings(database="shop", user="analyst"), client=mongo_client(status)
    )

    assert connector.account_rights().read_only


def crate_connector(answers: dict, **values) -> CrateConnector:
    """A CrateDB connector whose statements get canned answers (first words -> rows)."""
    connector = CrateConnector(connection_settings(user="analyst", **values))
    sent = []

    def run(stmt, args=None, timeout=None):
        sent.append(stmt)
        for start, rows in answers.items():
            if stmt.startswith(start):
                if isinstance(rows, Exception):
                    raise rows
                return [], [], rows
        raise AssertionError(f"unexpected statement {stmt!r}")

    connector._run = run
    connector.sent = sent
    return connector


def test_cratedb_privileges_are_read_from_sys_privileges():
    connector = crate_connector(
        {
            "SELECT superuser, granted_roles FROM sys.users": [[False, []]],
            "SELECT class, ident, type FROM sys.privileges": [
                ["CLUSTER", None, "AL"],
                ["SCHEMA", "doc", "DML"],
                ["SCHEMA", "doc", "DQL"],
            ],
        }
    )

    rights = connector.account_rights()

    assert rights == AccountRights(write=("DML on SCHEMA doc",), admin=("AL on the cluster",))


def test_cratedb_superuser_and_older_servers_without_roles():
    from datasources.connectors.base import ConnectorError

    connector = crate_connector(
        {
            "SELECT superuser, granted_roles": ConnectorError("query failed: unknown column"),
            "SELECT superuser FROM sys.users": [[True]],
            "SELECT class, ident, type FROM sys.privileges": [],
        }
    )

    assert connector.account_rights() == AccountRights(write=("superuser",), admin=("superuser",))


def test_cratedb_inherited_roles_are_reported_as_unverified():
    connector = crate_connector(
        {
            "SELECT superuser, granted_roles FROM sys.users": [
                [False, [{"role": "analysts", "grantor": "crate"}]]
            ],
            "SELECT class, ident, type FROM sys.privileges": [["SCHEMA", "doc", "DQL"]],
        }
    )

    rights = connector.account_rights()

    assert rights.write == rights.admin == ()
    assert rights.unverified == "the privileges of role analysts are not read"
