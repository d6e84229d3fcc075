"""Runs through real `manage.py qcluster` processes, with the ORM broker and with Redis.

The cluster is stopped with SIGTERM to its main process, as an operator would; the
"machine lost" test kills its whole process group with SIGKILL instead. The last test
forks the engine from the test process itself (`supervise`).
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from conftest import require_service
from pipelines import runs, supervisor
from pipelines.choices import RunStatus, StepRunStatus
from pipelines.engine.registry import STEP_TYPES
from pipelines.models import PipelineRun

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def diagnostic_steps():
    if "sleep" not in STEP_TYPES:
        import pipelines.testing  # noqa: F401


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    scheme = "mysql" if db["ENGINE"].endswith("mysql") else "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"{scheme}://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or ''}/{db['NAME']}"


class Cluster:
    def __init__(self, env: dict, log: Path):
        self.env, self.log = env, log
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while b"running." not in self.log.read_bytes():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"cluster did not start:\n{self.log.read_text()}"
            time.sleep(0.2)
        return self

    def command(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the main process only
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def kill_machine(self):
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def cluster_factory(settings, tmp_path, isolated_storage):
    clusters = []

    def make(broker: str = "orm", workers: int = 2) -> Cluster:
        # The ORM queue lives in the test database, where this process enqueues under its
        # own cluster name; a Redis queue is shared, so each test cluster gets its own.
        name = (
            django_settings.Q_CLUSTER["name"] if broker == "orm" else f"test{uuid.uuid4().hex[:8]}"
        )
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mlops_site.settings",
            "DJANGO_SECRET_KEY": django_settings.SECRET_KEY,
            "DATABASE_URL": database_url(),
            "Q_BROKER": broker,
            "Q_NAME": name,
            "Q_WORKERS": str(workers),
            "MLFLOW_TRACKING_URI": settings.MLFLOW_TRACKING_URI,
            "MLFLOW_ARTIFACT_ROOT": str(settings.MLFLOW_ARTIFACT_ROOT),
            "MLOPS_CACHE_DIR": str(settings.MLOPS_CACHE_DIR),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "MLOPS_STEP_MODULES": "pipelines.testing",
            "MLOPS_HEARTBEAT_SECONDS": "1",
            "MLOPS_HEARTBEAT_TIMEOUT": "4",
            "MLOPS_CANCEL_GRACE_SECONDS": "2",
        }
        cluster = Cluster(env, tmp_path / f"{name}.log")
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()


def wait_for(predicate, timeout=60.0, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {message}")


def run_status(pk) -> str:
    return PipelineRun.objects.values_list("status", flat=True).get(pk=pk)


def sleep_pipeline(make_pipeline, seconds, **run_settings):
    return make_pipeline(
        [{"type": "sleep", "params": {"seconds": seconds}}, {"type": "noop"}, {"type": "noop"}],
        name="sleeper",
        **run_settings,
    )


def test_runs_succeed_through_the_orm_broker(cluster_factory, classifier_pipeline):
    cluster = cluster_factory("orm").start()

    run = runs.start_run(classifier_pipeline)

    wait_for(lambda: run_status(run.pk) in {"succeeded", "failed"}, message="the run to end")
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.metrics["accuracy"] > 0.8
    assert run.heartbeat_at is not None
    assert b"pipelines.tasks.execute_run" in cluster.log.read_bytes()


def test_runs_succeed_through_redis(cluster_factory, classifier_pipeline):
    require_service("Redis", "127.0.0.1", 6379)
    cluster = cluster_factory("redis://127.0.0.1:6379/0").start()

    result = cluster.command("run_pipeline", "classifier", "--queue")

    assert result.returncode == 0, result.stderr
    pk = int(result.stdout.split("#")[1].split()[0])
    wait_for(lambda: run_status(pk) in {"succeeded", "failed"}, message="the run to end")
    run = PipelineRun.objects.get(pk=pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.trigger == "command"


def test_killed_cluster_run_is_reaped_once_and_leaves_no_partial_cache(
    cluster_factory, make_pipeline, settings
):
    pipeline = sleep_pipeline(make_pipeline, seconds=30)
    cluster = cluster_factory("orm").start()
    run = runs.start_run(pipeline)
    wait_for(
        lambda: run.step_runs.filter(order=1, status="running").exists(), message="step 1 to run"
    )
    assert PipelineRun.objects.get(pk=run.pk).heartbeat_at is not None

    cluster.kill_machine()
    settings.MLOPS_HEARTBEAT_TIMEOUT = 4
    killed_at = time.monotonic()
    reaped = wait_for(lambda: runs.reap_lost_runs(), timeout=30, message="the reaper")

    assert reaped == [run.pk]
    assert time.monotonic() - killed_at < 10
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error_message.startswith("Worker lost")
    assert [s.status for s in run.step_runs.all()] == [
        StepRunStatus.FAILED,
        StepRunStatus.SKIPPED,
        StepRunStatus.SKIPPED,
    ]
    # A new cluster receives the redelivered task at most; the claim refuses it.
    cluster_factory("orm").start()
    time.sleep(3)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.step_runs.count() == 3
    leftovers = [p.name for p in Path(settings.MLOPS_CACHE_DIR).glob("*") if p.suffix == ".tmp"]
    assert leftovers == []


def test_cancel_queued_and_running_runs(cluster_factory, make_pipeline):
    pipeline = sleep_pipeline(make_pipeline, seconds=30)
    cluster = cluster_factory("orm").start()
    running = runs.start_run(pipeline)
    queued = runs.start_run(pipeline)
    wait_for(lambda: run_status(running.pk) == "running", message="the first run to start")

    assert cluster.command("cancel_run", str(queued.pk)).stdout.startswith(
        f"Run #{queued.pk} was queued"
    )
    result = cluster.command("cancel_run", str(running.pk))
    assert "will stop before its next step" in result.stdout

    wait_for(lambda: run_status(running.pk) == "cancelled", timeout=20, message="the cancel")
    running.refresh_from_db()
    assert running.error_message == "Cancelled; the running step was stopped after 2 s."
    assert run_status(queued.pk) == "cancelled"
    assert running.step_runs.get(order=1).status == StepRunStatus.FAILED


def test_run_past_its_timeout_fails(cluster_factory, make_pipeline):
    pipeline = sleep_pipeline(make_pipeline, seconds=30, timeout_seconds=2)
    cluster_factory("orm").start()

    run = runs.start_run(pipeline)

    wait_for(lambda: run_status(run.pk) == "failed", timeout=30, message="the timeout")
    assert PipelineRun.objects.get(pk=run.pk).error_message == "Timed out after 2 s."


def test_failing_run_is_retried_with_backoff_then_failed(cluster_factory, make_pipeline):
    pipeline = make_pipeline(
        [
            {"type": "sleep", "params": {"seconds": 0}},
            {"type": "drop_columns", "params": {"columns": ["missing"]}},
        ],
        name="flaky",
        max_retries=2,
        retry_backoff_seconds=1,
    )
    cluster_factory("orm").start()

    first = runs.start_run(pipeline)

    def third_attempt_failed():
        runs.dispatch_due_retries()  # the reaper's job, each minute; here each poll
        return PipelineRun.objects.filter(attempt=3, status="failed").exists()

    wait_for(third_attempt_failed, message="3 attempts")
    attempts = list(PipelineRun.objects.order_by("pk"))
    assert [(r.attempt, r.status) for r in attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
    ]
    gaps = [
        (b.started_at - a.finished_at).total_seconds()
        for a, b in zip(attempts, attempts[1:], strict=False)
    ]
    assert gaps[0] >= 1 and gaps[1] >= 2  # backoff doubles
    assert attempts[0].pk == first.pk


def test_triggers_while_active_run_one_at_a_time(cluster_factory, make_pipeline):
    pipeline = sleep_pipeline(make_pipeline, seconds=0.5)
    cluster_factory("orm", workers=2).start()

    started = [runs.start_run(pipeline) for _ in range(5)]

    wait_for(
        lambda: all(run_status(r.pk) == "succeeded" for r in started),
        timeout=90,
        message="all runs",
    )
    spans = sorted(PipelineRun.objects.values_list("started_at", "finished_at"))
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))


def own_children() -> list[int]:
    """This process's children, zombies included: they stay listed until reaped."""
    paths = Path(f"/proc/{os.getpid()}/task").glob("*/children")
    return sorted(int(pid) for path in paths for pid in path.read_text().split())


def test_engine_is_killed_and_reaped_when_watching_it_fails(make_pipeline, monkeypatch):
    run = runs.start_run(sleep_pipeline(make_pipeline, seconds=30))
    assert run.claim()
    engines = []

    def broken_watch(watch):
        wait_for(lambda: run.step_runs.filter(status="running").exists(), message="step 1")
        engines.append(watch.child.pid)
        raise RuntimeError("the watch failed")

    monkeypatch.setattr(supervisor._Watch, "until_done", broken_watch)
    before = own_children()

    with pytest.raises(RuntimeError, match="the watch failed"):
        supervisor.supervise(run)

    assert own_children() == before
    with pytest.raises(ProcessLookupError):
        os.kill(engines[0], 0)
