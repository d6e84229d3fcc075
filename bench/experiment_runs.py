"""How fast do the experiment pages answer for an experiment of 5,000 runs?

    .venv/bin/python bench/experiment_runs.py [--runs 5000] [--requests 20] [--profile] [--keep]

Seeds a temporary MLflow SQLite store with one experiment of --runs runs (5 params,
4 metrics and the mlops.* tags the engine sets, each run linked to a PipelineRun row of a
temporary Django database) and two small experiments, then times through Django's test
client as a logged-in superuser: the experiment's runs page (whole page, HTMX fragment,
sorted by a metric, filtered by a metric condition, page 41) and the experiments list.
For each it prints the status, the Django query count of one request, p50 and p95 over
--requests requests after 2 warm-up requests, p95 over the 500 ms target and over the
baseline measured in the same run (the login page: a request with no data behind it).
--profile prints a cProfile of the slowest page. See bench/README.md.
"""

import argparse
import cProfile
import gc
import os
import pstats
import random
import sys
import time
import uuid

from common import (
    configure_environment,
    measure_page,
    page_table_header,
    page_table_row,
    setup_django,
    temporary_folder,
    worst_ratio_line,
)

TARGET_MS = 500.0
METRICS = ("accuracy", "f1", "precision", "recall")
ESTIMATORS = ("random_forest", "logistic", "gradient_boosting", "svm")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="cProfile the slowest page")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args()


def seed(run_count: int) -> str:
    """The pipeline, its runs in both stores, and two small experiments; the big one's id."""
    from pipelines.models import Pipeline, PipelineRun

    pipeline = Pipeline.objects.create(name="bench-runs")
    pipeline_runs = PipelineRun.objects.bulk_create(
        (PipelineRun(pipeline=pipeline, status="succeeded") for _ in range(run_count)),
        batch_size=2000,
    )
    experiment_id = _seed_mlflow(pipeline, [run.pk for run in pipeline_runs])
    for name in ("pipeline/small-a", "pipeline/small-b"):
        small = Pipeline.objects.create(name=name.removeprefix("pipeline/"))
        runs = PipelineRun.objects.bulk_create(
            PipelineRun(pipeline=small, status="succeeded") for _ in range(3)
        )
        _seed_mlflow(small, [run.pk for run in runs])
    return experiment_id


def _seed_mlflow(pipeline, run_pks: list[int]) -> str:
    """One run through MlflowClient, then copies of its rows with other values.

    The client takes about 45 ms a run (three store calls, each its own transaction),
    about 4 minutes for 5,000; copying the rows MLflow itself wrote keeps every column as
    MLflow fills it, in one transaction.
    """
    from mlflow.entities import Metric, Param
    from mlflow.store.tracking.dbmodels import models
    from sqlalchemy import create_engine, insert, select

    from experiments import tracking

    client = tracking.configure()
    experiment_id = tracking.ensure_experiment(pipeline.experiment_name)
    rng = random.Random(7)
    started = int(time.time() * 1000) - len(run_pks) * 60_000
    template = client.create_run(
        experiment_id, start_time=started, run_name=f"{pipeline.name} #{run_pks[0]}"
    )
    template_id = template.info.run_id
    client.log_batch(
        template_id,
        metrics=[Metric(key, rng.random(), started, 0) for key in METRICS],
        params=[Param(key, str(value)) for key, value in _params(rng).items()],
    )
    for key, value in _tags(pipeline, run_pks[0]).items():
        client.set_tag(template_id, key, value)
    client.set_terminated(template_id, "FINISHED", end_time=started + 70_000)

    engine = create_engine(os.environ["MLFLOW_TRACKING_URI"])
    tables = {
        "runs": models.SqlRun.__table__,
        "params": models.SqlParam.__table__,
        "tags": models.SqlTag.__table__,
        "metrics": models.SqlMetric.__table__,
        "latest_metrics": models.SqlLatestMetric.__table__,
    }
    with engine.begin() as connection:
        rows = {
            name: [
                dict(row._mapping)
                for row in connection.execute(select(table).where(table.c.run_uuid == template_id))
            ]
            for name, table in tables.items()
        }
        copies = {name: [] for name in tables}
        for index, pk in enumerate(run_pks[1:], start=1):
            run_id = uuid.uuid4().hex
            start = started + index * 60_000
            values = {
                "runs": {},
                "params": _params(rng),
                "tags": _tags(pipeline, pk) | {"mlflow.runName": f"{pipeline.name} #{pk}"},
                "metrics": {key: rng.random() for key in METRICS},
            }
            values["latest_metrics"] = values["metrics"]
            for name, template_rows in rows.items():
                for row in template_rows:
                    copy = {**row, "run_uuid": run_id}
                    if name == "runs":
                        copy.update(
                            name=f"{pipeline.name} #{pk}",
                            start_time=start,
                            end_time=start + 70_000,
                            artifact_uri=row["artifact_uri"].replace(template_id, run_id),
                        )
                    elif row["key"] in values[name]:
                        copy["value"] = values[name][row["key"]]
                    if "timestamp" in copy:
                        copy["timestamp"] = start
                    copies[name].append(copy)
        for name, table in tables.items():
            connection.execute(insert(table), copies[name])
    engine.dispose()
    return experiment_id


