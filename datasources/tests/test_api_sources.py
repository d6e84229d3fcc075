"""/api/v1/datasources/: register, change, delete, test and browse data sources, against a
real MariaDB (127.0.0.1:3306, root without password) and PostgreSQL (127.0.0.1:5432, trust).

MongoDB and CrateDB servers cannot run here: their connectors' own tests fake the drivers,
and these tests only register such sources. The MariaDB source logs in as a SELECT-only
account with a real password: no answer may ever contain it.
"""

import time
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conftest import require_service
from datasources.connectors.base import ConnectorError
from datasources.connectors.mysql import MySQLConnector
from datasources.models import DataSource
from datasources.sources import save_source, test_source
from pipelines.models import PipelineStep
from pipelines.tests.test_api_wsgi import serve, token_for

SECRET = "Api-S3cret-" + uuid.uuid4().hex[:8]
HOST = "127.0.0.1"
ADD, CHANGE, DELETE = (
    "datasources.add_datasource",
    "datasources.change_datasource",
    "datasources.delete_datasource",
)


@pytest.fixture(scope="module")
def mariadb():
    """A throwaway database with an `items` table, and a SELECT-only account on it."""
    require_service("MariaDB", HOST, 3306)
    import MySQLdb

    name = f"mlops_api_{uuid.uuid4().hex[:8]}"
    account = f"'{name}'@'127.0.0.1'"
    admin = MySQLdb.connect(host=HOST, port=3306, user="root", autocommit=True)
    cursor = admin.cursor()
    cursor.execute(f"CREATE DATABASE `{name}`")
    cursor.execute(f"CREATE TABLE `{name}`.items (id INT PRIMARY KEY, name VARCHAR(20))")
    cursor.execute(f"INSERT INTO `{name}`.items VALUES (1, 'apple'), (2, NULL)")
    cursor.execute(f"CREATE USER {account} IDENTIFIED BY '{SECRET}'")
    cursor.execute(f"GRANT SELECT ON `{name}`.* TO {account}")
    yield name
    cursor.execute(f"DROP USER {account}")
    cursor.execute(f"DROP DATABASE `{name}`")
    admin.close()


