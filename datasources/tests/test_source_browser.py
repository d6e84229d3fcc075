"""The data source pages in a real browser (Debian's Chromium, Playwright): register a
MariaDB source through the form, test it, browse a table, start a pipeline from it and
run it. Runs are queued as in production; `InlineWorker` executes them."""

import re
import uuid

import pytest
from django.contrib.auth.models import Permission
from django.db.models import Q

from conftest import require_service
from datasources.models import DataSource
from pipelines.choices import RunStatus
from pipelines.models import Pipeline
from pipelines.tests.browser import PASSWORD, chromium_page, log_in

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "Browser-S3cret-" + uuid.uuid4().hex[:8]


@pytest.fixture
def mariadb():
    """A throwaway database with an `items` table, and a SELECT-only account on it."""
    require_service("MariaDB", "127.0.0.1", 3306)
    import MySQLdb

    name = f"mlops_browse_{uuid.uuid4().hex[:8]}"
    account = f"'{name}'@'127.0.0.1'"
    admin = MySQLdb.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    cursor = admin.cursor()
    cursor.execute(f"CREATE DATABASE `{name}`")
    cursor.execute(f"CREATE TABLE `{name}`.items (id INT PRIMARY KEY, name VARCHAR(20))")
    cursor.execute(f"INSERT INTO `{name}`.items VALUES (1, 'apple'), (2, 'pear'), (3, 'fig')")
    cursor.execute(f"CREATE USER {account} IDENTIFIED BY '{SECRET}'")
    cursor.execute(f"GRANT SELECT ON `{name}`.* TO {account}")
    yield name
    cursor.execute(f"DROP USER {account}")
    cursor.execute(f"DROP DATABASE `{name}`")
    admin.close()


@pytest.fixture
def page(live_server, django_user_model, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    analyst = django_user_model.objects.create_user("analyst", password=PASSWORD)
    analyst.user_permissions.add(
        *Permission.objects.filter(
            Q(content_type__app_label="pipelines")
            | Q(codename__in=["add_datasource", "change_datasource"])
        )
    )
    with chromium_page() as page:
        page.set_default_timeout(20_000)
        log_in(page, live_server.url, "analyst", "/data/sources/")
        yield page


def test_register_browse_and_run_a_pipeline_from_a_table(live_server, page, worker, mariadb):
    def shown() -> str:
        text = page.content()
        assert SECRET not in text
        return text

    page.get_by_role("link", name="New data source").first.click()
    page.fill("#id_name", "shop")
    page.select_option("#id_kind", "mysql")
    page.fill("#id_host", "127.0.0.1")
    page.fill("#id_port", "3306")
    page.fill("#id_database", mariadb)
    page.fill("#id_user", mariadb)
    page.fill("#id_secret", SECRET)
    page.get_by_role("button", name="Register data source").click()
    page.wait_for_url(f"{live_server.url}/data/sources/")
    assert DataSource.objects.get(name="shop").get_secret() == SECRET
    assert "registered" in shown()

    row = page.locator("tr", has_text="shop")
    row.get_by_role("button", name="Test").click()
    row.locator(".test-result").wait_for()
    assert "connected" in row.inner_text() and "MariaDB" in row.inner_text()
    shown()

    row.get_by_role("link", name="shop").click()
    page.get_by_role("link", name="items").click()
    preview = page.locator("table.preview")
    preview.wait_for()
    assert preview.locator("tbody tr").count() == 3
    assert "pear" in preview.inner_text()
    assert re.search(r"\?table=items$", page.url)  # a reload shows the same table
    assert "varchar(20)" in shown()

    page.get_by_role("button", name="New pipeline from this table").click()
    page.wait_for_url(re.compile(r"/pipelines/\d+/$"))
    pipeline = Pipeline.objects.get(name="shop-items")
    assert page.url.endswith(f"/pipelines/{pipeline.pk}/")

    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    page.locator("#run-status", has_text="Succeeded").wait_for(timeout=60_000)
    run = pipeline.runs.get()
    assert run.status == RunStatus.SUCCEEDED
    assert run.step_runs.get(order=1).rows_out == 3
    shown()


@pytest.mark.screenshots
def test_write_screenshots_of_the_source_pages(live_server, page, mariadb):
    """docs/screenshots/sources.png and source.png (run: pytest -m screenshots)."""
    from pathlib import Path

    from datasources.sources import save_source, test_source

    out = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    shop = save_source(
        {"name": "shop", "kind": "mysql", "host": "127.0.0.1", "port": 3306}
        | {"database": mariadb, "user": mariadb},
        SECRET,
    )
    test_source(shop)
    warehouse = save_source(
        {"name": "warehouse", "kind": "mysql", "host": "127.0.0.1", "user": "root"}
        | {"database": mariadb, "allow_writes": True}
    )
    test_source(warehouse)
    gone = save_source(
        {"name": "legacy-crm", "kind": "postgresql", "host": "127.0.0.1", "port": 1}
        | {"database": "crm", "user": "reader"},
        SECRET,
    )
    test_source(gone)
    save_source(
        {"name": "events", "kind": "mongodb", "host": "mongo.internal", "database": "events"}
    )
    out.mkdir(parents=True, exist_ok=True)
    page.goto(f"{live_server.url}/data/sources/")
    page.screenshot(path=out / "sources.png", full_page=True)
    page.goto(f"{live_server.url}/data/sources/{shop.pk}/?table=items")
    page.screenshot(path=out / "source.png", full_page=True)