def _params(rng: random.Random) -> dict:
    return {
        "2.train_sklearn.estimator": rng.choice(ESTIMATORS),
        "2.train_sklearn.task": "classification",
        "2.train_sklearn.target": "label",
        "2.train_sklearn.hyperparams.n_estimators": rng.choice((50, 100, 200, 400)),
        "2.train_sklearn.hyperparams.max_depth": rng.randint(2, 16),
    }


def _tags(pipeline, pk: int) -> dict:
    return {
        "mlops.pipeline_id": str(pipeline.pk),
        "mlops.pipeline": pipeline.name,
        "mlops.run_id": str(pk),
        "mlops.trigger": "manual",
    }


def later_page_url(experiment_id: str, page: int) -> str:
    """The URL of page `page` of the runs, following the page tokens the pages link."""
    from urllib.parse import urlencode

    from experiments import services

    token = None
    for _ in range(page - 1):
        token = services.experiment_runs(experiment_id, page_token=token).next_token
    return f"/experiments/{experiment_id}/?" + urlencode({"page_token": token, "page": page})


def check_runs_page(client, experiment_id: str, run_count: int) -> None:
    """Stop unless MLflow reads the seeded runs back: the page shows 25 linked runs."""
    from experiments import tracking

    html = client.get(f"/experiments/{experiment_id}/").content.decode()
    found = tracking.count_runs([experiment_id])[experiment_id]
    if found != run_count or html.count('href="/runs/') < 25:
        sys.exit(f"seeding failed: MLflow counts {found} runs of {run_count}")


def bench_pages(args) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    started = time.perf_counter()
    experiment_id = seed(args.runs)
    print(f"seeded {args.runs:,} MLflow runs in {time.perf_counter() - started:.1f} s")
    user = get_user_model().objects.create_superuser("bench", "", "bench")
    client = Client()
    client.force_login(user)
    check_runs_page(client, experiment_id, args.runs)
    # Seeding's garbage would make the first full collections in the timed requests
    # slower than a serving process's.
    gc.collect()
    runs_url = f"/experiments/{experiment_id}/"
    later = max(2, min(41, args.runs // 25))
    pages = [
        ("runs page", runs_url, {}),
        ("runs fragment (HTMX)", runs_url, {"HX-Request": "true"}),
        ("sorted by accuracy", runs_url + "?sort=metrics.accuracy&desc=1", {}),
        ("filtered accuracy > 0.9", runs_url + "?filter=accuracy+%3E+0.9", {}),
        (f"page {later}", later_page_url(experiment_id, later), {}),
        ("experiments list", "/experiments/", {}),
    ]
    _, baseline, _, _ = measure_page(Client(), "/accounts/login/", args.requests, warmups=2)
    print(f"baseline (login page) p95 {baseline:.1f} ms")
    print(page_table_header())
    worst, slowest = 0.0, None
    for name, url, headers in pages:
        p50, p95, status, queries = measure_page(client, url, args.requests, warmups=2, **headers)
        if p95 / TARGET_MS > worst:
            worst, slowest = p95 / TARGET_MS, (name, url, headers)
        print(page_table_row(name, status, queries, p50, p95, TARGET_MS, baseline))
    print(worst_ratio_line(worst))
    if args.profile:
        name, url, headers = slowest
        print(f"\ncProfile of {name}:")
        profiler = cProfile.Profile()
        profiler.runcall(client.get, url, headers=headers)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main():
    args = parse_args()
    with temporary_folder("mlops-bench-experiments-", args.keep) as folder:
        configure_environment(folder, MLFLOW_ARTIFACT_ROOT=str(folder / "artifacts"))
        setup_django()
        bench_pages(args)


if __name__ == "__main__":
    main()
