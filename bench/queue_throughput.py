"""Throughput and latency of pipeline runs through the task queue, against bare django-q2.

Run from the project root:

    .venv/bin/python bench/queue_throughput.py [--runs 100] [--steps 50] [--db sqlite|mariadb]

For each broker (the ORM broker on the Django database, then Redis when 127.0.0.1:6379
answers) it starts a real `manage.py qcluster` with 2 workers and measures:

1. bare django-q2: --runs trivial tasks (`math.floor`) enqueued at once; tasks/s from the
   first enqueue until every result row is saved;
2. pipeline runs: --runs runs of a one-step pipeline (`sleep` 0 s) triggered at once with
   `start_run`; runs/s from the first trigger to the last `finished_at`, the
   trigger-to-running latency (started_at - created_at) of that burst, and of --idle runs
   triggered one at a time while the workers are free (the dispatch latency itself);
3. without a cluster, the engine's fixed cost per step: `start_run(wait=True)` of a
   pipeline of 1 `sleep` + (--steps - 1) `noop` steps against a 1-step pipeline, with the
   engine in a forked child (MLOPS_ISOLATE_RUNS=1) and in this process (0).

With --what-if each broker runs a second time with a further supervisor change patched
into the cluster at runtime: the worker opens MLflow's store once and each child drops
the inherited pool (see install_worker_fixes; no project file is changed). --db mariadb uses a throw-away MariaDB database instead of SQLite.

Everything (Django database, MLflow store, step cache, media) lives in a fresh temporary
folder, deleted at the end unless --keep. It prints numbers and ratios and never fails
on a missed target.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import argparse  # noqa: E402
import functools  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

TARGET_RATIO = 0.5  # pipeline runs/s over bare tasks/s
TARGET_LATENCY = 0.5  # p50 trigger-to-running seconds, Redis
TARGET_STEP_MS = 20.0  # engine cost per no-op step
WORKERS = 2
BARE_FUNC = "math.floor"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="tasks and runs per burst")
    parser.add_argument("--steps", type=int, default=50, help="steps of the long pipeline")
    parser.add_argument(
        "--idle", type=int, default=20, help="runs triggered one at a time (idle latency)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="repeats of the engine timings")
    parser.add_argument("--brokers", default="orm,redis", help="comma-separated: orm, redis")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis server URL")
    parser.add_argument(
        "--db",
        default="sqlite",
        help="sqlite, or mariadb (a fresh database on mysql://root@127.0.0.1:3306), "
        "or a mysql:// server URL without database name",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per wait")
    parser.add_argument("--skip-engine", action="store_true", help="skip part 3")
    parser.add_argument(
        "--what-if",
        action="store_true",
        help="run each broker again with the proposed supervisor fixes patched into the cluster",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args()


# --------------------------------------------------------------------------- what-if


def install_worker_fixes():
    """The supervisor changes this benchmark proposes, patched in at runtime (no project
    file is changed); returns a function that takes them out again.

    The project already preloads MLflow's imports and mappers and freezes the inherited
    heap in the child (experiments.tracking.preload, pipelines.supervisor); on top:

    * before forking, the worker opens the store once, so a child skips the schema checks;
    * the child drops the inherited SQLAlchemy pool (dispose(close=False)) and opens its own
      connections, as SQLAlchemy requires after a fork.
    """
    import gc

    import sqlalchemy.orm
    from django.conf import settings
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service.utils import _get_store

    from pipelines import supervisor

    sqlalchemy.orm.configure_mappers()
    original_child, original_supervise = supervisor._child, supervisor.supervise

    def _child(run_pk, parent):
        gc.freeze()
        for engine in list(SqlAlchemyStore._engine_map.values()):
            engine.dispose(close=False)
        original_child(run_pk, parent)

    def supervise(run):
        _get_store(settings.MLFLOW_TRACKING_URI)  # opened once per worker, then cached
        original_supervise(run)

    supervisor._child = _child
    supervisor.supervise = supervise
    runs_module = sys.modules.get("pipelines.runs")
    if runs_module is not None:
        runs_module.supervise = supervise

    def undo():
        supervisor._child, supervisor.supervise = original_child, original_supervise
        if runs_module is not None:
            runs_module.supervise = original_supervise

    return undo


# Imported by a cluster through MLOPS_STEP_MODULES (see --what-if): patch that cluster.
if __name__ != "__main__" and os.environ.get("BENCH_QUEUE_FIXES") == "1":
    install_worker_fixes()


# --------------------------------------------------------------------------- setup


class MariaDB:
    """A throw-away database on a MySQL/MariaDB server, created and dropped here."""

    def __init__(self, server_url: str):
        from urllib.parse import urlparse

        url = urlparse(server_url)
        self.server_url = server_url.rstrip("/")
        self.params = {
            "host": url.hostname or "127.0.0.1",
            "port": url.port or 3306,
            "user": url.username or "root",
            "password": url.password or "",
        }
        self.name = f"mlops_bench_{os.getpid()}"

    @property
    def url(self) -> str:
        return f"{self.server_url}/{self.name}"

    def _execute(self, sql: str) -> None:
        import MySQLdb

        connection = MySQLdb.connect(**self.params)
        try:
            connection.cursor().execute(sql)
        finally:
            connection.close()

    def create(self) -> None:
        self._execute(f"DROP DATABASE IF EXISTS `{self.name}`")
        self._execute(
            f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )

    def drop(self) -> None:
        self._execute(f"DROP DATABASE IF EXISTS `{self.name}`")


def configure_environment(folder: Path, database_url: str, q_name: str) -> None:
    """Point every setting at `folder` before django.setup(); clusters inherit it."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "mlops_site.settings",
            "DJANGO_SECRET_KEY": f"bench-{secrets.token_hex(24)}",
            "DATABASE_URL": database_url,
            "Q_BROKER": "orm",
            "Q_NAME": q_name,
            "Q_WORKERS": str(WORKERS),
            "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
            "MLFLOW_ARTIFACT_ROOT": str(folder / "mlartifacts"),
            "MLOPS_CACHE_DIR": str(folder / "cache"),
            "MEDIA_ROOT": str(folder / "media"),
            "MLOPS_STEP_MODULES": "pipelines.testing",
            "MLOPS_ISOLATE_RUNS": "1",
            "LOG_LEVEL": "WARNING",
        }
    )


