"""A worker rides out a restart of its Django database, and fails a run cleanly when the
database stays away longer than the heartbeat timeout.

The slow tests start their own MariaDB server (own port, data directory and socket) and
stop and start it during a step. The worker is a subprocess whose Django database is that
server: it creates a pipeline, starts a run and executes it as the queue task would, in a
forked engine child, then reports any error and any child process it has left.
"""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import InterfaceError, OperationalError

from mlops_site import db_retry

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "mlops_outage"
USER = pwd.getpwuid(os.getuid()).pw_name  # the server runs as whoever runs the tests

WORKER = """
import glob, json, os, sys
import django

django.setup()
from pipelines import runs, services, tasks

run = runs.start_run(services.import_pipeline(json.loads(sys.argv[1])))
print(json.dumps({"run": run.pk}), flush=True)
report = {"error": ""}
try:
    tasks.execute_run(run.pk)
except BaseException as exc:
    report["error"] = f"{type(exc).__name__}: {exc}"
# Live and zombie children alike stay listed here until they are reaped.
report["children"] = [
    pid for path in glob.glob(f"/proc/{os.getpid()}/task/*/children")
    for pid in open(path).read().split()
]
print(json.dumps(report), flush=True)
"""


def find_program(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        message = f"{name} is not installed (apt-get install mariadb-server)"
        if os.environ.get("MLOPS_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {message}")


class MariaDB:
    """A throwaway MariaDB server that a test can stop and start again."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.datadir = folder / "data"
        self.process = None

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{DATABASE}"

    def install(self) -> None:
        subprocess.run(
            [
                find_program("mariadb-install-db"),
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--user={USER}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                find_program("mariadbd"),
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.folder / 'sock'}",
                f"--pid-file={self.folder / 'pid'}",
                f"--user={USER}",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
            ],
            stdout=(self.folder / "server.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self.accepts_connections, 30, "MariaDB to start")

    def accepts_connections(self) -> bool:
        assert self.process.poll() is None, (self.folder / "server.log").read_text()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if not self.running:
            return
        self.process.send_signal(signal.SIGTERM)  # a clean shutdown, as a restart does
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def create_database(self) -> None:
        self.query(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4", database="")

    def query(self, sql: str, *params, database: str = DATABASE) -> list[tuple]:
        import MySQLdb

        connection = MySQLdb.connect(
            host="127.0.0.1", port=self.port, user="root", database=database
        )
        try:
            cursor = connection.cursor()
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            connection.close()


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    server = MariaDB(tmp_path_factory.mktemp("mariadb"))
    server.install()
    try:
        server.start()
        server.create_database()
        migrate = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": server.url},
            capture_output=True,
            text=True,
        )
        assert migrate.returncode == 0, migrate.stderr
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_worker(mariadb, settings, tmp_path):
    """Start a worker that runs one pipeline on the MariaDB server; returns it with its
    run's primary key."""
    workers = []
    if not mariadb.running:  # an earlier test failed during its outage
        mariadb.start()

    def start(definition: dict, heartbeat_timeout: int):
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mlops_site.settings",
            "DATABASE_URL": mariadb.url,
            "Q_BROKER": "orm",
            "MLFLOW_TRACKING_URI": settings.MLFLOW_TRACKING_URI,
            "MLFLOW_ARTIFACT_ROOT": str(settings.MLFLOW_ARTIFACT_ROOT),
            "MLOPS_CACHE_DIR": str(settings.MLOPS_CACHE_DIR),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "MLOPS_STEP_MODULES": "pipelines.testing",
            "MLOPS_ISOLATE_RUNS": "1",
            "MLOPS_HEARTBEAT_SECONDS": "1",
            "MLOPS_HEARTBEAT_TIMEOUT": str(heartbeat_timeout),
        }
        log = tmp_path / f"worker-{len(workers)}.log"
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(definition)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log.open("ab"),
            text=True,
        )
        workers.append(worker)
        first = worker.stdout.readline()
        assert first, log.read_text()
        return worker, json.loads(first)["run"]

    yield start
    for worker in workers:
        if worker.poll() is None:
            worker.kill()  # its engine child dies with it (PR_SET_PDEATHSIG)
            worker.wait()