@pytest.fixture(scope="module")
def postgres():
    require_service("PostgreSQL", HOST, 5432)
    import psycopg

    name = f"mlops_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(host=HOST, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(host=HOST, user="postgres", dbname=name, autocommit=True) as conn:
        conn.execute("CREATE TABLE readings (id int PRIMARY KEY, value float8)")
        conn.execute("INSERT INTO readings VALUES (1, 0.5)")
    yield name
    with psycopg.connect(host=HOST, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def shop(db, mariadb):
    values = {"name": "shop", "kind": "mysql", "host": HOST, "port": 3306}
    return save_source({**values, "database": mariadb, "user": mariadb}, SECRET)


def answer(response) -> dict:
    """The JSON body, after checking the secret is nowhere in it."""
    assert SECRET not in response.content.decode()
    return response.json()


def url(source=None, tail: str = "") -> str:
    return f"/api/v1/datasources/{source.pk}/{tail}" if source else "/api/v1/datasources/"


def stored(source: DataSource) -> tuple:
    source.refresh_from_db()
    return (source.name, source.host, source.port, source.options, source.get_secret())


NEW = {"name": "warehouse", "kind": "postgresql", "host": "db.example.com", "secret": SECRET}
MISSING_FIELD = "This field is required."


# Create


def test_create_stores_the_secret_encrypted_and_never_answers_it(api_as):
    response = api_as(ADD).post(url(), {**NEW, "options": {"tls": True}}, format="json")

    body = answer(response)
    assert response.status_code == 201
    source = DataSource.objects.get()
    assert body["id"] == source.pk
    assert body["url"] == f"http://testserver/api/v1/datasources/{source.pk}/"
    assert (body["name"], body["kind"], body["host"], body["port"]) == (
        "warehouse",
        "postgresql",
        "db.example.com",
        None,
    )
    assert body["options"] == {"tls": True}
    assert body["has_secret"] is True and body["last_test"] is None
    assert "secret" not in body
    assert source.get_secret() == SECRET and SECRET not in source.encrypted_secret


def test_create_without_a_secret(api_as):
    response = api_as(ADD).post(url(), {**NEW, "secret": None}, format="json")

    assert response.status_code == 201
    assert response.json()["has_secret"] is False
    assert not DataSource.objects.get().has_secret


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"name": ""}, "name", "This field may not be blank."),
        ({"name": None}, "name", "This field may not be null."),
        ({"host": "h" * 256}, "host", "Ensure this field has no more than 255 characters."),
        ({"kind": "nosql"}, "kind", '"nosql" is not a valid choice.'),
        ({"port": 0}, "port", "Ensure this value is greater than or equal to 1."),
        ({"port": 70000}, "port", "Ensure this value is less than or equal to 65535."),
        ({"options": [1]}, "options", 'Expected a dictionary of items but got type "list".'),
        ({"options": {"colour": "blue"}}, "options", "Unknown option(s): colour."),
        (
            {"options": {"connect_timeout": "soon"}},
            "options",
            "connect_timeout must be a number of seconds, above 0 and at most 86400.",
        ),
        ({"options": {"tls": "yes"}}, "options", "tls must be true or false."),
        ({"allow_writes": "maybe"}, "allow_writes", "Must be a valid boolean."),
        ({"secret": ["x"]}, "secret", "Not a valid string."),
        ({"secret": "a\x00b"}, "secret", "Null characters are not allowed."),
    ],
)
def test_create_refuses_each_invalid_field_and_saves_nothing(api_as, changes, field, message):
    response = api_as(ADD).post(url(), {**NEW, **changes}, format="json")

    assert response.status_code == 400
    assert answer(response) == {
        "code": "invalid",
        "message": f"{field}: {message}",
        "errors": [{"field": field, "message": message}],
    }
    assert not DataSource.objects.exists()


def test_create_names_every_missing_field(api_as):
    response = api_as(ADD).post(url(), {"secret": SECRET}, format="json")

    assert response.status_code == 400
    assert answer(response)["errors"] == [
        {"field": "name", "message": MISSING_FIELD},
        {"field": "kind", "message": MISSING_FIELD},
        {"field": "host", "message": MISSING_FIELD},
    ]


def test_create_refuses_a_taken_name_as_the_page_does(api_as, shop):
    response = api_as(ADD).post(url(), {**NEW, "name": "shop"}, format="json")

    assert response.status_code == 400
    assert answer(response)["errors"] == [
        {"field": "name", "message": "Data source with this Name already exists."}
    ]
    assert DataSource.objects.count() == 1


def test_create_needs_a_login_and_the_add_permission(client, api_as):
    anonymous = client.post(url(), NEW, content_type="application/json")
    refused = api_as(CHANGE).post(url(), NEW, format="json")

    assert anonymous.status_code == 401 and answer(anonymous)["code"] == "not_authenticated"
    assert refused.status_code == 403
    assert answer(refused) == {
        "code": "permission_denied",
        "message": "This needs the datasources.add_datasource permission.",
        "errors": [],
    }
    assert not DataSource.objects.exists()


# List and retrieve


def test_list_shows_each_source_with_its_last_test_and_never_the_secret(api_as, shop):
    test_source(shop)
    save_source({"name": "archive", "kind": "mongodb", "host": "mongo.example.com"}, SECRET)

    response = api_as().get(url())

    body = answer(response)
    assert response.status_code == 200 and body["count"] == 2
    archive, listed = body["results"]
    assert [archive["name"], listed["name"]] == ["archive", "shop"]
    assert archive["last_test"] is None and archive["has_secret"] is True
    assert listed["last_test"]["ok"] is True and "MariaDB" in listed["last_test"]["message"]
    assert listed["last_test"]["worrying"] is False and listed["last_test"]["refused"] is False


