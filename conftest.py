"""Fixtures shared by every app's tests.

Every test gets its own MLflow store, step cache and media folder in a temporary
directory, so no test touches the project's local data or another test's runs.
"""

import io
import os
import shutil
import socket

import pandas as pd
import pytest

from datasources.services import add_dataset
from pipelines import services


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory):
    """A migrated MLflow SQLite store, made once: migrating one costs seconds."""
    from experiments import tracking

    folder = tmp_path_factory.mktemp("mlflow-template")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    from django.conf import settings

    original = settings.MLFLOW_TRACKING_URI
    settings.MLFLOW_TRACKING_URI = uri
    try:
        tracking.configure().search_experiments()
    finally:
        settings.MLFLOW_TRACKING_URI = original
    return folder / "mlflow.db"


@pytest.fixture(autouse=True)
def isolated_storage(settings, tmp_path, mlflow_template):
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    settings.MLFLOW_TRACKING_URI = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings.MLFLOW_ARTIFACT_ROOT = tmp_path / "mlartifacts"
    settings.MLOPS_CACHE_DIR = tmp_path / "cache"
    settings.MEDIA_ROOT = tmp_path / "media"
    # In-process tests run the engine inline; tests of the worker's child process turn
    # isolation back on with a database other processes can see.
    settings.MLOPS_ISOLATE_RUNS = False
    # ...and write the step inspector's files in the run, not in a worker task.
    settings.MLOPS_INSPECT_IN_BACKGROUND = False
    return tmp_path


@pytest.fixture
def make_dataset(db):
    def make(frame: pd.DataFrame, name: str = "data"):
        buffer = io.BytesIO(frame.to_csv(index=False).encode())
        return add_dataset(buffer, name, f"{name}.csv")

    return make


@pytest.fixture
def make_pipeline(db):
    def make(steps: list[dict], name: str = "test-pipeline", **run_settings):
        normalized = [
            {"order": index, "name": "", "params": {}, "enabled": True, **step}
            for index, step in enumerate(steps, start=1)
        ]
        definition = {"name": name, "steps": normalized, "run_settings": run_settings}
        return services.import_pipeline(definition)

    return make


@pytest.fixture
def viewer_client(client, django_user_model):
    """A client logged in as a user with no permission: it may only look."""
    client.force_login(django_user_model.objects.create_user("viewer"))
    return client


@pytest.fixture
def worker(monkeypatch):
    """Executes the runs pages queue in a thread, where a qcluster worker would."""
    from pipelines import runs
    from pipelines.tests.browser import InlineWorker

    worker = InlineWorker().start()
    monkeypatch.setattr(runs, "enqueue", worker.enqueue)
    yield worker
    worker.stop()


@pytest.fixture
def silent_port():
    """A local port that accepts connections and never answers, like a stalled server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a service is not listening, or fail under MLOPS_REQUIRE_SERVICES=1."""
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError as exc:
        message = f"{name} is not reachable on {host}:{port} ({exc})"
        if os.environ.get("MLOPS_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory):
    """A SQLite test database in a file, so worker processes can share it."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        path = tmp_path_factory.mktemp("database") / "test.sqlite3"
        database.setdefault("TEST", {})["NAME"] = str(path)


@pytest.fixture
def api_as(django_user_model):
    """An API client with a token of a new user holding these permissions ("app.codename").

    `api_as()` may only read; `api_as("pipelines.add_pipeline")` may also create pipelines.
    """
    from django.contrib.auth.models import Permission
    from rest_framework.test import APIClient

    from pipelines.api.tokens import issue_token

    def make(*perms: str, username: str = "integrator") -> APIClient:
        user = django_user_model.objects.create_user(username, password="pw")
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(user, 'tests')[1]}")
        client.user = user
        return client

    return make
