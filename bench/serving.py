"""How does our prediction endpoint compare with `mlflow models serve` on the same model?

    .venv/bin/python bench/serving.py [--requests 400] [--large-requests 100] [--workers 2]
        [--rounds 4] [--keep]

Builds the demo breast-cancer classifier as the demo does (its pipeline, ending in the
register_model step) in a temporary project store, then serves version 1 two ways, each
with `--workers` processes on loopback and the same number of request threads per process:
our endpoint under gunicorn (gthread workers) and `mlflow models serve --env-manager local`
(uvicorn, which predicts in asyncio's default thread pool). Both get the same body
(MLflow's `dataframe_split`), 1 and 1,000 records per request, from 1 then 8 concurrent
clients. See bench/README.md.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from common import configure_environment

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
MODEL = "breast-cancer-classifier"
CLIENTS = 8
TARGET_OVERHEAD_MS = 5.0
TARGET_RATIO = 1.0  # ours over mlflow's, p50 and p99 of every case
# uvicorn runs mlflow's predict with asyncio.to_thread: the default executor's threads.
THREADS = min(32, (os.cpu_count() or 1) + 4)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="per case, 1-record bodies")
    parser.add_argument("--large-requests", type=int, default=100, help="per case, 1,000 records")
    parser.add_argument("--workers", type=int, default=2, help="server processes of each")
    parser.add_argument(
        "--rounds", type=int, default=4, help="the servers take turns this often per case"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--in-process-only", action="store_true", help="skip the servers: the overhead only"
    )
    parser.add_argument("--repeat", type=int, default=300, help="rounds of the in-process part")
    return parser.parse_args()


def build_demo_model() -> str:
    """The demo classifier trained and registered by its own pipeline; a user's token."""
    import django

    django.setup()
    from django.contrib.auth.models import Permission, User
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from pipelines.demo import seed_demo
    from pipelines.models import Pipeline
    from pipelines.runs import start_run

    call_command("migrate", verbosity=0)
    seed_demo()
    run = start_run(Pipeline.objects.get(name=MODEL), trigger="command", wait=True)
    if run.status != "succeeded":
        raise SystemExit(f"the demo run failed: {run.error_message}\n{run.logs}")
    user = User.objects.create_user("bench")
    user.user_permissions.add(Permission.objects.get(codename="predict"))
    return Token.objects.create(user=user).key