def sleeper(name: str, seconds: float) -> dict:
    steps = [
        {"type": "sleep", "params": {"seconds": seconds}},
        {"type": "noop", "params": {}},
        {"type": "noop", "params": {}},
    ]
    normalized = [{"order": n, "name": "", "enabled": True, **s} for n, s in enumerate(steps, 1)]
    return {"name": name, "steps": normalized}


def wait_until_step_runs(mariadb: MariaDB, run_pk: int) -> None:
    sql = "SELECT 1 FROM pipelines_steprun WHERE run_id = %s AND `order` = 1 AND status = %s"
    wait_for(lambda: mariadb.query(sql, run_pk, "running"), 30, "step 1 to run")


def engine_children(worker: subprocess.Popen) -> list[int]:
    paths = Path(f"/proc/{worker.pid}/task").glob("*/children")
    return [int(pid) for path in paths for pid in path.read_text().split()]


def finish(worker: subprocess.Popen) -> dict:
    output, _ = worker.communicate(timeout=60)
    return json.loads(output.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.database
def test_outage_shorter_than_the_heartbeat_timeout_does_not_fail_the_run(mariadb, start_worker):
    # The step ends while the database is down: the engine's records wait for it.
    worker, run_pk = start_worker(sleeper("short-outage", 4), heartbeat_timeout=30)
    wait_until_step_runs(mariadb, run_pk)

    mariadb.stop()
    time.sleep(10)
    mariadb.start()

    report = finish(worker)
    assert report == {"error": "", "children": []}
    status, error = mariadb.query(
        "SELECT status, error_message FROM pipelines_pipelinerun WHERE id = %s", run_pk
    )[0]
    assert (status, error) == ("succeeded", "")
    steps = mariadb.query(
        "SELECT status FROM pipelines_steprun WHERE run_id = %s ORDER BY `order`", run_pk
    )
    assert steps == [("succeeded",), ("succeeded",), ("succeeded",)]


@pytest.mark.slow
@pytest.mark.database
def test_outage_longer_than_the_heartbeat_timeout_fails_the_run_and_ends_the_engine(
    mariadb, start_worker
):
    worker, run_pk = start_worker(sleeper("long-outage", 30), heartbeat_timeout=5)
    wait_until_step_runs(mariadb, run_pk)
    [engine] = engine_children(worker)

    mariadb.stop()
    stopped = time.monotonic()
    # The worker stops and reaps the engine while the database is still away.
    wait_for(lambda: not engine_children(worker), 10, "the engine to be reaped")
    assert worker.poll() is None  # still waiting for the database to record the failure
    with pytest.raises(ProcessLookupError):
        os.kill(engine, 0)
    time.sleep(max(0.0, 12 - (time.monotonic() - stopped)))
    mariadb.start()

    report = finish(worker)
    assert report == {"error": "", "children": []}
    status, error = mariadb.query(
        "SELECT status, error_message FROM pipelines_pipelinerun WHERE id = %s", run_pk
    )[0]
    assert status == "failed"
    # The outage is measured until the database was back, not until the worker gave up.
    seconds = re.match(r"The database was unreachable for (\d+) s \(OperationalError: ", error)
    assert seconds and int(seconds[1]) >= 10, error
    steps = mariadb.query(
        "SELECT status FROM pipelines_steprun WHERE run_id = %s ORDER BY `order`", run_pk
    )
    assert steps == [("failed",), ("skipped",), ("skipped",)]


def test_call_reconnects_and_calls_again_until_the_database_answers():
    answers = iter([OperationalError("server has gone away"), InterfaceError("closed"), "done"])

    def flaky():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert db_retry.call(flaky, patience=5) == "done"


def test_call_gives_up_after_its_patience_saying_for_how_long():
    def down():
        raise OperationalError("connection refused")

    started = time.monotonic()
    with pytest.raises(db_retry.DatabaseUnreachable) as raised:
        db_retry.call(down, patience=1)

    assert 1 <= time.monotonic() - started < 3
    assert str(raised.value) == (
        "the database was unreachable for 1 s (OperationalError: connection refused)"
    )


def test_call_inside_a_transaction_raises_at_once(db):
    calls = []

    def down():
        calls.append(1)
        raise OperationalError("server has gone away")

    with pytest.raises(OperationalError):
        db_retry.call(down)
    assert calls == [1]
