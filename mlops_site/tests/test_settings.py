import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_settings(**env):
    """Import the settings in a fresh interpreter with the given environment."""
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "mlops_site.settings", **env}
    code = "from django.conf import settings; settings.DATABASES; print(settings.Q_CLUSTER)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG must be a boolean"),
        ({"Q_WORKERS": "two"}, "Q_WORKERS must be an integer, got 'two'"),
        ({"Q_WORKERS": "0"}, "Q_WORKERS must be at least 1"),
        (
            {"Q_TIMEOUT": "600", "Q_RETRY": "600"},
            "Q_RETRY (600) must be greater than Q_TIMEOUT (600)",
        ),
        ({"Q_BROKER": "amqp://x"}, "Q_BROKER must be 'orm' or a redis:// URL"),
        ({"DATABASE_URL": "oracle-ish://nope"}, "DATABASE_URL is not a valid database URL"),
        ({"MLOPS_PRODUCTION": "1", "DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY must be set"),
    ],
)
def test_bad_environment_fails_at_start_naming_the_variable(env, message):
    result = load_settings(**env)

    assert result.returncode != 0
    assert message in result.stderr


def test_embedded_defaults_need_no_services():
    result = load_settings()

    assert result.returncode == 0, result.stderr
    assert "'orm': 'default'" in result.stdout


def test_redis_broker_and_retry_above_timeout():
    result = load_settings(Q_BROKER="redis://127.0.0.1:6379/0", Q_TIMEOUT="100")

    assert result.returncode == 0, result.stderr
    assert "'redis': 'redis://127.0.0.1:6379/0'" in result.stdout
    assert "'timeout': 100, 'retry': 700" in result.stdout


def test_database_url_selects_mariadb_with_utf8mb4():
    from mlops_site.env import env_database

    os.environ["TEST_DB_URL"] = "mysql://root@127.0.0.1:3306/mlops"
    try:
        config = env_database("TEST_DB_URL", "sqlite:///x")
    finally:
        del os.environ["TEST_DB_URL"]

    assert config["ENGINE"] == "django.db.backends.mysql"
    assert config["NAME"] == "mlops"
    assert config["OPTIONS"]["charset"] == "utf8mb4"
    # A partitioned network fails a call instead of blocking the worker.
    assert config["OPTIONS"]["connect_timeout"] == 10
    assert config["OPTIONS"]["read_timeout"] == 120


def test_production_settings_pass_check_deploy():
    env = {
        **os.environ,
        "MLOPS_PRODUCTION": "1",
        "DJANGO_SECRET_KEY": "p" * 20 + "roduction-secret-key-with-enough-variety-0123456789",
        "DJANGO_ALLOWED_HOSTS": "mlops.example.org",
        "MLOPS_ENCRYPTION_KEY": "L2c4YTNmOWQ2ZTFiMGM3YTJmNWU4ZDFjNGI3YTBlOTM=",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
