"""A stock `mlflow server` on the platform's store shows what the platform wrote.

Users open MLflow's own UI, or point notebooks at a tracking server, over the same
store: experiments, runs, registered models and aliases must read the same there.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from sklearn import datasets

from experiments import services, tracking
from pipelines import runs
from pipelines.models import StepRun

MODEL, ALIAS = "iris-stock", "champion"
STEPS = [
    {"type": "sklearn_dataset", "params": {"name": "iris"}},
    {
        "type": "train_sklearn",
        "params": {
            "task": "classification",
            "estimator": "random_forest",
            "target": "target",
            "hyperparams": {"n_estimators": 10},
        },
    },
    {"type": "register_model", "params": {"name": MODEL, "alias": ALIAS}},
]
MLFLOW = Path(sys.executable).parent / "mlflow"
STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mlflow_server(settings, tmp_path):
    """`mlflow server` on the test's store; yields its URL and stops it, children included."""
    port = free_port()
    log = (tmp_path / "mlflow-server.log").open("w")
    # The job runner (huey consumers for GenAI jobs) is of no use here, and its children
    # outlive a SIGTERM to the server.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [MLFLOW, "server", "--backend-store-uri", settings.MLFLOW_TRACKING_URI]
        + ["--default-artifact-root", Path(settings.MLFLOW_ARTIFACT_ROOT).as_uri()]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_it_answers(server, url, tmp_path / "mlflow-server.log")
        yield url
    finally:
        # The whole session (the CLI and its uvicorn worker), signalled before the CLI is
        # reaped so that its group id cannot have been reused (nothing is left to signal
        # when it died on its own at start).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _wait_until_it_answers(server, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"mlflow server did not answer in {STARTUP_SECONDS} s:\n{log_path.read_text()}")


def api(url: str, path: str, body: dict | None = None, **query) -> dict:
    """GET (or POST `body` to) MLflow's REST API; the decoded JSON answer."""
    address = f"{url}/api/2.0/mlflow/{path}"
    if query:
        address += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        address, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def registered_pipeline(make_pipeline):
    """A pipeline that trains and registers its model, run twice: versions 1 and 2."""
    pipeline = make_pipeline(STEPS, name="iris-stock")
    for _ in range(2):
        run = runs.start_run(pipeline, wait=True)
        assert run.status == "succeeded", run.error_message
    return pipeline


@pytest.mark.slow
def test_stock_mlflow_server_shows_what_the_platform_wrote(
    registered_pipeline, mlflow_server, settings, client, django_user_model
):
    client.force_login(django_user_model.objects.create_user("analyst"))
    pipeline_runs = list(registered_pipeline.runs.order_by("pk"))
    mlflow_ids = [run.mlflow_run_id for run in pipeline_runs]

    # Experiments: the same ids and names as the list page.
    served = api(mlflow_server, "experiments/search", max_results=1000)["experiments"]
    listed = services.experiment_summaries()
    assert {(e["experiment_id"], e["name"]) for e in served} == {(s.id, s.name) for s in listed}
    list_page = client.get("/experiments/").content.decode()
    for experiment in served:
        assert experiment["name"] in list_page
    experiment = next(e for e in served if e["name"] == registered_pipeline.experiment_name)

    # Runs: the same ids, params and metrics as the experiment's runs page.
    found = api(mlflow_server, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})[
        "runs"
    ]
    page = services.experiment_runs(experiment["experiment_id"])
    assert {run["info"]["run_id"] for run in found} == set(mlflow_ids)
    assert {run["id"] for run in page.runs} == set(mlflow_ids)
    shown = {run["id"]: run for run in page.runs}
    for run in found:
        ours = shown[run["info"]["run_id"]]
        assert {p["key"]: p["value"] for p in run["data"]["params"]} == ours["params"]
        assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == ours["metrics"]
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["mlops.run_id"] == str(ours["pipeline_run_id"])
        assert run["info"]["status"] == ours["status"] == "FINISHED"
    runs_page = client.get(f"/experiments/{experiment['experiment_id']}/").content.decode()
    for run_id in mlflow_ids:
        assert f'title="{run_id}"' in runs_page

    # Artifacts: the server lists what the platform's artifact pages list.
    listing = api(mlflow_server, "artifacts/list", run_id=mlflow_ids[0]).get("files", [])
    assert listing
    assert {item["path"] for item in listing} == {
        item["path"] for item in tracking.list_artifacts(mlflow_ids[0])
    }

    # The registry: one model, a version per run, the alias on the second.
    registered = api(mlflow_server, "registered-models/search")["registered_models"]
    assert [model["name"] for model in registered] == [MODEL]
    assert registered[0]["aliases"] == [{"alias": ALIAS, "version": "2"}]
    versions = api(mlflow_server, "model-versions/search", filter=f"name = '{MODEL}'")
    by_version = {v["version"]: v["run_id"] for v in versions["model_versions"]}
    assert by_version == {"1": mlflow_ids[0], "2": mlflow_ids[1]}
    summaries = StepRun.objects.filter(run__in=pipeline_runs, step_type="register_model")
    assert sorted(s.summary["version"] for s in summaries) == [1, 2]
    aliased = api(mlflow_server, "registered-models/alias", name=MODEL, alias=ALIAS)
    assert aliased["model_version"]["version"] == "2"
    assert aliased["model_version"]["run_id"] == mlflow_ids[1]
    assert tracking.model_version(MODEL, 2)["aliases"] == [ALIAS]

    # The model the alias names predicts the same through the server as from the store.
    features = datasets.load_iris(as_frame=True).frame.drop(columns="target")
    local = tracking.load_model(f"models:/{MODEL}@{ALIAS}").predict(features)
    settings.MLFLOW_TRACKING_URI = mlflow_server
    assert tracking.resolve_model_version(f"models:/{MODEL}@{ALIAS}") == f"models:/{MODEL}/2"
    remote = tracking.load_model(f"models:/{MODEL}@{ALIAS}").predict(features)
    pd.testing.assert_series_equal(pd.Series(remote), pd.Series(local))
