"""Registering data sources: the write-only secret, the admin, the commands."""

import os
import uuid

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from conftest import require_service
from datasources.models import DataSource
from datasources.sources import save_source

SECRET = "s3cret-Pa55word-" + uuid.uuid4().hex[:6]


@pytest.fixture
def mariadb_source(db):
    require_service("MariaDB", "127.0.0.1", 3306)
    return save_source(
        {"name": "warehouse", "kind": "mysql", "host": "127.0.0.1", "port": 3306, "user": "root"},
        secret="",
    )


def test_secret_is_encrypted_at_rest_and_decrypts(db):
    source = save_source({"name": "crm", "kind": "postgresql", "host": "db", "user": "u"}, SECRET)

    stored = DataSource.objects.values_list("encrypted_secret", flat=True).get()
    assert SECRET not in stored and stored
    assert DataSource.objects.get().get_secret() == SECRET
    assert source.has_secret


def test_stored_secret_is_not_an_encoding_of_it_and_needs_the_key(db, settings):
    import base64
    import binascii
    import contextlib

    from cryptography.fernet import Fernet
    from django.core.exceptions import ImproperlyConfigured

    settings.MLOPS_ENCRYPTION_KEY = Fernet.generate_key().decode()
    save_source({"name": "crm", "kind": "postgresql", "host": "db"}, SECRET)
    save_source({"name": "erp", "kind": "postgresql", "host": "db"}, SECRET)

    stored = list(DataSource.objects.values_list("encrypted_secret", flat=True))
    plain = SECRET.encode()
    encodings = {
        SECRET,
        base64.b64encode(plain).decode(),
        base64.urlsafe_b64encode(plain).decode(),
        base64.b32encode(plain).decode(),
        binascii.hexlify(plain).decode(),
        binascii.hexlify(plain).decode().upper(),
        SECRET[::-1],
    }
    for token in stored:
        assert not any(encoded.rstrip("=") in token for encoded in encodings)
        for decode in (base64.b64decode, base64.urlsafe_b64decode, base64.b32decode):
            with contextlib.suppress(binascii.Error, ValueError):  # not decodable: fine
                assert plain not in decode(token + "=" * (-len(token) % 4))
    assert stored[0] != stored[1]  # random IV: the same secret never stores the same
    assert DataSource.objects.get(name="crm").get_secret() == SECRET

    settings.MLOPS_ENCRYPTION_KEY = Fernet.generate_key().decode()  # another key
    with pytest.raises(ImproperlyConfigured, match="cannot be decrypted"):
        DataSource.objects.get(name="crm").get_secret()


def test_changing_other_fields_keeps_the_secret(db):
    source = save_source({"name": "crm", "kind": "postgresql", "host": "db"}, SECRET)

    save_source({"host": "db2"}, source=source)

    assert DataSource.objects.get().get_secret() == SECRET


def test_unknown_option_is_refused_naming_it(db):
    with pytest.raises(ValidationError) as error:
        save_source({"name": "x", "kind": "postgresql", "host": "h", "options": {"colour": 1}})

    assert "colour" in str(error.value.message_dict["options"])
    assert not DataSource.objects.exists()


def test_admin_never_shows_the_secret(admin_client, db):
    source = save_source({"name": "crm", "kind": "postgresql", "host": "db"}, SECRET)

    change = admin_client.get(reverse("admin:datasources_datasource_change", args=[source.pk]))
    listing = admin_client.get(reverse("admin:datasources_datasource_changelist"))

    for response in (change, listing):
        assert response.status_code == 200
        content = response.content.decode()
        assert SECRET not in content
        assert source.encrypted_secret not in content


def test_admin_edit_without_secret_keeps_it(admin_client, db):
    source = save_source({"name": "crm", "kind": "postgresql", "host": "db"}, SECRET)
    form = {
        "name": "crm",
        "kind": "postgresql",
        "host": "db3",
        "port": "",
        "database": "",
        "user": "",
        "options": "{}",
        "secret": "",
    }

    response = admin_client.post(
        reverse("admin:datasources_datasource_change", args=[source.pk]), form
    )

    assert response.status_code == 302
    source.refresh_from_db()
    assert (source.host, source.get_secret()) == ("db3", SECRET)


def test_analyst_without_permission_cannot_add_sources(client, django_user_model):
    user = django_user_model.objects.create_user("analyst", password="pw", is_staff=True)
    client.force_login(user)

    assert client.get(reverse("admin:datasources_datasource_add")).status_code == 403


def test_add_datasource_reads_secret_from_environment(db, monkeypatch, capsys):
    monkeypatch.setenv("CRM_PASSWORD", SECRET)

    call_command(
        "add_datasource",
        "--name",
        "crm",
        "--kind",
        "postgresql",
        "--host",
        "db",
        "--user",
        "reader",
        "--password-env",
        "CRM_PASSWORD",
    )

    output = capsys.readouterr().out
    assert "Added data source crm" in output and SECRET not in output
    assert DataSource.objects.get(name="crm").get_secret() == SECRET


def test_add_datasource_errors_name_the_option(db):
    with pytest.raises(CommandError, match="--password-env: environment variable NOPE is not set"):
        call_command(
            "add_datasource",
            "--name",
            "a",
            "--kind",
            "mysql",
            "--host",
            "h",
            "--password-env",
            "NOPE",
        )
    with pytest.raises(CommandError, match="--options is not valid JSON"):
        call_command(
            "add_datasource",
            "--name",
            "a",
            "--kind",
            "mysql",
            "--host",
            "h",
            "--no-password",
            "--options",
            "{",
        )
    assert not DataSource.objects.exists()


def test_test_datasource_reports_server_and_failures(mariadb_source, capsys):
    call_command("test_datasource", "warehouse")
    assert "warehouse: OK" in capsys.readouterr().out

    save_source({"port": 1}, source=mariadb_source)
    with pytest.raises(CommandError, match="warehouse: cannot connect"):
        call_command("test_datasource", "warehouse")


def test_production_requires_an_encryption_key():
    import subprocess
    import sys

    env = {
        **os.environ,
        "MLOPS_PRODUCTION": "1",
        "DJANGO_SECRET_KEY": "x" * 60,
        "MLOPS_ENCRYPTION_KEY": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; settings.DEBUG"],
        env={**env, "DJANGO_SETTINGS_MODULE": "mlops_site.settings"},
        capture_output=True,
        text=True,
    )
    assert "MLOPS_ENCRYPTION_KEY must be set in production" in result.stderr


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, "False"),
        ({"MLOPS_PRODUCTION": "1"}, "True"),
        ({"MLOPS_PRODUCTION": "1", "MLOPS_REQUIRE_READONLY_ACCOUNTS": "0"}, "False"),
        ({"MLOPS_REQUIRE_READONLY_ACCOUNTS": "yes"}, "True"),
    ],
)
def test_read_only_accounts_are_required_by_default_in_production(environment, expected):
    import subprocess
    import sys

    from cryptography.fernet import Fernet

    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("MLOPS_PRODUCTION", "MLOPS_REQUIRE_READONLY_ACCOUNTS")
    }
    env.update(
        environment,
        DJANGO_SECRET_KEY="x" * 60,
        MLOPS_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        DJANGO_SETTINGS_MODULE="mlops_site.settings",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; print(settings.MLOPS_REQUIRE_READONLY_ACCOUNTS)",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == expected, result.stderr
