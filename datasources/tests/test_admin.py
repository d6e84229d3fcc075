from unittest import mock

import pytest
from django.contrib import admin
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from datasources.models import Dataset, DataSource
from datasources.sources import SourceCheck, save_source


def test_admin_uploads_csv_as_dataset(admin_client):
    upload = SimpleUploadedFile("prices.csv", b"item,price\napple,1.5\npear,2\n", "text/csv")

    response = admin_client.post(
        reverse("admin:datasources_dataset_add"), {"name": "prices", "upload": upload}
    )

    assert response.status_code == 302
    dataset = Dataset.objects.get(name="prices")
    assert (dataset.row_count, dataset.column_count, dataset.version) == (2, 2, 1)
    assert dataset.uploaded_by.username == "admin"
    assert dataset.original_filename == "prices.csv"
    assert "prices.csv" not in dataset.file.name  # the server chose the stored name


def test_admin_refuses_unreadable_upload(admin_client):
    upload = SimpleUploadedFile("bad.csv", b"", "text/csv")

    response = admin_client.post(
        reverse("admin:datasources_dataset_add"), {"name": "bad", "upload": upload}
    )

    assert response.status_code == 200
    assert "The submitted file is empty" in response.content.decode()
    assert not Dataset.objects.exists()


def test_admin_shows_dataset_details(admin_client, make_dataset):
    import pandas as pd

    dataset = make_dataset(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), "small")

    response = admin_client.get(reverse("admin:datasources_dataset_change", args=[dataset.pk]))

    assert response.status_code == 200
    assert dataset.checksum in response.content.decode()


# Actions and permissions


@pytest.fixture
def source(db):
    return save_source({"name": "local-mariadb", "kind": "mysql", "host": "127.0.0.1"}, "pw")


def staff_with(django_user_model, *codenames):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="datasources", codename__in=codenames)
    )
    return user


def test_every_datasources_admin_action_declares_its_permissions():
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "datasources":
            continue
        for function, name, _ in model_admin._get_base_actions():
            assert getattr(function, "allowed_permissions", None), f"{model.__name__}: {name}"


def test_view_only_staff_sees_no_action(client, django_user_model, source, make_dataset):
    import pandas as pd

    make_dataset(pd.DataFrame({"a": [1]}), "small")
    client.force_login(staff_with(django_user_model, "view_datasource", "view_dataset"))

    for page in ("admin:datasources_datasource_changelist", "admin:datasources_dataset_changelist"):
        response = client.get(reverse(page))
        assert response.status_code == 200
        assert response.context["action_form"] is None
        content = response.content.decode()
        assert "test_connections" not in content and "delete_selected" not in content


def test_forged_action_posts_from_a_view_only_user_change_nothing(
    client, django_user_model, source, make_dataset
):
    import pandas as pd

    dataset = make_dataset(pd.DataFrame({"a": [1]}), "small")
    client.force_login(staff_with(django_user_model, "view_datasource", "view_dataset"))
    sources = reverse("admin:datasources_datasource_changelist")
    datasets = reverse("admin:datasources_dataset_changelist")

    with mock.patch("datasources.admin_sources.check_source") as tested:
        client.post(sources, {"action": "test_connections", "_selected_action": [source.pk]})
    client.post(
        sources, {"action": "delete_selected", "_selected_action": [source.pk], "post": "yes"}
    )
    client.post(
        datasets, {"action": "delete_selected", "_selected_action": [dataset.pk], "post": "yes"}
    )

    tested.assert_not_called()
    assert DataSource.objects.filter(pk=source.pk).exists()
    assert Dataset.objects.filter(pk=dataset.pk).exists()