def bodies() -> dict[int, bytes]:
    """1 and 1,000 records of the demo data (features only) as `dataframe_split`."""
    from sklearn import datasets

    frame = datasets.load_breast_cancer(as_frame=True).frame.drop(columns="target")
    large = frame.sample(1000, replace=True, random_state=0)
    split = {1: frame.head(1), 1000: large}
    return {
        rows: json.dumps(
            {"dataframe_split": {"columns": list(part.columns), "data": part.values.tolist()}}
        ).encode()
        for rows, part in split.items()
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_servers(folder: Path, workers: int) -> dict:
    ours, theirs = free_port(), free_port()
    gunicorn = [
        str(VENV_BIN / "gunicorn"),
        "mlops_site.wsgi",
        f"--bind=127.0.0.1:{ours}",
        f"--workers={workers}",
        # Threads as many as mlflow's worker predicts in, so both take the 8 clients alike.
        "--worker-class=gthread",
        f"--threads={THREADS}",
        "--log-level=warning",
    ]
    mlflow = [
        str(VENV_BIN / "mlflow"),
        "models",
        "serve",
        f"--model-uri=models:/{MODEL}/1",
        "--env-manager=local",
        "--host=127.0.0.1",
        f"--port={theirs}",
        f"--workers={workers}",
    ]
    servers = {}
    for name, command, port in [("ours", gunicorn, ours), ("mlflow", mlflow, theirs)]:
        log = open(folder / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            # mlflow starts `uvicorn` by name, found on PATH: the venv's, as if activated.
            env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        servers[name] = {"process": process, "port": port, "log": folder / f"{name}.log"}
    return servers


def stop_servers(servers: dict) -> None:
    for server in servers.values():
        process = server["process"]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # its own session: the workers go too
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def request(port: int, path: str, body: bytes, token: str) -> tuple[int, bytes]:
    """One POST on a new connection, to both servers alike (a client that keeps its
    connection would save the same handshake on both)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json", "Authorization": f"Token {token}"}
    try:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


PATHS = {"ours": f"/api/models/{MODEL}@champion/predict", "mlflow": "/invocations"}


def wait_until_serving(servers: dict, body: bytes, token: str) -> None:
    deadline = time.monotonic() + 180
    for name, server in servers.items():
        while True:
            if server["process"].poll() is not None:
                raise SystemExit(f"{name} exited:\n{server['log'].read_text()[-3000:]}")
            try:
                status, content = request(server["port"], PATHS[name], body, token)
                if status == 200:
                    break
                raise SystemExit(f"{name} answered {status}: {content[:500]!r}")
            except OSError:
                if time.monotonic() > deadline:
                    log = server["log"].read_text()
                    raise SystemExit(f"{name} did not start:\n{log}") from None
                time.sleep(0.5)


def check_same_predictions(servers: dict, body: bytes, token: str) -> None:
    """Both servers answer the same classes for the 1,000 records, or the bench stops."""
    answers = {
        name: json.loads(request(server["port"], PATHS[name], body, token)[1])
        for name, server in servers.items()
    }
    ours = [record["prediction"] for record in answers["ours"]["predictions"]]
    if ours != answers["mlflow"]["predictions"]:
        raise SystemExit("the two servers predict different classes for the same records")


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def timed(port: int, path: str, body: bytes, token: str, requests: int, clients: int) -> list:
    """Latencies (ms) of `requests` requests from each of `clients` threads."""
    latencies, failures = [], []

    def client():
        for _ in range(requests):
            start = time.perf_counter()
            status, content = request(port, path, body, token)
            latencies.append((time.perf_counter() - start) * 1000)
            if status != 200:
                failures.append((status, content[:300]))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"failed requests: {failures[:3]}")
    return latencies


def percentile(values: list, share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def compare_servers(servers: dict, payloads: dict, token: str, args) -> list[float]:
    """p50 and p99 of each case for both servers, and their ratios; the ratios."""
    header = f"{'case':<26}{'ours p50':>9}{'p99':>9}{'mlflow p50':>11}{'p99':>9}"
    print(f"\n{header}{'p50 ratio':>11}{'p99 ratio':>11}")
    ratios = []
    for rows, body in payloads.items():
        requests = args.requests if rows == 1 else args.large_requests
        for clients in (1, CLIENTS):
            result = {"mlflow": [], "ours": []}
            for name in result:  # warm every worker thread: imports, caches, connections
                port, path = servers[name]["port"], PATHS[name]
                timed(port, path, body, token, max(3, THREADS // clients * args.workers), clients)
            # The servers take turns, so a change in the machine's load falls on both.
            each = max(1, requests // clients // args.rounds)
            for _ in range(args.rounds):
                for name in result:
                    port, path = servers[name]["port"], PATHS[name]
                    result[name] += timed(port, path, body, token, each, clients)
            ours, theirs = result["ours"], result["mlflow"]
            p50, p99 = (percentile(ours, 0.5), percentile(ours, 0.99))
            base50, base99 = (percentile(theirs, 0.5), percentile(theirs, 0.99))
            ratios += [p50 / base50, p99 / base99]
            case = f"{rows:,} record{'s' * (rows > 1)}, {clients} client{'s' * (clients > 1)}"
            print(
                f"{case:<26}{p50:>7.1f}ms{p99:>7.1f}ms{base50:>9.1f}ms{base99:>7.1f}ms"
                f"{p50 / base50:>11.2f}{p99 / base99:>11.2f}"
            )
    worst = max(ratios)
    verdict = "OK" if worst <= TARGET_RATIO else "MISSED"
    print(f"worst ours/mlflow ratio: {worst:.2f} (target <= {TARGET_RATIO:g}) {verdict}")
    return ratios


def in_process_overhead(payloads: dict, token: str, repeat: int = 300) -> None:
    """Our endpoint in this process (Django's test client: auth, throttle, parsing,
    checks, counting; no socket; the connection kept between requests, as the server's
    persistent connections do) against a bare model.predict on the same record."""
    import pandas as pd
    from rest_framework.authentication import TokenAuthentication
    from rest_framework.test import APIClient

    from experiments import serving, tracking
    from experiments.throttling import PredictRateThrottle
    from pipelines.steps.prediction import PredictParams, model_outputs

    model = tracking.load_model(f"models:/{MODEL}/1")
    split = json.loads(payloads[1])["dataframe_split"]
    X = pd.DataFrame(split["data"], columns=split["columns"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}", HTTP_HOST="127.0.0.1")
    body = json.loads(payloads[1])
    columns = serving.load(
        MODEL, 1, tracking.find_model_version_by_alias(MODEL, "champion")["source"]
    )
    path = PATHS["ours"]

    def access_checks():
        """What DRF does before the view: the token, the permission, the throttle."""
        user, _ = TokenAuthentication().authenticate_credentials(token)
        serving.may_predict(user, MODEL)
        request = SimpleNamespace(user=user, META={"REMOTE_ADDR": "127.0.0.1"})
        PredictRateThrottle().allow_request(request, None)

    def endpoint():
        response = client.post(path, payloads[1], content_type="application/json")
        assert response.status_code == 200, response.content

    cases = {
        "model.predict": lambda: model.predict(X),
        "model_outputs (class and probabilities)": lambda: model_outputs(model, X, PredictParams()),
        "resolve the alias (one registry read)": lambda: tracking.find_model_version_by_alias(
            MODEL, "champion"
        ),
        "check the record, build the frame": lambda: serving.records_frame(body, columns.columns),
        "token, permission, throttle (3 queries)": access_checks,
        "count(): one ServingStat upsert": lambda: serving.count(MODEL, 1, 1, 1.0, False),
        "endpoint, in process": endpoint,
    }
    # Round-robin, one call of each case per round, so a change in the machine's load
    # during the measurement falls on every case alike.
    times = {name: [] for name in cases}
    for round_ in range(repeat + 10):
        for name, call in cases.items():
            start = time.perf_counter()
            call()
            if round_ >= 10:  # the first rounds warm up
                times[name].append((time.perf_counter() - start) * 1000)
    p50 = {name: statistics.median(values) for name, values in times.items()}
    print("\nin process, 1 record, p50 of", repeat)
    for name, value in p50.items():
        print(f"  {name:<42}{value:>8.2f} ms")
    overhead = p50["endpoint, in process"] - p50["model.predict"]
    beyond_outputs = p50["endpoint, in process"] - p50["model_outputs (class and probabilities)"]
    verdict = "OK" if overhead < TARGET_OVERHEAD_MS else "MISSED"
    print(
        f"endpoint - model.predict: {overhead:.2f} ms (target < {TARGET_OVERHEAD_MS:g} ms) {verdict}"
    )
    print(f"endpoint - model_outputs: {beyond_outputs:.2f} ms (the API's own work)")


def main() -> None:
    args = parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    configure_environment(
        folder,
        MLFLOW_ARTIFACT_ROOT=str(folder / "mlartifacts"),
        MLOPS_ISOLATE_RUNS="0",
        MLOPS_INSPECT_IN_BACKGROUND="0",
        # The bench measures serving, not the throttle's refusals.
        MLOPS_PREDICT_RATE="100000000/minute",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
    )
    servers = {}
    try:
        print(f"training and registering the demo classifier in {folder} ...")
        token = build_demo_model()
        payloads = bodies()
        if not args.in_process_only:
            servers = start_servers(folder, args.workers)
            wait_until_serving(servers, payloads[1], token)
            check_same_predictions(servers, payloads[1000], token)
            print(
                f"servers: ours = gunicorn, {args.workers} gthread workers x {THREADS} threads; "
                f"mlflow = mlflow models serve --env-manager local, {args.workers} uvicorn "
                f"workers x {THREADS} threads; {os.cpu_count()} CPUs, "
                f"load average {load_average()}"
            )
            compare_servers(servers, payloads, token, args)
            print(f"load average {load_average()}")
        in_process_overhead(payloads, token, args.repeat)
        print(f"load average {load_average()} (other work on the machine inflates every time)")
    finally:
        stop_servers(servers)
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