def setup_django() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)


def redis_database(server: str, q_name: str) -> str | None:
    """A Redis URL on an empty database number, or None when Redis does not answer."""
    from urllib.parse import urlparse

    import redis

    url = urlparse(server)
    try:
        socket.create_connection((url.hostname, url.port or 6379), timeout=1).close()
    except OSError:
        return None
    base = server.rstrip("/")
    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{base}/{number}")
        if client.dbsize() == 0:
            return f"{base}/{number}"
    return f"{base}/15"  # all in use: the unique Q_NAME still keeps the queues apart


def use_broker(broker: str) -> None:
    """Make this process enqueue where the cluster of `broker` listens."""
    from django_q.conf import Conf

    if broker == "orm":
        Conf.ORM, Conf.REDIS = "default", None
    else:
        Conf.ORM, Conf.REDIS = None, broker


class Cluster:
    """A real `manage.py qcluster`; stopped with SIGTERM to its main process."""

    def __init__(self, broker: str, log: Path, fixes: bool = False):
        self.env = {**os.environ, "Q_BROKER": broker, "LOG_LEVEL": "INFO"}
        if fixes:
            self.env["BENCH_QUEUE_FIXES"] = "1"
            self.env["MLOPS_STEP_MODULES"] = (
                f"{self.env['MLOPS_STEP_MODULES']},bench.queue_throughput"
            )
        self.log = log
        self.process = self.output = None

    def start(self, timeout: float = 60) -> "Cluster":
        started = time.monotonic()
        self.output = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=self.env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while b"running." not in self.log.read_bytes():
            if self.process.poll() is not None:
                raise RuntimeError(f"the cluster exited:\n{self.log.read_text()[-3000:]}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"the cluster did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the main process only
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Last resort: members of the cluster's own process group still alive after it.
        deadline = time.monotonic() + 5
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._group_alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.output:
            self.output.close()

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def problems(self) -> Counter:
        """Lines of the cluster log that report trouble, by kind."""
        kinds = Counter()
        for line in self.log.read_text(errors="replace").splitlines():
            lowered = line.lower()
            if "database is locked" in lowered:
                kinds["database is locked"] += 1
            elif "traceback" in lowered:
                kinds["traceback"] += 1
            elif " error " in lowered or lowered.startswith("error") or "[error]" in lowered:
                kinds["error line"] += 1
        return kinds


def make_pipelines(steps: int, runs: int):
    from pipelines import services

    def make(name, step_list, **run_settings):
        definition = {
            "name": name,
            "steps": [
                {"order": i, "name": "", "params": {}, "enabled": True, **step}
                for i, step in enumerate(step_list, start=1)
            ],
            "run_settings": run_settings,
        }
        return services.import_pipeline(definition)

    sleep0 = {"type": "sleep", "params": {"seconds": 0}}
    return {
        # Its MLflow experiment is left for the workers to create: the warm-up runs race.
        "warmup": make("bench-warmup", [sleep0], max_active_runs=100),
        "one": make("bench-one", [sleep0], max_active_runs=min(max(100, runs), 32767)),
        "long": make("bench-long", [sleep0] + [{"type": "noop"}] * (steps - 1)),
        "short": make("bench-short", [sleep0]),
    }


# --------------------------------------------------------------------------- helpers


def wait_until(predicate, timeout: float, what: str, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def pct(values, q: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def seconds(delta) -> float:
    return delta.total_seconds()


def dist(values) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {pct(values, 50) * 1000:.0f} / p95 {pct(values, 95) * 1000:.0f} / "
        f"max {max(values) * 1000:.0f} ms"
    )


class CpuMeter:
    """CPU used during a phase, as shares of the machine: all, ours (this process and the
    cluster's process tree, engine children included once reaped), other processes."""

    def __init__(self, cluster_pid: int | None = None):
        self.cluster_pid = cluster_pid
        self.tick = os.sysconf("SC_CLK_TCK")
        self.start = None

    @staticmethod
    def machine():
        """(busy, total) jiffies of the whole machine, from /proc/stat."""
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields) - idle, sum(fields)

    def ours(self) -> float:
        times = os.times()
        total = (times.user + times.system) * self.tick
        if not self.cluster_pid:
            return total
        parents, ticks = {}, {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            parents[int(entry.name)] = int(fields[1])
            ticks[int(entry.name)] = sum(int(x) for x in fields[11:15])  # u, s, cu, cs
        for pid, tick in ticks.items():
            ancestor = pid
            while ancestor > 1 and ancestor != self.cluster_pid:
                ancestor = parents.get(ancestor, 0)
            if ancestor == self.cluster_pid:
                total += tick
        return total

    def __enter__(self) -> "CpuMeter":
        self.result = None
        try:
            self.start = (self.machine(), self.ours())
        except OSError:
            self.start = None
        return self

    def __exit__(self, *exc) -> None:
        if self.start is None:
            return
        (busy0, total0), ours0 = self.start
        (busy1, total1), ours1 = self.machine(), self.ours()
        span = max(total1 - total0, 1)
        busy, ours = (busy1 - busy0) / span, (ours1 - ours0) / span
        self.result = {"busy": busy, "ours": ours, "others": max(busy - ours, 0.0)}


def fmt_cpu(cpu: dict | None) -> str:
    if not cpu:
        return "cpu n/a"
    return (
        f"machine CPU {cpu['busy'] * 100:.0f}% busy: this benchmark {cpu['ours'] * 100:.0f}%, "
        f"other processes {cpu['others'] * 100:.0f}%"
    )


# --------------------------------------------------------------------------- part 1


def bench_bare(n: int, timeout: float, meter: CpuMeter) -> dict:
    from django_q.models import Task
    from django_q.tasks import async_task

    Task.objects.all().delete()  # the save limit (500) would prune rows of a long session
    group = f"bare-{secrets.token_hex(4)}"
    with meter:
        start = time.perf_counter()
        for _ in range(n):
            async_task(BARE_FUNC, 1.5, group=group)
        enqueued = time.perf_counter() - start
        wait_until(
            lambda: Task.objects.filter(group=group).count() >= n, timeout, f"{n} task results"
        )
        elapsed = time.perf_counter() - start
    rows = list(Task.objects.filter(group=group).values_list("started", "stopped", "success"))
    return {
        "n": n,
        "enqueue_s": enqueued,
        "elapsed_s": elapsed,
        "per_s": n / elapsed,
        "failed": sum(not ok for _, _, ok in rows),
        "queue_to_done": [seconds(stopped - started) for started, stopped, _ in rows],
        "cpu": meter.result,
    }


# --------------------------------------------------------------------------- part 2


def finished(pks) -> bool:
    from pipelines.choices import ACTIVE_RUN_STATUSES
    from pipelines.models import PipelineRun

    return not PipelineRun.objects.filter(pk__in=pks, status__in=ACTIVE_RUN_STATUSES).exists()


def run_rows(pks) -> list[dict]:
    """Each run with its timestamps, its steps' span and its django-q task's times."""
    from django_q.models import Task

    from pipelines.models import PipelineRun, StepRun

    runs = {
        row["pk"]: row
        for row in PipelineRun.objects.filter(pk__in=pks).values(
            "pk", "status", "created_at", "started_at", "finished_at", "error_message"
        )
    }
    for run_id, started, stopped in StepRun.objects.filter(run_id__in=pks).values_list(
        "run_id", "started_at", "finished_at"
    ):
        row = runs[run_id]
        if started and (row.get("step_start") is None or started < row["step_start"]):
            row["step_start"] = started
        if stopped and (row.get("step_end") is None or stopped > row["step_end"]):
            row["step_end"] = stopped
    names = {f"pipeline-run-{pk}": pk for pk in pks}
    for name, enqueued, stopped in Task.objects.filter(name__in=names).values_list(
        "name", "started", "stopped"
    ):
        runs[names[name]]["task_enqueued"] = enqueued
        runs[names[name]]["task_stopped"] = stopped
    return [runs[pk] for pk in pks]


def phases(rows: list[dict]) -> dict[str, list[float]]:
    """Where each run's time went, from the database timestamps (seconds)."""
    spans = {
        "trigger->enqueued": ("created_at", "task_enqueued"),
        "enqueued->running (queue, claim)": ("task_enqueued", "started_at"),
        "running->1st step (fork, MLflow start)": ("started_at", "step_start"),
        "steps": ("step_start", "step_end"),
        "last step->finished (mark)": ("step_end", "finished_at"),
        "finished->task done (MLflow end, reap, dispatch)": ("finished_at", "task_stopped"),
        "running->task done (worker busy)": ("started_at", "task_stopped"),
    }
    out = {}
    for label, (a, b) in spans.items():
        out[label] = [seconds(r[b] - r[a]) for r in rows if r.get(a) and r.get(b)]
    return out


def bench_burst(pipeline, n: int, timeout: float, meter: CpuMeter) -> dict:
    from django.utils import timezone

    from pipelines.runs import start_run

    with meter:
        t0 = timezone.now()
        start = time.perf_counter()
        pks = [start_run(pipeline).pk for _ in range(n)]
        triggered = time.perf_counter() - start
        wait_until(lambda: finished(pks), timeout, f"{n} runs to end", interval=0.05)
        observed = time.perf_counter() - start
    rows = run_rows(pks)
    ended = [r["finished_at"] for r in rows if r["finished_at"]]
    span = seconds(max(ended) - t0)
    return {
        "n": n,
        "trigger_s": triggered,
        "observed_s": observed,
        "span_s": span,
        "per_s": n / span,
        "statuses": Counter(r["status"] for r in rows),
        "errors": Counter(r["error_message"] for r in rows if r["error_message"]),
        "latency": [seconds(r["started_at"] - r["created_at"]) for r in rows if r["started_at"]],
        "phases": phases(rows),
        "cpu": meter.result,
    }


def bench_idle(pipeline, n: int, timeout: float) -> dict:
    from pipelines.runs import start_run

    pks = []
    for _ in range(n):
        run = start_run(pipeline)
        pks.append(run.pk)
        wait_until(lambda pk=run.pk: finished([pk]), timeout, f"run #{run.pk}", interval=0.01)
    rows = run_rows(pks)
    return {
        "n": n,
        "statuses": Counter(r["status"] for r in rows),
        "latency": [seconds(r["started_at"] - r["created_at"]) for r in rows if r["started_at"]],
        "phases": phases(rows),
    }


def warm_up(pipeline, timeout: float) -> dict:
    """Both workers import the task modules (and MLflow) before anything is timed."""
    from django_q.models import Task
    from django_q.tasks import async_task

    from pipelines.runs import start_run

    group = f"warm-{secrets.token_hex(4)}"
    for _ in range(4):
        async_task(BARE_FUNC, 1.5, group=group)
    wait_until(lambda: Task.objects.filter(group=group).count() >= 4, timeout, "warm-up tasks")
    pks = [start_run(pipeline).pk for _ in range(4)]
    wait_until(lambda: finished(pks), timeout, "warm-up runs", interval=0.05)
    rows = run_rows(pks)
    return {
        "statuses": Counter(r["status"] for r in rows),
        "errors": Counter(r["error_message"][:160] for r in rows if r["error_message"]),
    }


def bench_broker(
    label: str, broker: str, pipelines: dict, args, folder: Path, fixes: bool = False
) -> dict:
    use_broker(broker)
    cluster = Cluster(broker, folder / f"cluster-{label}.log", fixes=fixes)
    try:
        cluster.start()
        print(f"[{label}] cluster up in {cluster.start_seconds:.1f} s; warming up", flush=True)
        warm = warm_up(pipelines["warmup"], args.timeout)
        if warm["errors"]:
            print(f"[{label}] warm-up runs: {dict(warm['statuses'])}")
            for message, count in warm["errors"].items():
                print(f"    {count} x {message}")
        print(f"[{label}] {args.runs} bare tasks", flush=True)
        meter = CpuMeter(cluster.process.pid)
        bare = bench_bare(args.runs, args.timeout, meter)
        print(f"[{label}] {args.runs} pipeline runs at once", flush=True)
        burst = bench_burst(pipelines["one"], args.runs, args.timeout, meter)
        print(f"[{label}] {args.idle} pipeline runs one at a time", flush=True)
        idle = bench_idle(pipelines["one"], args.idle, args.timeout) if args.idle else None
    finally:
        cluster.stop()
    return {
        "label": label,
        "bare": bare,
        "burst": burst,
        "idle": idle,
        "problems": cluster.problems(),
        "log": cluster.log,
    }


# --------------------------------------------------------------------------- part 3


class Probes:
    """Wall time of named calls in this process, wrapped at runtime (no file changes)."""

    def __init__(self):
        self.totals = defaultdict(float)
        self.counts = defaultdict(int)

    def add(self, label: str, start: float) -> None:
        self.totals[label] += time.perf_counter() - start
        self.counts[label] += 1

    def wrap(self, owner, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(label, start)

        setattr(owner, attribute, timed)

    def query_counter(self):
        """A database execute wrapper that times every query by its SQL verb."""

        def execute(run, sql, params, many, context):
            start = time.perf_counter()
            try:
                return run(sql, params, many, context)
            finally:
                self.add(f"  SQL {sql.lstrip().split(' ', 1)[0].upper()}", start)

        return execute

    def reset(self) -> None:
        self.totals.clear()
        self.counts.clear()


def install_probes(probes: Probes) -> list:
    """Wrap the engine's parts; returns the originals to put back."""
    from experiments import tracking
    from pipelines.engine.cache import StepCache
    from pipelines.engine.runner import PipelineEngine
    from pipelines.models import PipelineRun, StepRun

    targets = [
        (tracking.TrackedRun, "start", "MLflow start (experiment + run)"),
        (tracking.TrackedRun, "log_params", "MLflow log_params"),
        (tracking.TrackedRun, "end", "MLflow end_run"),
        (PipelineEngine, "_run_step", "engine._run_step (all)"),
        (StepCache, "save", "  StepCache.save"),
        (PipelineRun, "append_log", "  PipelineRun.append_log"),
        (PipelineRun, "cancel_was_requested", "  PipelineRun.cancel_was_requested"),
        (StepRun, "save", "  StepRun.save (create + update)"),
    ]
    saved = [(owner, name, owner.__dict__.get(name)) for owner, name, _ in targets]
    for owner, name, label in targets:
        probes.wrap(owner, name, label)
    return saved


def restore_probes(saved: list) -> None:
    for owner, name, original in saved:
        if original is None:  # inherited: drop the wrapper to uncover it again
            delattr(owner, name)
        else:
            setattr(owner, name, original)


def timed_run(pipeline) -> float:
    from pipelines.runs import start_run

    start = time.perf_counter()
    run = start_run(pipeline, wait=True)
    elapsed = time.perf_counter() - start
    if run.status != "succeeded":
        raise RuntimeError(f"{run} ended {run.status}: {run.error_message}")
    return elapsed


def bench_engine(pipelines: dict, steps: int, repeat: int) -> dict:
    from django.conf import settings
    from django.db import connection

    from pipelines.models import StepRun

    modes = [
        ("MLOPS_ISOLATE_RUNS=1 (fork)", True, False),
        ("  with the proposed fixes", True, True),
        ("MLOPS_ISOLATE_RUNS=0 (inline)", False, False),
    ]
    # One inline run of each first: this process then has MLflow's store, SQLAlchemy's
    # compiled statements and the git run context cached, for every mode alike.
    settings.MLOPS_ISOLATE_RUNS = False
    timed_run(pipelines["short"]), timed_run(pipelines["long"])
    results = {}
    for label, isolated, fixes in modes:
        settings.MLOPS_ISOLATE_RUNS = isolated
        undo = install_worker_fixes() if fixes else None
        try:
            timed_run(pipelines["short"]), timed_run(pipelines["long"])  # warm
            t1, tn = [], []
            for _ in range(repeat):
                t1.append(timed_run(pipelines["short"]))
                tn.append(timed_run(pipelines["long"]))
        finally:
            if undo:
                undo()
        results[label] = {"t1": t1, "tn": tn, "isolated": isolated, "fixes": fixes}

    # One instrumented in-process run of each: where a run's and a step's time goes.
    settings.MLOPS_ISOLATE_RUNS = False
    probes = Probes()
    saved = install_probes(probes)
    breakdown = {}
    try:
        for key in ("short", "long"):
            probes.reset()
            with connection.execute_wrapper(probes.query_counter()):
                wall = timed_run(pipelines[key])
            breakdown[key] = {
                "wall": wall,
                "totals": dict(probes.totals),
                "counts": dict(probes.counts),
            }
    finally:
        restore_probes(saved)
    last = pipelines["long"].runs.order_by("-pk").first()
    step_rows = list(
        StepRun.objects.filter(run=last).order_by("order").values_list("started_at", "finished_at")
    )
    in_step = [seconds(b - a) for a, b in step_rows[1:]]
    gaps = [seconds(b[0] - a[1]) for a, b in zip(step_rows[1:], step_rows[2:], strict=False)]
    return {
        "timings": results,
        "breakdown": breakdown,
        "noop_in_step": in_step,
        "noop_gap": gaps,
        "steps": steps,
    }


def bench_mlflow_store() -> dict:
    """What a freshly forked engine pays to open the MLflow store that the worker never
    opened (the store is cached per process, so only a fresh process pays it)."""
    from django.conf import settings
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    times = []
    for _ in range(3):
        start = time.perf_counter()
        store = SqlAlchemyStore(settings.MLFLOW_TRACKING_URI, str(settings.MLFLOW_ARTIFACT_ROOT))
        times.append(time.perf_counter() - start)
        store.engine.dispose()
    return {"open_store": min(times)}


def bench_fork() -> float:
    """Fork + waitpid of a child that exits at once, from this (Django + MLflow) process."""
    times = []
    for _ in range(20):
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --------------------------------------------------------------------------- report


def print_broker_report(results: list[dict], args) -> None:
    print()
    print("=" * 100)
    print(
        f"Queue: {args.runs} tasks/runs per burst, {WORKERS} workers, database {args.db}, "
        f"{os.cpu_count()} CPUs"
    )
    print("=" * 100)
    head = (
        f"{'broker':<11} {'bare/s':>7} {'runs/s':>7} {'ratio':>6} "
        f"{'burst lat p50':>13} {'p95':>7} {'idle lat p50':>12} {'p95':>6} "
        f"{'busy/run':>8} {'others':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        bare, burst, idle = r["bare"], r["burst"], r["idle"]
        busy = burst["phases"]["running->task done (worker busy)"]
        idle_lat = idle["latency"] if idle else []
        nan = float("nan")
        others = (burst["cpu"] or {}).get("others", nan)
        print(
            f"{r['label']:<11} {bare['per_s']:>7.1f} {burst['per_s']:>7.2f} "
            f"{burst['per_s'] / bare['per_s']:>6.3f} "
            f"{pct(burst['latency'], 50):>12.2f}s {pct(burst['latency'], 95):>6.2f}s "
            f"{(pct(idle_lat, 50) if idle_lat else nan):>11.3f}s "
            f"{(pct(idle_lat, 95) if idle_lat else nan):>5.2f}s "
            f"{(statistics.median(busy) * 1000 if busy else nan):>6.0f}ms "
            f"{others * 100:>5.0f}%"
        )
    print(
        "  bare/s: trivial tasks per s, first enqueue -> all results saved. runs/s: first trigger"
        " -> last finished_at.\n  lat: started_at - created_at (burst: all at once, so mostly"
        " queueing behind earlier runs; idle: one at a time).\n  busy/run: median worker time"
        " per run (claim -> task done). others: CPU share of the machine used by other"
        " processes\n  during the burst (noise). +fixes: the cluster runs with the proposed"
        " supervisor changes patched in (--what-if)."
    )
    for r in results:
        bare, burst, idle = r["bare"], r["burst"], r["idle"]
        print(f"\n[{r['label']}] details")
        print(
            f"  bare: enqueue {args.runs} in {bare['enqueue_s'] * 1000:.0f} ms, all saved after "
            f"{bare['elapsed_s']:.2f} s, failed {bare['failed']}, enqueue->done "
            f"{dist(bare['queue_to_done'])}; {fmt_cpu(bare['cpu'])}"
        )
        print(
            f"  runs: trigger {args.runs} in {burst['trigger_s']:.2f} s "
            f"({burst['trigger_s'] / args.runs * 1000:.1f} ms each), last finished "
            f"{burst['span_s']:.2f} s, observed done {burst['observed_s']:.2f} s, "
            f"statuses {dict(burst['statuses'])}; {fmt_cpu(burst['cpu'])}"
        )
        for message, count in burst["errors"].items():
            print(f"    {count} x {message[:200]}")
        problems = ", ".join(f"{n} x {kind}" for kind, n in r["problems"].items()) or "none"
        print(f"  cluster log problems: {problems}")
        for name, part in (("burst", burst), ("idle", idle)):
            if not part:
                continue
            print(f"  {name} run phases (p50 / p95 / max ms):")
            for label, values in part["phases"].items():
                print(f"    {label:<50} {dist(values)}")


def print_engine_report(engine: dict, fork_s: float, mlflow: dict) -> None:
    steps = engine["steps"]
    print()
    print("=" * 100)
    print(
        f"Engine fixed cost per step: 1 sleep + {steps - 1} noop vs 1 sleep, start_run(wait=True)"
    )
    print("=" * 100)
    for label, timing in engine["timings"].items():
        t1, tn = statistics.median(timing["t1"]), statistics.median(timing["tn"])
        per_step = (tn - t1) / (steps - 1)
        per_step_min = (min(timing["tn"]) - min(timing["t1"])) / (steps - 1)
        print(
            f"  {label:<30} t1 {t1 * 1000:6.1f} ms  t{steps} {tn * 1000:7.1f} ms  "
            f"per step {per_step * 1000:5.2f} ms (medians of {len(timing['t1'])}); "
            f"minimums {min(timing['t1']) * 1000:.0f} / {min(timing['tn']) * 1000:.0f} ms, "
            f"{per_step_min * 1000:.2f} ms/step"
        )
    medians = {label: statistics.median(t["t1"]) for label, t in engine["timings"].items()}
    fork, fixed, inline = list(medians.values())
    print(
        f"  fork isolation adds {(fork - inline) * 1000:.0f} ms per run here, "
        f"{(fixed - inline) * 1000:.0f} ms with the fixes (bare fork+exit+wait of this process "
        f"{fork_s * 1000:.1f} ms; the supervisor polls every 50 ms); opening a fresh MLflow "
        f"SqlAlchemyStore {mlflow['open_store'] * 1000:.0f} ms).\n  This process is warm "
        "(MLflow store, compiled SQL, git context); a worker's child starts colder: see the "
        "'running->1st step' phase above."
    )
    in_step, gaps = engine["noop_in_step"], engine["noop_gap"]
    if in_step:
        print(f"  noop StepRun started->finished {dist(in_step)}; between steps {dist(gaps)}")
    for key, part in engine["breakdown"].items():
        n = 1 if key == "short" else steps
        print(f"  instrumented inline run, {n} step(s): wall {part['wall'] * 1000:.1f} ms")
        for label in sorted(part["totals"], key=lambda k: (k.startswith("  SQL"), k)):
            total, count = part["totals"][label], part["counts"][label]
            print(
                f"    {label:<42} {count:5d} calls {total * 1000:8.1f} ms "
                f"({total / n * 1000:6.2f} ms/step)"
            )


def print_targets(results: list[dict], engine: dict | None) -> None:
    print()
    print("=" * 100)

    def verdict(ok: bool) -> str:
        return "OK" if ok else "MISSED"

    for r in results:
        ratio = r["burst"]["per_s"] / r["bare"]["per_s"]
        print(
            f"target {r['label']}: runs/s / bare tasks/s = {r['burst']['per_s']:.2f} / "
            f"{r['bare']['per_s']:.1f} = {ratio:.3f} (>= {TARGET_RATIO}) "
            f"{verdict(ratio >= TARGET_RATIO)}"
        )
    if engine and results:
        # The best case: no queue, no fork, the fastest inline 1-step run of this process.
        floor = min(engine["timings"]["MLOPS_ISOLATE_RUNS=0 (inline)"]["t1"])
        ceilings = ", ".join(
            f"{r['label']} {WORKERS / floor / r['bare']['per_s']:.2f}" for r in results
        )
        print(
            f"  ceiling: {WORKERS} workers / fastest inline 1-step run ({floor * 1000:.0f} ms) = "
            f"{WORKERS / floor:.0f} runs/s, so even with no queue, fork or worker cost the "
            f"ratio is at most: {ceilings}"
        )
    for r in results:
        if not r["label"].startswith("redis"):
            continue
        idle = r["idle"]["latency"] if r["idle"] else []
        burst = pct(r["burst"]["latency"], 50)
        print(
            f"target {r['label']}: p50 trigger->running latency, burst of {r['burst']['n']} = "
            f"{burst:.3f} s (< {TARGET_LATENCY} s) {verdict(burst < TARGET_LATENCY)}"
        )
        if idle:
            p50 = pct(idle, 50)
            print(
                f"target {r['label']}: p50 trigger->running latency, idle workers = {p50:.3f} s "
                f"(< {TARGET_LATENCY} s) {verdict(p50 < TARGET_LATENCY)}"
            )
    if engine:
        steps = engine["steps"]
        for timing in engine["timings"].values():
            t1, tn = statistics.median(timing["t1"]), statistics.median(timing["tn"])
            per = (tn - t1) / (steps - 1) * 1000
            mode = f"MLOPS_ISOLATE_RUNS={int(timing['isolated'])}"
            if timing["fixes"]:
                mode += " with the fixes"
            print(
                f"target engine per-step overhead, {mode} = {per:.2f} ms "
                f"(< {TARGET_STEP_MS:.0f} ms) {verdict(per < TARGET_STEP_MS)}"
            )


# --------------------------------------------------------------------------- main


def main() -> int:
    args = parse_args()
    if args.steps < 2:
        raise SystemExit("--steps must be at least 2")
    folder = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    q_name = f"bench{secrets.token_hex(4)}"
    mariadb = None
    if args.db == "sqlite":
        database_url = f"sqlite:///{folder / 'bench.sqlite3'}"
    else:
        mariadb = MariaDB("mysql://root@127.0.0.1:3306" if args.db == "mariadb" else args.db)
        mariadb.create()
        database_url = mariadb.url
    configure_environment(folder, database_url, q_name)
    # A SIGTERM to this script unwinds through the finally blocks that stop the clusters.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    redis_url = None
    try:
        print(f"folder {folder}; Q_NAME {q_name}; DATABASE_URL {database_url}", flush=True)
        setup_django()
        from experiments import tracking

        pipelines = make_pipelines(args.steps, args.runs)
        # Migrate the fresh MLflow store once, here, not in racing workers.
        for key in ("one", "long", "short"):
            tracking.ensure_experiment(pipelines[key].experiment_name)

        results = []
        brokers = {}
        for broker in (b.strip() for b in args.brokers.split(",") if b.strip()):
            if broker == "orm":
                brokers["orm"] = "orm"
            elif broker == "redis":
                redis_url = redis_database(args.redis, q_name)
                if redis_url is None:
                    print(f"[redis] {args.redis} is not reachable: skipped")
                    continue
                print(f"[redis] using {redis_url}", flush=True)
                brokers["redis"] = redis_url
        # With --what-if each broker runs as is, then at once with the fixes, so the two
        # see the most similar load from other processes.
        for label, broker in brokers.items():
            for fixes in (False, True) if args.what_if else (False,):
                name = f"{label}+fixes" if fixes else label
                results.append(bench_broker(name, broker, pipelines, args, folder, fixes))
        if results:
            print_broker_report(results, args)

        engine = None
        if not args.skip_engine:
            print("\n[engine] timing start_run(wait=True) in this process", flush=True)
            engine = bench_engine(pipelines, args.steps, args.repeat)
            print_engine_report(engine, bench_fork(), bench_mlflow_store())
        print_targets(results, engine)
    finally:
        if redis_url:
            try:
                import redis

                client = redis.Redis.from_url(redis_url)
                keys = list(client.scan_iter(f"django_q:{q_name}:*"))
                if keys:
                    client.delete(*keys)
            except Exception as exc:  # a report must not hide the results
                print(f"could not clean Redis: {exc}")
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        if mariadb:
            mariadb.drop()
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