def test_testing_a_source_takes_the_change_permission(client, django_user_model, source):
    client.force_login(staff_with(django_user_model, "view_datasource", "change_datasource"))
    url = reverse("admin:datasources_datasource_changelist")

    choices = dict(client.get(url).context["action_form"].fields["action"].choices)
    with mock.patch(
        "datasources.admin_sources.check_source",
        return_value=SourceCheck(ok=False, message="cannot connect to 127.0.0.1:3306: refused"),
    ) as tested:
        response = client.post(
            url, {"action": "test_connections", "_selected_action": [source.pk]}, follow=True
        )

    assert set(choices) == {"", "test_connections"}  # no delete without delete permission
    tested.assert_called_once()
    message = next(iter(response.context["messages"]))
    assert (str(message), message.level_tag) == (
        "Data source local-mariadb: cannot connect to 127.0.0.1:3306: refused",
        "error",
    )
    content = response.content.decode()
    assert "local-mariadb" in content and "Local-mariadb" not in content


# Deleting sources


@pytest.fixture
def nightly(make_pipeline, source):
    step = {"type": "sql", "params": {"datasource": source.name, "query": "SELECT 1"}}
    return make_pipeline([step], name="nightly")


@pytest.fixture
def spare(db):
    return save_source({"name": "spare", "kind": "mysql", "host": "127.0.0.1"}, "pw")


def delete_one(client, source):
    url = reverse("admin:datasources_datasource_delete", args=[source.pk])
    assert "Are you sure" in client.get(url).content.decode()
    return client.post(url, {"post": "yes"}, follow=True)


def delete_selected(client, *sources):
    url = reverse("admin:datasources_datasource_changelist")
    selected = {"action": "delete_selected", "_selected_action": [s.pk for s in sources]}
    assert "Are you sure" in client.post(url, selected).content.decode()
    return client.post(url, {**selected, "post": "yes"}, follow=True)


def shown(response):
    return [(str(message), message.level_tag) for message in response.context["messages"]]


def test_admin_refuses_to_delete_a_source_a_pipeline_uses(admin_client, source, nightly):
    response = delete_one(admin_client, source)

    assert response.redirect_chain == [
        (reverse("admin:datasources_datasource_change", args=[source.pk]), 302)
    ]
    assert shown(response) == [
        (
            "Data source local-mariadb is used by pipeline 'nightly': change their steps "
            "before deleting it.",
            "error",
        )
    ]
    assert DataSource.objects.filter(pk=source.pk).exists()
    assert not LogEntry.objects.exists()


def test_admin_bulk_delete_of_sources_is_refused_whole_if_one_is_used(
    admin_client, source, spare, nightly
):
    response = delete_selected(admin_client, source, spare)

    assert shown(response) == [
        (
            "Data source local-mariadb is used by pipeline(s) 'nightly': it was not deleted.",
            "error",
        ),
        ("No data source was deleted.", "error"),
    ]
    assert DataSource.objects.count() == 2
    assert not LogEntry.objects.exists()


@pytest.mark.parametrize("delete", [delete_one, delete_selected])
def test_admin_deletes_a_source_no_pipeline_uses(admin_client, source, spare, nightly, delete):
    response = delete(admin_client, spare)

    assert response.redirect_chain == [(reverse("admin:datasources_datasource_changelist"), 302)]
    assert [level for _, level in shown(response)] == ["success"]
    assert list(DataSource.objects.all()) == [source]
    entry = LogEntry.objects.get()
    assert (entry.object_repr, entry.action_flag) == ("spare", DELETION)


def test_admin_refuses_to_rename_a_source_a_pipeline_names(admin_client, source, nightly):
    url = reverse("admin:datasources_datasource_change", args=[source.pk])
    form = {"name": "renamed", "kind": "mysql", "host": "127.0.0.1", "port": 3306}

    response = admin_client.post(url, {**form, "options": "{}", "database": "", "user": ""})

    assert response.status_code == 200  # the form again, with the error
    assert (
        "Pipeline &#x27;nightly&#x27; names this source &#x27;local-mariadb&#x27;: change "
        "their steps before renaming it." in response.content.decode()
    )
    source.refresh_from_db()
    assert source.name == "local-mariadb"