def test_list_queries_do_not_grow_with_the_sources(api_as):
    client = api_as()
    save_source({"name": "s0", "kind": "mysql", "host": HOST})
    client.get(url())  # the throttle's first count of this user

    with CaptureQueriesContext(connection) as one:
        client.get(url())
    for number in range(1, 5):
        save_source({"name": f"s{number}", "kind": "mysql", "host": HOST})
    with CaptureQueriesContext(connection) as five:
        assert len(client.get(url()).json()["results"]) == 5

    assert len(five) == len(one)


def test_retrieve_answers_the_source_without_its_secret(api_as, shop):
    response = api_as().get(url(shop))

    body = answer(response)
    assert response.status_code == 200
    assert (body["name"], body["user"], body["has_secret"]) == ("shop", shop.user, True)
    assert "secret" not in body


def test_reading_needs_a_login_and_an_unknown_source_is_404(client, api_as, shop):
    reader = api_as()

    assert client.get(url()).status_code == client.get(url(shop)).status_code == 401
    assert reader.get("/api/v1/datasources/999/").json() == {
        "code": "not_found",
        "message": "No DataSource matches the given query.",
        "errors": [],
    }
    assert reader.get("/api/v1/datasources/shop/").status_code == 404


# Update


def test_put_without_a_secret_keeps_the_stored_one(api_as, shop):
    values = {"name": "shop2", "kind": "mysql", "host": "db2.example.com", "port": 3307}

    response = api_as(CHANGE).put(url(shop), values, format="json")

    body = answer(response)
    assert response.status_code == 200
    assert (body["name"], body["host"], body["port"], body["has_secret"]) == (
        "shop2",
        "db2.example.com",
        3307,
        True,
    )
    assert stored(shop) == ("shop2", "db2.example.com", 3307, {}, SECRET)


def test_patch_with_a_secret_replaces_it_and_null_removes_it(api_as, shop):
    client = api_as(CHANGE)

    replaced = client.patch(url(shop), {"secret": SECRET + "-new"}, format="json")
    assert replaced.status_code == 200 and SECRET + "-new" not in replaced.content.decode()
    assert stored(shop)[-1] == SECRET + "-new"

    removed = client.patch(url(shop), {"secret": None}, format="json")
    assert removed.status_code == 200 and removed.json()["has_secret"] is False
    assert stored(shop)[-1] == ""


def test_patch_changes_only_the_fields_given(api_as, shop):
    response = api_as(CHANGE).patch(url(shop), {"options": {"tls": True}}, format="json")

    assert response.status_code == 200 and answer(response)["options"] == {"tls": True}
    assert stored(shop) == ("shop", HOST, 3306, {"tls": True}, SECRET)


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"host": ""}, "host", "This field may not be blank."),
        ({"port": -1}, "port", "Ensure this value is greater than or equal to 1."),
        (
            {"kind": "mongodb", "options": {"charset": "utf8"}},
            "options",
            "Unknown option(s): charset.",
        ),
        (
            {"options": {"statement_timeout": 0}},
            "options",
            "statement_timeout must be a number of seconds, above 0 and at most 86400.",
        ),
    ],
)
def test_an_invalid_update_changes_nothing(api_as, shop, changes, field, message):
    before = stored(shop)

    response = api_as(CHANGE).patch(url(shop), {**changes, "secret": "other"}, format="json")

    assert response.status_code == 400
    assert answer(response)["errors"] == [{"field": field, "message": message}]
    assert stored(shop) == before


def test_a_put_needs_every_required_field(api_as, shop):
    response = api_as(CHANGE).put(url(shop), {"host": "x"}, format="json")

    assert response.status_code == 400
    assert answer(response)["errors"] == [
        {"field": "name", "message": MISSING_FIELD},
        {"field": "kind", "message": MISSING_FIELD},
    ]


def test_updating_needs_a_login_and_the_change_permission(client, api_as, shop):
    before = stored(shop)
    refused = api_as(ADD, DELETE).patch(url(shop), {"secret": "stolen"}, format="json")
    anonymous = client.patch(url(shop), {"host": "x"}, content_type="application/json")

    assert refused.status_code == 403
    assert answer(refused)["message"] == "This needs the datasources.change_datasource permission."
    assert anonymous.status_code == 401
    assert stored(shop) == before


