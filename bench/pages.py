"""How fast do the analyst pages answer with 1,000 pipelines and 20,000 runs?

    .venv/bin/python bench/pages.py [--pipelines 1000] [--runs 20000] [--requests 30] [--keep]

Seeds a temporary SQLite database (pipelines of 8 steps, runs with 8 step runs and a
log each), then times each page through Django's test client as a logged-in superuser:
p50 and p95 over --requests requests after 3 warm-up requests, and the query count of
one request. The baseline is the login page measured in the same run: the cost of a
request through the middleware and template engine with no data behind it.
See bench/README.md.
"""

import argparse
import time
from datetime import timedelta

from common import (
    configure_environment,
    measure_page,
    page_table_header,
    page_table_row,
    setup_django,
    temporary_folder,
    worst_ratio_line,
)

STEPS = [
    ("csv", {"dataset": "sales"}),
    ("drop_na", {}),
    ("drop_duplicates", {}),
    ("filter_rows", {"conditions": [{"column": "amount", "op": ">", "value": 0}]}),
    ("sort", {"by": ["amount"]}),
    ("limit", {"rows": 10000}),
    ("train_sklearn", {"task": "classification", "estimator": "logistic", "target": "y"}),
    ("predict", {}),
]
LOG_LINES = 40
# Targets of the issue: p95 of every page, and of the progress partial.
PAGE_TARGET_MS, PARTIAL_TARGET_MS = 150.0, 30.0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args()


def seed(pipeline_count: int, run_count: int):
    """Pipelines of 8 steps, and runs spread over them, newest last; returns a run and pipeline."""
    from django.utils import timezone

    from pipelines.models import Pipeline, PipelineRun, PipelineStep, StepRun

    pipelines = Pipeline.objects.bulk_create(
        Pipeline(name=f"pipeline-{index:04d}", description=f"Benchmark pipeline {index}")
        for index in range(pipeline_count)
    )
    PipelineStep.objects.bulk_create(
        PipelineStep(pipeline=pipeline, order=order, step_type=slug, params=params)
        for pipeline in pipelines
        for order, (slug, params) in enumerate(STEPS, start=1)
    )
    start = timezone.now() - timedelta(days=30)
    definition = {"steps": [pipelines[0].steps.first().definition()]}
    log = "".join(f"[2026-01-01 00:00:{i % 60:02d}] line {i}\n" for i in range(LOG_LINES))
    runs = PipelineRun.objects.bulk_create(
        (
            PipelineRun(
                pipeline=pipelines[index % pipeline_count],
                status="succeeded",
                definition=definition,
                logs=log,
                metrics={"accuracy": 0.9},
                started_at=start + timedelta(minutes=index),
                finished_at=start + timedelta(minutes=index, seconds=70),
            )
            for index in range(run_count)
        ),
        batch_size=2000,
    )
    StepRun.objects.bulk_create(
        (
            StepRun(run=run, order=order, step_type=slug, status="succeeded", rows_out=1000)
            for run in runs
            for order, (slug, _) in enumerate(STEPS, start=1)
        ),
        batch_size=5000,
    )
    running = runs[-1]
    PipelineRun.objects.filter(pk=running.pk).update(status="running", finished_at=None)
    return running, pipelines[0]


def bench_pages(args):
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    started = time.perf_counter()
    running, pipeline = seed(args.pipelines, args.runs)
    print(
        f"seeded {args.pipelines:,} pipelines and {args.runs:,} runs "
        f"in {time.perf_counter() - started:.1f} s"
    )
    user = get_user_model().objects.create_superuser("bench", "", "bench")
    client = Client()
    client.force_login(user)
    _, baseline, _, _ = measure_page(Client(), reverse("login"), args.requests)
    pages = [
        ("pipelines list", reverse("pipelines:list"), PAGE_TARGET_MS),
        ("pipelines list, page 20", reverse("pipelines:list") + "?page=20", PAGE_TARGET_MS),
        ("pipelines search", reverse("pipelines:list") + "?q=pipeline-09", PAGE_TARGET_MS),
        ("runs list", reverse("runs:list"), PAGE_TARGET_MS),
        ("runs list, page 100", reverse("runs:list") + "?page=100", PAGE_TARGET_MS),
        ("pipeline editor", reverse("pipelines:detail", args=[pipeline.pk]), PAGE_TARGET_MS),
        ("run page", reverse("runs:detail", args=[running.pk]), PAGE_TARGET_MS),
        (
            "progress partial",
            reverse("runs:progress", args=[running.pk]) + f"?after={len(running.logs)}",
            PARTIAL_TARGET_MS,
        ),
    ]
    print(f"baseline (login page) p95 {baseline:.1f} ms")
    print(page_table_header())
    worst = 0.0
    for name, url, target in pages:
        p50, p95, status, queries = measure_page(client, url, args.requests)
        worst = max(worst, p95 / target)
        print(page_table_row(name, status, queries, p50, p95, target, baseline))
    print(worst_ratio_line(worst))


def main():
    args = parse_args()
    with temporary_folder("mlops-bench-pages-", args.keep) as folder:
        configure_environment(folder)
        setup_django()
        bench_pages(args)


if __name__ == "__main__":
    main()
