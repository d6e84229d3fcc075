"""The data source pages (/data/sources/): list, new and edit, test connection, the schema
browser and "new pipeline from this table", against a real MariaDB (127.0.0.1:3306, root
without password) and PostgreSQL (127.0.0.1:5432, trust).

The MariaDB source logs in as a SELECT-only account with a real password: no response
may ever contain it.
"""

import re
import uuid

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from conftest import require_service
from datasources.models import DataSource
from datasources.sources import (
    pipeline_from_table,
    save_source,
    table_step,
    test_source,
)
from pipelines import runs
from pipelines.choices import RunStatus
from pipelines.models import Pipeline

SECRET = "Pages-S3cret-" + uuid.uuid4().hex[:8]
HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def mariadb():
    """A throwaway database with an `items` table, and a SELECT-only account on it."""
    require_service("MariaDB", HOST, 3306)
    import MySQLdb

    name = f"mlops_pages_{uuid.uuid4().hex[:8]}"
    account = f"'{name}'@'127.0.0.1'"
    admin = MySQLdb.connect(host=HOST, port=3306, user="root", autocommit=True)
    cursor = admin.cursor()
    cursor.execute(f"CREATE DATABASE `{name}`")
    cursor.execute(
        f"CREATE TABLE `{name}`.items (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(8,2))"
    )
    cursor.execute(
        f"INSERT INTO `{name}`.items VALUES (1, 'apple', 1.50), (2, 'pear', 2.25), (3, 'fig', NULL)"
    )
    cursor.execute(f"CREATE TABLE `{name}`.empty_one (x INT)")
    cursor.execute(f"CREATE USER {account} IDENTIFIED BY '{SECRET}'")
    cursor.execute(f"GRANT SELECT ON `{name}`.* TO {account}")
    yield name
    cursor.execute(f"DROP USER {account}")
    cursor.execute(f"DROP DATABASE `{name}`")
    admin.close()


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL database with a `readings` table."""
    require_service("PostgreSQL", HOST, 5432)
    import psycopg

    name = f"mlops_pages_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(host=HOST, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(host=HOST, user="postgres", dbname=name, autocommit=True) as conn:
        conn.execute("CREATE TABLE readings (id int PRIMARY KEY, sensor text, value float8)")
        conn.execute("INSERT INTO readings VALUES (1, 'north', 0.5), (2, 'south', 1.25)")
    yield name
    with psycopg.connect(host=HOST, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def shop(db, mariadb):
    values = {"name": "shop", "kind": "mysql", "host": HOST, "port": 3306}
    return save_source({**values, "database": mariadb, "user": mariadb}, SECRET)


@pytest.fixture
def sensors(db, postgres):
    values = {"name": "sensors", "kind": "postgresql", "host": HOST, "port": 5432}
    return save_source({**values, "database": postgres, "user": "postgres"}, SECRET)


def login(client, django_user_model, username: str, *permissions: str):
    user = django_user_model.objects.create_user(username, password="pw")
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client.force_login(user)
    return client


@pytest.fixture
def analyst(client, django_user_model):
    """A logged-in user without any permission: reads the pages, changes nothing."""
    return login(client, django_user_model, "analyst")


@pytest.fixture
def editor(client, django_user_model):
    return login(
        client,
        django_user_model,
        "editor",
        "datasources.add_datasource",
        "datasources.change_datasource",
        "pipelines.add_pipeline",
    )


def body(response) -> str:
    text = response.content.decode()
    assert SECRET not in text
    return text


def form_values(source: DataSource | None = None, **changes) -> dict:
    values = {
        "name": "shop",
        "kind": "mysql",
        "host": HOST,
        "port": "3306",
        "database": "",
        "user": "",
        "secret": "",
        "options": "{}",
    }
    if source is not None:
        values.update(
            name=source.name,
            kind=source.kind,
            host=source.host,
            port=str(source.port or ""),
            database=source.database,
            user=source.user,
        )
    values.update(changes)
    return values


# The list


def test_list_shows_connection_and_never_the_secret(editor, shop, mariadb):
    test_source(shop)

    text = body(editor.get(reverse("data:source_list")))

    assert "shop" in text and "MySQL / MariaDB" in text
    assert f"127.0.0.1:3306/{mariadb}" in text
    assert "read-only" in text
    assert "connected" in text and "MariaDB" in text  # the recorded last test
    assert shop.encrypted_secret not in text


def test_list_offers_new_edit_and_test_only_with_the_permissions(analyst, editor, shop):
    editor_page = body(editor.get(reverse("data:source_list")))
    assert reverse("data:source_new") in editor_page
    assert reverse("data:source_edit", args=[shop.pk]) in editor_page
    assert reverse("data:source_test", args=[shop.pk]) in editor_page


def test_list_hides_new_edit_and_test_without_the_permissions(analyst, shop):
    text = body(analyst.get(reverse("data:source_list")))

    assert reverse("data:source_detail", args=[shop.pk]) in text
    assert reverse("data:source_new") not in text
    assert reverse("data:source_edit", args=[shop.pk]) not in text
    assert reverse("data:source_test", args=[shop.pk]) not in text
    assert "never run" not in text and "not tested" in text


def test_empty_list_says_what_to_do(editor):
    text = body(editor.get(reverse("data:source_list")))

    assert "No data sources yet" in text and reverse("data:source_new") in text


def test_pages_need_a_login(client, db):
    response = client.get(reverse("data:source_list"))

    assert response.status_code == 302 and "/login" in response.url


def test_list_queries_do_not_grow_with_the_sources(editor, db):
    def queries_for_list() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            assert editor.get(reverse("data:source_list")).status_code == 200
        return len(captured)

    save_source({"name": "one", "kind": "postgresql", "host": "db.example"}, SECRET)
    few = queries_for_list()
    for number in range(2, 8):
        save_source({"name": f"s{number}", "kind": "mongodb", "host": "db.example"}, SECRET)

    assert queries_for_list() == few


# Create and edit


def test_create_stores_the_secret_encrypted(editor, mariadb):
    values = form_values(database=mariadb, user=mariadb, secret=SECRET)

    response = editor.post(reverse("data:source_new"), values)

    assert response.status_code == 302 and response.url == reverse("data:source_list")
    source = DataSource.objects.get(name="shop")
    assert source.get_secret() == SECRET and SECRET not in source.encrypted_secret
    assert "registered" in body(editor.get(response.url))


def test_edit_form_never_shows_the_secret(editor, shop):
    text = body(editor.get(reverse("data:source_edit", args=[shop.pk])))

    assert 'type="password"' in text and "leave empty to keep the stored secret" in text.lower()
    assert shop.encrypted_secret not in text


def test_edit_with_an_empty_secret_keeps_the_stored_one(editor, shop):
    response = editor.post(
        reverse("data:source_edit", args=[shop.pk]), form_values(shop, host="localhost")
    )

    assert response.status_code == 302
    shop.refresh_from_db()
    assert shop.host == "localhost" and shop.get_secret() == SECRET


def test_edit_with_a_secret_replaces_the_stored_one(editor, shop):
    editor.post(reverse("data:source_edit", args=[shop.pk]), form_values(shop, secret="new-one"))

    shop.refresh_from_db()
    assert shop.get_secret() == "new-one"


def test_edit_can_remove_the_stored_secret(editor, shop):
    editor.post(reverse("data:source_edit", args=[shop.pk]), form_values(shop, clear_secret="on"))

    shop.refresh_from_db()
    assert not shop.has_secret


@pytest.mark.parametrize(
    ("change", "field", "error"),
    [
        ({"options": '{"colour": "blue"}'}, "options", "Unknown option(s): colour"),
        ({"options": "[1, 2]"}, "options", "Give a JSON object"),
        ({"port": "70000"}, "port", "less than or equal to 65535"),
        ({"host": ""}, "host", "This field is required"),
        ({"name": "other"}, "name", "already exists"),
    ],
)
def test_invalid_form_shows_the_error_beside_the_field_and_changes_nothing(
    editor, shop, change, field, error
):
    save_source({"name": "other", "kind": "postgresql", "host": "db.example"})
    before = DataSource.objects.values().get(pk=shop.pk)
    values = form_values(shop, secret="not-saved", **change)

    response = editor.post(reverse("data:source_edit", args=[shop.pk]), values)

    text = body(response)
    assert response.status_code == 200
    assert "was not saved" in text and error in text
    assert f'id="id_{field}_errors"' in text or "form-errors" in text
    assert "not-saved" not in text  # the typed secret is not sent back either
    assert DataSource.objects.values().get(pk=shop.pk) == before


def test_invalid_new_source_saves_nothing(editor):
    response = editor.post(reverse("data:source_new"), form_values(kind="oracle"))

    assert response.status_code == 200 and "not one of the available choices" in body(response)
    assert not DataSource.objects.exists()


# Test connection


def test_test_connection_shows_server_version_and_time(editor, shop):
    response = editor.post(reverse("data:source_test", args=[shop.pk]), HTTP_HX_REQUEST="true")

    text = body(response)
    assert response.status_code == 200
    assert "connected" in text and "MariaDB" in text
    assert re.search(r"in \d+(\.\d+)? m?s</span>", text)
    assert "can only read" in text


def test_test_connection_warns_about_an_account_that_can_write(editor, shop):
    shop.user, shop.encrypted_secret = "root", ""
    shop.save()

    text = body(editor.post(reverse("data:source_test", args=[shop.pk]), HTTP_HX_REQUEST="true"))

    assert "warning" in text and "Warning: this account can" in text


def test_test_connection_shows_the_error_without_the_secret(editor, shop):
    shop.set_secret(SECRET + "-wrong")
    shop.save()

    response = editor.post(reverse("data:source_test", args=[shop.pk]), HTTP_HX_REQUEST="true")

    text = body(response)
    assert "failed" in text and "login refused" in text
    assert SECRET + "-wrong" not in text
    assert "failed" in body(editor.get(reverse("data:source_list")))  # recorded


def test_test_connection_without_htmx_redirects_with_a_message(editor, shop):
    response = editor.post(reverse("data:source_test", args=[shop.pk]), follow=True)

    assert response.redirect_chain[-1][0] == reverse("data:source_list")
    assert "Data source shop: MariaDB" in body(response)


def test_test_connection_is_a_post(editor, shop):
    assert editor.get(reverse("data:source_test", args=[shop.pk])).status_code == 405


# The schema browser


def test_schema_browser_lists_the_tables(analyst, shop):
    text = body(analyst.get(reverse("data:source_detail", args=[shop.pk])))

    assert "items" in text and "empty_one" in text
    assert "Pick a table" in text


def test_schema_browser_loads_columns_and_preview_of_a_table(analyst, shop):
    url = reverse("data:source_table", args=[shop.pk])

    response = analyst.get(url, {"table": "items"}, HTTP_HX_REQUEST="true")

    text = body(response)
    assert "<html" not in text  # the fragment only
    for column, kind in [("id", "int(11)"), ("name", "varchar(20)"), ("price", "decimal(8,2)")]:
        assert f"<code>{column}</code>" in text and kind in text
    assert "apple" in text and "pear" in text and "2.25" in text
    assert '<span class="null">null</span>' in text
    assert "(3 shown)" in text


def test_schema_browser_shows_a_table_as_a_whole_page_too(analyst, shop):
    response = analyst.get(reverse("data:source_detail", args=[shop.pk]), {"table": "items"})

    text = body(response)
    assert "<html" in text and "apple" in text and 'aria-current="true">items' in text


def test_table_url_without_htmx_redirects_to_the_page(analyst, shop):
    response = analyst.get(reverse("data:source_table", args=[shop.pk]), {"table": "items"})

    assert response.status_code == 302
    assert response.url == reverse("data:source_detail", args=[shop.pk]) + "?table=items"


def test_schema_browser_reads_postgresql(analyst, sensors):
    page = body(analyst.get(reverse("data:source_detail", args=[sensors.pk])))
    fragment = body(
        analyst.get(
            reverse("data:source_table", args=[sensors.pk]),
            {"table": "readings"},
            HTTP_HX_REQUEST="true",
        )
    )

    assert "readings" in page
    assert "double precision" in fragment and "north" in fragment and "1.25" in fragment


def test_an_empty_table_says_so(analyst, shop):
    url = reverse("data:source_table", args=[shop.pk])

    text = body(analyst.get(url, {"table": "empty_one"}, HTTP_HX_REQUEST="true"))

    assert "The table is empty" in text


def test_a_missing_table_is_an_error_message(analyst, shop):
    url = reverse("data:source_table", args=[shop.pk])

    response = analyst.get(url, {"table": "nope"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 200 and "could not be read" in body(response)


def test_unreachable_server_is_a_message_not_a_500(analyst, db):
    source = save_source(
        {"name": "gone", "kind": "mysql", "host": HOST, "port": 1, "user": "x"}, SECRET
    )

    response = analyst.get(reverse("data:source_detail", args=[source.pk]))

    text = body(response)
    assert response.status_code == 200
    assert "could not be listed" in text and "cannot connect to 127.0.0.1:1" in text


def test_refused_login_is_a_message_without_the_secret(analyst, shop):
    shop.set_secret(SECRET + "-wrong")
    shop.save()

    text = body(analyst.get(reverse("data:source_detail", args=[shop.pk])))

    assert "login refused" in text and SECRET + "-wrong" not in text


# New pipeline from a table


def test_new_pipeline_from_a_table_reads_its_rows(editor, shop):
    response = editor.post(reverse("data:source_pipeline", args=[shop.pk]), {"table": "items"})

    pipeline = Pipeline.objects.get(name="shop-items")
    assert response.status_code == 302
    assert response.url == reverse("pipelines:detail", args=[pipeline.pk])
    (step,) = pipeline.steps.all()
    assert step.step_type == "sql"
    assert step.params == {"datasource": "shop", "query": "SELECT * FROM `items`"}
    run = runs.start_run(pipeline, wait=True)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.step_runs.get(order=1).rows_out == 3
    assert SECRET not in str(run.definition) + run.logs


def test_new_pipeline_name_gets_a_number_when_taken(editor, shop):
    url = reverse("data:source_pipeline", args=[shop.pk])

    editor.post(url, {"table": "items"})
    editor.post(url, {"table": "items"})
    editor.post(url, {"table": "items"})

    assert set(Pipeline.objects.values_list("name", flat=True)) == {
        "shop-items",
        "shop-items-2",
        "shop-items-3",
    }


def test_new_pipeline_from_an_unknown_table_creates_nothing(editor, shop):
    response = editor.post(
        reverse("data:source_pipeline", args=[shop.pk]), {"table": "nope"}, follow=True
    )

    assert "No pipeline was created: shop has no table" in body(response)
    assert not Pipeline.objects.exists()


def test_new_pipeline_from_a_postgresql_table_quotes_it(sensors, django_user_model):
    pipeline = pipeline_from_table(sensors, "readings")

    (step,) = pipeline.steps.all()
    assert step.params["query"] == 'SELECT * FROM "readings"'
    run = runs.start_run(pipeline, wait=True)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.step_runs.get(order=1).rows_out == 2


def test_a_mongodb_collection_becomes_a_mongo_step(db):
    source = save_source({"name": "docs", "kind": "mongodb", "host": HOST})

    assert table_step(source, "orders") == {
        "type": "mongo",
        "name": "read orders",
        "params": {"datasource": "docs", "collection": "orders"},
    }


# Permissions


def test_the_pipeline_button_needs_add_pipeline(analyst, shop):
    url = reverse("data:source_table", args=[shop.pk])

    text = body(analyst.get(url, {"table": "items"}, HTTP_HX_REQUEST="true"))

    assert "New pipeline from this table" not in text


def test_editor_sees_the_pipeline_button(editor, shop):
    url = reverse("data:source_table", args=[shop.pk])

    text = body(editor.get(url, {"table": "items"}, HTTP_HX_REQUEST="true"))

    assert "New pipeline from this table" in text


@pytest.mark.parametrize(
    ("name", "method", "permission"),
    [
        ("data:source_new", "get", "datasources.add_datasource"),
        ("data:source_new", "post", "datasources.add_datasource"),
        ("data:source_edit", "get", "datasources.change_datasource"),
        ("data:source_edit", "post", "datasources.change_datasource"),
        ("data:source_test", "post", "datasources.change_datasource"),
        ("data:source_pipeline", "post", "pipelines.add_pipeline"),
    ],
)
def test_actions_without_permission_answer_403_naming_it(analyst, shop, name, method, permission):
    args = [] if name == "data:source_new" else [shop.pk]
    data = form_values(shop, secret="x") if method == "post" else None

    response = getattr(analyst, method)(reverse(name, args=args), data)

    assert response.status_code == 403
    assert f"“{permission}”" in body(response)
    shop.refresh_from_db()
    assert shop.get_secret() == SECRET
    assert not Pipeline.objects.exists()


def test_detail_hides_edit_and_test_without_permission(analyst, shop):
    text = body(analyst.get(reverse("data:source_detail", args=[shop.pk])))

    assert reverse("data:source_edit", args=[shop.pk]) not in text
    assert reverse("data:source_test", args=[shop.pk]) not in text


def test_forms_carry_a_csrf_token(editor, shop):
    for url in [
        reverse("data:source_list"),
        reverse("data:source_new"),
        reverse("data:source_edit", args=[shop.pk]),
        reverse("data:source_detail", args=[shop.pk]) + "?table=items",
    ]:
        text = body(editor.get(url))
        assert text.count('method="post"') == text.count('name="csrfmiddlewaretoken"')


def test_a_post_without_the_csrf_token_is_refused(django_user_model, shop):
    from django.test import Client

    client = login(
        Client(enforce_csrf_checks=True), django_user_model, "u", "pipelines.add_pipeline"
    )

    response = client.post(reverse("data:source_pipeline", args=[shop.pk]), {"table": "items"})

    assert response.status_code == 403 and not Pipeline.objects.exists()