# Delete


def test_delete_removes_the_source(api_as, shop):
    response = api_as(DELETE).delete(url(shop))

    assert response.status_code == 204 and response.content == b""
    assert not DataSource.objects.exists()


@pytest.mark.parametrize("reference", ["shop", "id"])
def test_delete_is_refused_while_a_pipeline_reads_the_source(
    api_as, shop, make_pipeline, reference
):
    named = shop.pk if reference == "id" else "shop"
    step = {"type": "sql", "params": {"datasource": named, "query": "SELECT 1"}}
    make_pipeline([step], name="nightly")

    response = api_as(DELETE).delete(url(shop))

    assert response.status_code == 409
    assert answer(response) == {
        "code": "conflict",
        "message": "Data source shop is used by pipeline 'nightly': change their steps "
        "before deleting it.",
        "errors": [],
    }
    assert DataSource.objects.filter(pk=shop.pk).exists()


def test_a_rename_is_refused_while_a_pipeline_names_the_source_but_not_by_id(
    api_as, shop, make_pipeline
):
    step = {"type": "sql", "params": {"datasource": "shop", "query": "SELECT 1"}}
    make_pipeline([step], name="nightly")
    api = api_as(CHANGE)

    refused = api.patch(url(shop), {"name": "store"}, format="json")

    assert refused.status_code == 400
    assert answer(refused)["errors"] == [
        {
            "field": "name",
            "message": "Pipeline 'nightly' names this source 'shop': change their steps "
            "before renaming it.",
        }
    ]
    assert stored(shop)[0] == "shop"
    # A step naming the source by id follows it through a rename.
    PipelineStep.objects.update(params={"datasource": shop.pk, "query": "SELECT 1"})
    assert api.patch(url(shop), {"name": "store"}, format="json").status_code == 200
    assert stored(shop)[0] == "store"


def test_deleting_needs_a_login_and_the_delete_permission(client, api_as, shop):
    refused = api_as(ADD, CHANGE).delete(url(shop))

    assert refused.status_code == 403
    assert answer(refused)["message"] == "This needs the datasources.delete_datasource permission."
    assert client.delete(url(shop)).status_code == 401
    assert DataSource.objects.filter(pk=shop.pk).exists()


# Test connection


def test_test_connects_and_reports_a_read_only_account(api_as, shop):
    client = api_as(CHANGE)

    response = client.post(url(shop, "test/"))

    body = answer(response)
    assert response.status_code == 200
    assert body["ok"] is True and body["worrying"] is False and body["refused"] is False
    assert body["message"].startswith("MariaDB") and body["warning"] == ""
    assert body["refusal"] == "" and body["seconds"] > 0
    assert client.get(url(shop)).json()["last_test"]["ok"] is True  # recorded


def test_test_with_a_wrong_password_fails_without_the_password(api_as, shop):
    wrong = SECRET + "-wrong"
    shop.set_secret(wrong)
    shop.save()

    response = api_as(CHANGE).post(url(shop, "test/"))

    assert response.status_code == 200
    assert wrong not in response.content.decode()
    body = answer(response)
    assert body["ok"] is False and "login refused" in body["message"]


def test_test_scrubs_a_password_the_driver_echoes(api_as, shop, monkeypatch):
    def echoing(connector):
        raise ConnectorError(f"cannot connect: bad password {connector.settings.secret!r}")

    monkeypatch.setattr(MySQLConnector, "test", echoing)

    body = answer(api_as(CHANGE).post(url(shop, "test/")))

    assert body["ok"] is False and body["message"] == "cannot connect: bad password '***'"


def test_test_of_a_stalled_server_fails_quickly(api_as, db, silent_port):
    values = {"name": "stalled", "kind": "mysql", "host": HOST, "port": silent_port}
    source = save_source({**values, "options": {"connect_timeout": 1}})
    started = time.monotonic()

    body = answer(api_as(CHANGE).post(url(source, "test/")))

    assert body["ok"] is False and "timed out" in body["message"]
    assert time.monotonic() - started < 10


