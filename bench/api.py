"""How fast does the REST API answer with 1,000 pipelines and 20,000 runs?

    .venv/bin/python bench/api.py [--pipelines 1000] [--runs 20000] [--requests 30] [--keep]

Seeds a temporary SQLite database (pipelines of 4 steps, runs of mixed statuses spread
over them, a quarter with step runs, and a few datasets, data sources and schedules when
their models exist), then requests /api/v1/ through Django's test client as a superuser
with a knox token: the pipelines, runs (two cursor pages, one pipeline's), step types and
tokens lists, every other paginated GET list the live schema describes (so endpoints are
measured as soon as they exist), and a poll of a run with its ETag (304) against the full
GET of the same run (200). For each it prints the status, the query count of one
request, p50 and p95 over --requests requests after 3 warm-up requests, p95 over its
target and over the baseline measured in the same run (an API 404: token, throttle and
one query, no data). Then each paginated list's query count at 10 and 100 rows a page.
Exits 1 when a p95 misses its target or a query count grows with the page size.
See bench/README.md.
"""

import argparse
import gc
import logging
import sys
import time
from datetime import timedelta

from common import (
    configure_environment,
    measure_page,
    page_table_header,
    page_table_row,
    setup_django,
    temporary_folder,
    verdict,
    worst_ratio_line,
)

STEPS = [
    ("csv", {"dataset": "sales"}),
    ("drop_na", {}),
    ("train_sklearn", {"task": "classification", "estimator": "logistic", "target": "y"}),
    ("predict", {}),
]
# Of every 20 runs: 16 succeeded, 2 failed, 1 cancelled, 1 queued (and one running).
STATUSES = ["succeeded"] * 16 + ["failed"] * 2 + ["cancelled", "queued"]
TOKENS = 60  # the bench user's tokens: more than the tokens list's fixed page of 50
OTHERS = 30  # datasets, data sources, schedules: enough for a page of 10 and a longer one
# Targets of the issue: p95 of every list endpoint, and of a poll of an unchanged run.
LIST_TARGET_MS, POLL_TARGET_MS = 100.0, 10.0
SMALL_PAGE, LARGE_PAGE = 10, 100
WIDTH = 34


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args()


# --- seeding -------------------------------------------------------------------------