def test_test_of_an_unknown_host_is_a_failure_not_an_error(api_as, db):
    source = save_source({"name": "nowhere", "kind": "postgresql", "host": "no-such-host.invalid"})

    response = api_as(CHANGE).post(url(source, "test/"))

    assert response.status_code == 200 and answer(response)["ok"] is False


def test_test_needs_a_login_and_the_change_permission(client, api_as, shop):
    refused = api_as(ADD).post(url(shop, "test/"))

    assert refused.status_code == 403
    assert answer(refused)["message"] == "This needs the datasources.change_datasource permission."
    assert client.post(url(shop, "test/")).status_code == 401
    assert api_as(username="reader").get(url(shop)).json()["last_test"] is None  # not tested


# The schema browser


def test_tables_lists_the_tables(api_as, shop):
    response = api_as().get(url(shop, "tables/"))

    assert response.status_code == 200 and answer(response) == {"tables": ["items"]}


def test_table_answers_columns_and_first_rows(api_as, shop):
    response = api_as().get(url(shop, "tables/items/"))

    assert response.status_code == 200
    assert answer(response) == {
        "table": "items",
        "columns": [{"name": "id", "type": "int(11)"}, {"name": "name", "type": "varchar(20)"}],
        "header": ["id", "name"],
        "rows": [["1", "apple"], ["2", None]],
    }


def test_table_of_a_postgresql_source(api_as, db, postgres):
    source = save_source(
        {"name": "pg", "kind": "postgresql", "host": HOST, "database": postgres, "user": "postgres"}
    )

    body = api_as().get(url(source, "tables/readings/")).json()

    assert body["columns"] == [
        {"name": "id", "type": "integer"},
        {"name": "value", "type": "double precision"},
    ]
    assert body["rows"] == [["1", "0.5"]]


def test_an_unknown_table_is_404(api_as, shop):
    response = api_as().get(url(shop, "tables/nope/"))

    assert response.status_code == 404
    assert answer(response) == {
        "code": "not_found",
        "message": "shop has no table 'nope'",
        "errors": [],
    }


def test_an_unreadable_source_is_a_failed_dependency_with_the_reason(api_as, db):
    source = save_source({"name": "gone", "kind": "mysql", "host": HOST, "port": 1}, SECRET)
    client = api_as()

    tables = client.get(url(source, "tables/"))
    table = client.get(url(source, "tables/items/"))

    assert tables.status_code == table.status_code == 424
    body = answer(tables)
    assert (
        body["code"] == "source_unreadable" and "cannot connect to 127.0.0.1:1" in body["message"]
    )
    assert answer(table)["code"] == "source_unreadable"


def test_a_refused_login_while_browsing_hides_the_password(api_as, shop):
    wrong = SECRET + "-wrong"
    shop.set_secret(wrong)
    shop.save()

    response = api_as().get(url(shop, "tables/"))

    assert response.status_code == 424 and wrong not in response.content.decode()
    assert "login refused" in answer(response)["message"]


def test_browsing_needs_a_login(client, shop):
    assert client.get(url(shop, "tables/")).status_code == 401
    assert client.get(url(shop, "tables/items/")).status_code == 401


# Through the WSGI application, as a server serves it


@pytest.mark.django_db(transaction=True)
def test_create_test_and_delete_through_wsgi(django_user_model, mariadb):
    token = token_for(django_user_model, "integrator", "add_datasource", "change_datasource")
    values = {**NEW, "kind": "mysql", "host": HOST, "database": mariadb, "user": mariadb}

    created = serve("POST", "/api/v1/datasources/", token, values)
    tested = serve("POST", f"/api/v1/datasources/{created.json()['id']}/test/", token)
    refused = serve("DELETE", f"/api/v1/datasources/{created.json()['id']}/", token)

    assert created.status == 201 and SECRET.encode() not in created.body
    assert tested.status == 200 and tested.json()["ok"] is True
    assert SECRET.encode() not in tested.body
    assert refused.status == 403 and DataSource.objects.count() == 1