def seed(user, pipeline_count: int, run_count: int):
    """Pipelines of 4 steps, runs spread over them (every 4th with step runs), the newest
    with step runs running; returns that run and the pipelines."""
    from django.db.models import F
    from django.utils import timezone

    from pipelines.models import Pipeline, PipelineRun, PipelineStep, StepRun

    pipelines = Pipeline.objects.bulk_create(
        Pipeline(
            name=f"pipeline-{index:04d}", description=f"Benchmark pipeline {index}", owner=user
        )
        for index in range(pipeline_count)
    )
    PipelineStep.objects.bulk_create(
        (
            PipelineStep(pipeline=pipeline, order=order, step_type=slug, params=params)
            for pipeline in pipelines
            for order, (slug, params) in enumerate(STEPS, start=1)
        ),
        batch_size=5000,
    )
    start = timezone.now() - timedelta(minutes=run_count)
    runs = PipelineRun.objects.bulk_create(
        (
            PipelineRun(
                pipeline=pipelines[index % pipeline_count],
                status=STATUSES[index % len(STATUSES)],
                trigger="api" if index % 3 else "schedule",
                started_by=user if index % 3 else None,
                started_at=start + timedelta(minutes=index),
                finished_at=start + timedelta(minutes=index, seconds=70),
                metrics={"accuracy": 0.9},
            )
            for index in range(run_count)
        ),
        batch_size=2000,
    )
    StepRun.objects.bulk_create(
        (
            StepRun(
                run=run,
                order=order,
                step_type=slug,
                status="succeeded",
                started_at=run.started_at,
                finished_at=run.finished_at,
                rows_out=1000,
            )
            for run in runs[::4]
            for order, (slug, _) in enumerate(STEPS, start=1)
        ),
        batch_size=5000,
    )
    # auto_now_add gave every run the same created_at, the cursor's ordering: spread them.
    PipelineRun.objects.update(created_at=F("started_at") - timedelta(seconds=1))
    PipelineRun.objects.filter(status="queued").update(started_at=None, finished_at=None)
    running = runs[(run_count - 1) // 4 * 4]  # the newest run with step runs
    PipelineRun.objects.filter(pk=running.pk).update(status="running", finished_at=None)
    return running, pipelines


def seed_tokens(user) -> str:
    """TOKENS tokens of `user`; the last one, to authenticate with."""
    from pipelines.api.tokens import issue_token

    for index in range(TOKENS):
        _, token = issue_token(user, f"integration-{index:02d}")
    return token


def seed_others(user, pipelines) -> list[str]:
    """OTHERS rows of each model the endpoints being added list, when the model exists;
    the names of the models seeded."""
    from django.apps import apps
    from django.utils import timezone

    now = timezone.now()
    builders = {
        ("datasources", "Dataset"): lambda index: dict(
            name=f"dataset-{index % 20:02d}",  # the list shows each name's latest version
            version=1 + index // 20,
            file=f"datasets/dataset-{index}.csv",
            checksum="0" * 64,
            size_bytes=1000,
            row_count=100,
            column_count=5,
            schema={"a": "int"},
            uploaded_by=user,
        ),
        ("datasources", "DataSource"): lambda index: dict(
            name=f"source-{index:02d}", kind="postgresql", host="db.example", database="sales"
        ),
        ("pipelines", "PipelineSchedule"): lambda index: dict(
            pipeline=pipelines[index],
            interval_seconds=3600,
            next_tick_at=now + timedelta(minutes=index),
        ),
    }
    seeded = []
    for (app_label, name), values in builders.items():
        try:
            model = apps.get_model(app_label, name)
        except LookupError:
            continue  # not in this checkout: its endpoint cannot exist either
        model.objects.bulk_create(model(**values(index)) for index in range(OTHERS))
        seeded.append(name)
    return seeded


# --- the lists -----------------------------------------------------------------------


def listed_endpoints(client) -> dict[str, bool]:
    """The schema's paginated GET lists (no path parameter): path -> takes page_size."""
    response = client.get("/api/v1/schema/", {"format": "json"})
    if response.status_code != 200:
        sys.exit(f"the schema answered {response.status_code}: {response.content[:500]!r}")
    schema = response.json()
    components = schema.get("components", {}).get("schemas", {})
    lists = {}
    for path, operations in schema["paths"].items():
        operation = operations.get("get")
        if "{" in path or operation is None:
            continue
        answer = operation.get("responses", {}).get("200", {})
        body = answer.get("content", {}).get("application/json", {}).get("schema", {})
        body = components.get(body.get("$ref", "").rpartition("/")[2], body)
        if body.get("properties", {}).get("results", {}).get("type") == "array":
            names = {parameter["name"] for parameter in operation.get("parameters", [])}
            lists[path] = "page_size" in names
    return lists


def count_queries(client, url: str) -> tuple[int, int]:
    """The query count of one request of `url`, and the rows its page holds."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    if response.status_code != 200:
        raise ValueError(f"{url} answered {response.status_code}")
    return len(queries), len(response.json()["results"])


def page_size_queries(client, path: str, takes_page_size: bool):
    """(queries, rows) of a short page and of a long one. A list without page_size has a
    fixed page: its last page (fewer rows) against its first."""
    if takes_page_size:
        return (
            count_queries(client, f"{path}?page_size={SMALL_PAGE}"),
            count_queries(client, f"{path}?page_size={LARGE_PAGE}"),
        )
    first = client.get(path).json()
    if "count" not in first or not first.get("results"):
        return None
    last = -(-first["count"] // len(first["results"]))
    return count_queries(client, f"{path}?page={last}"), count_queries(client, path)


def bench_api(args) -> bool:
    """Times the API; True when every target is met."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from pipelines.models import StepRun

    started = time.perf_counter()
    # A superuser, so endpoints that need a permission to read answer too.
    user = get_user_model().objects.create_superuser("bench", "", "bench")
    running, pipelines = seed(user, args.pipelines, args.runs)
    token = seed_tokens(user)
    others = seed_others(user, pipelines)
    print(
        f"seeded {args.pipelines:,} pipelines, {args.runs:,} runs, "
        f"{StepRun.objects.count():,} step runs, {TOKENS} tokens"
        + (f", {OTHERS} each of {', '.join(others)}" if others else "")
        + f" in {time.perf_counter() - started:.1f} s"
    )
    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    discovered = listed_endpoints(client)
    # The baseline is a 404, which django.request logs as a warning on every request.
    logging.getLogger("django.request").setLevel(logging.ERROR)
    _, baseline, _, _ = measure(client, "/api/v1/runs/0/", args.requests)
    logging.getLogger("django.request").setLevel(logging.WARNING)
    print(f"baseline (an API 404: token, throttle, one query) p95 {baseline:.1f} ms")
    print(page_table_header("endpoint", WIDTH))
    lists_ok = time_lists(client, list_urls(client, pipelines[0], discovered), args, baseline)
    poll_ok = time_poll(client, f"/api/v1/runs/{running.pk}/", args, baseline)
    return check_page_sizes(client, discovered) and lists_ok and poll_ok


def measure(client, url: str, requests: int, **headers):
    """measure_page after a full garbage collection (untimed): one of 150-400 ms (the
    process's whole heap) otherwise lands in whichever endpoint's requests come after
    enough garbage from the earlier ones, making its p95 the bench's noise, not its own."""
    gc.collect()
    return measure_page(client, url, requests, **headers)


def list_urls(client, pipeline, discovered: dict[str, bool]) -> list[tuple[str, str]]:
    """(name, url) of each list to time: the known ones, then those the schema adds."""
    lists = [
        ("pipelines", "/api/v1/pipelines/"),
        ("runs", "/api/v1/runs/"),
        ("runs, second page (next)", client.get("/api/v1/runs/").json()["next"]),
        ("runs of one pipeline", f"/api/v1/runs/?pipeline={pipeline.name}"),
        ("step types", "/api/v1/step-types/"),
        ("tokens", "/api/v1/tokens/"),
    ]
    known = {url for _, url in lists}
    return lists + [
        (path.removeprefix("/api/v1/").strip("/"), path) for path in discovered if path not in known
    ]


def time_lists(client, lists, args, baseline: float) -> bool:
    """A table row per list; True when all answer 200 within the target."""
    worst, failed = 0.0, []
    for name, url in lists:
        p50, p95, status, queries = measure(client, url, args.requests)
        worst = max(worst, p95 / LIST_TARGET_MS)
        if status != 200:
            failed.append(name)
        print(page_table_row(name, status, queries, p50, p95, LIST_TARGET_MS, baseline, WIDTH))
    print(worst_ratio_line(worst, "lists worst"))
    if failed:
        print(f"lists not answering 200: {', '.join(failed)} MISSED")
    return worst <= 1 and not failed


def time_poll(client, url: str, args, baseline: float) -> bool:
    """A poll of an unchanged run (If-None-Match: its ETag), against the run's full GET;
    True when it answers 304 within the target."""
    etag = client.get(url)["ETag"]
    full_p50, full_p95, full_status, full_queries = measure(client, url, args.requests)
    p50, p95, status, queries = measure(client, url, args.requests, **{"If-None-Match": etag})
    row = page_table_row(
        "run poll, same ETag", status, queries, p50, p95, POLL_TARGET_MS, baseline, WIDTH
    )
    print(row)
    ok = status == 304 and p95 <= POLL_TARGET_MS
    print(f"run poll ({status}) p95 {p95:.1f} ms (target < {POLL_TARGET_MS:.0f} ms) {verdict(ok)}")
    print(
        f"baseline: the run's full GET ({full_status}, {full_queries} queries) p50 "
        f"{full_p50:.1f} ms, p95 {full_p95:.1f} ms; poll/full GET p95 ratio {p95 / full_p95:.2f}"
        f" (p50 {p50 / full_p50:.2f})"
    )
    return ok


def check_page_sizes(client, discovered: dict[str, bool]) -> bool:
    """Prints each paginated list's query count for a short and a long page; True when
    none grows with the page size."""
    print(f"\n{'queries by page size':<{WIDTH}}{'short page':>16}{'long page':>16}")
    flat = True
    for path, takes_page_size in discovered.items():
        try:
            counts = page_size_queries(client, path, takes_page_size)
        except ValueError as exc:
            print(f"{path:<{WIDTH}}  FAILED: {exc}")
            flat = False
            continue
        if counts is None:
            print(f"{path:<{WIDTH}}{'(no rows)':>16}")
            continue
        (short, short_rows), (long, long_rows) = counts
        grows = long > short
        flat &= not grows
        note = "" if takes_page_size else "  (no page_size: last page against first)"
        if long_rows <= short_rows:
            note += "  (no more rows on the long page: not compared)"
        print(
            f"{path:<{WIDTH}}{f'{short} ({short_rows} rows)':>16}{f'{long} ({long_rows} rows)':>16}"
            f"  {'GROWS' if grows else 'OK'}{note}"
        )
    print(f"query counts constant in the page size: {verdict(flat)}")
    return flat


def main() -> int:
    args = parse_args()
    with temporary_folder("mlops-bench-api-", args.keep) as folder:
        # Far above the bench's request rate, so no request is refused; the throttle's
        # query still runs on each one, as in production.
        configure_environment(folder, MLOPS_API_RATE="1000000/minute")
        setup_django()
        return 0 if bench_api(args) else 1


if __name__ == "__main__":
    sys.exit(main())
