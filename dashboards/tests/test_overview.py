"""The operations overview (/): each number a user sees, from runs made with known times,
statuses and metrics; the empty states; the HTMX fragments; the query count; a real server."""

import html as html_module
import json
import re
import urllib.request
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ

from dashboards import overview
from experiments.models import ServingStat
from pipelines.models import Pipeline, PipelineRun, PipelineSchedule, StepRun

URL = "/"


@pytest.fixture(autouse=True)
def no_overview_cache(settings):
    settings.MLOPS_OVERVIEW_CACHE_SECONDS = 0


@pytest.fixture
def user_client(client, django_user_model):
    cache.clear()  # The database cache table lives in the test database.
    client.force_login(django_user_model.objects.create_user("operator"))
    return client


def midnight(days_ago: int) -> datetime:
    """Local midnight `days_ago` days ago: a time inside the day whatever the clock says."""
    day = timezone.localdate() - timedelta(days=days_ago)
    return timezone.make_aware(datetime.combine(day, time.min))


def make_run(pipeline, status="succeeded", created=None, seconds=None, **fields):
    """A run created at `created` (default now) that took `seconds` from its start."""
    run = PipelineRun.objects.create(pipeline=pipeline, status=status, **fields)
    created = created or timezone.now()
    started = created if seconds is not None else None
    finished = created + timedelta(seconds=seconds) if seconds is not None else None
    PipelineRun.objects.filter(pk=run.pk).update(
        created_at=created, started_at=started, finished_at=finished
    )
    run.refresh_from_db()
    return run


def text_of(response) -> str:
    """The page as a user reads it: tags dropped, whitespace collapsed."""
    html = response.content.decode()
    html = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", html_module.unescape(re.sub(r"<[^>]+>", " ", html)))


def chart_data(response, element_id="overview-runs-per-day") -> dict:
    match = re.search(
        rf'<script id="{element_id}" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    assert match, f"no {element_id} data on the page"
    return json.loads(match.group(1))


@pytest.mark.django_db
def test_an_anonymous_visitor_is_sent_to_the_login_page(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_an_empty_platform_shows_every_section_with_a_hint(user_client):
    response = user_client.get(URL)
    assert response.status_code == 200
    text = text_of(response)
    assert "No run in the last 30 days." in text
    assert "Start one from the pipelines page" in text
    assert "No run succeeded in the last 7 days" in text
    assert "No step finished in the last 7 days" in text
    assert "No schedule is enabled." in text
    assert "No run failed in the last 7 days." in text
    assert "No succeeded run has recorded accuracy, r2, silhouette or rmse yet." in text
    assert "No prediction request in the last 24 hours." in text
    # No cluster reported in: the page says what to do about it.
    assert "No worker: runs wait until one starts. Start one with manage.py qcluster" in text
    assert "overview-runs-per-day" not in response.content.decode()


@pytest.mark.django_db
def test_runs_per_day_by_status_and_the_success_rate(user_client):
    pipeline = Pipeline.objects.create(name="churn")
    for status in ("succeeded", "succeeded", "failed"):
        make_run(pipeline, status, created=midnight(3) + timedelta(hours=9))
    make_run(pipeline, "cancelled", created=midnight(1) + timedelta(hours=23, minutes=59))
    make_run(pipeline, "succeeded", created=midnight(1))
    make_run(pipeline, "running")  # today
    for _ in range(4):  # before the 30 days: not counted
        make_run(pipeline, "failed", created=midnight(31))

    response = user_client.get(URL)

    data = chart_data(response)
    assert len(data["labels"]) == 30
    today = timezone.localdate()
    assert data["labels"][-1] == f"{today:%b} {today.day}"
    values = {series["status"]: series["values"] for series in data["series"]}
    assert values["succeeded"][-4] == 2 and values["failed"][-4] == 1
    assert values["succeeded"][-2] == 1 and values["cancelled"][-2] == 1
    assert values["running"][-1] == 1
    assert sum(sum(v) for v in values.values()) == 6
    text = text_of(response)
    # 3 succeeded of 4 finished (succeeded + failed): 75 %.
    assert "Success rate 75.0 % 3 succeeded, 1 failed (cancelled not counted)" in text
    assert "Runs 6 3 succeeded, 1 failed, 1 cancelled, 1 running" in text


@pytest.mark.django_db
def test_run_duration_p50_p95_and_max_per_pipeline(user_client):
    slow = Pipeline.objects.create(name="slow-training")
    quick = Pipeline.objects.create(name="quick-report")
    yesterday = midnight(1)
    for minutes in range(1, 21):  # 10, 20, ... 200 s
        make_run(slow, created=yesterday + timedelta(minutes=minutes), seconds=10 * minutes)
    make_run(slow, "failed", created=yesterday, seconds=5000)  # not a succeeded run
    make_run(slow, created=midnight(40), seconds=9000)  # before the 30 days
    make_run(quick, created=yesterday, seconds=2.5)

    text = text_of(user_client.get(URL))

    # Nearest rank over 20 durations: p50 the 10th (100 s), p95 the 19th (190 s).
    assert "slow-training 20 1 m 40 s 3 m 10 s 3 m 20 s" in text
    assert "quick-report 1 2.5 s 2.5 s 2.5 s" in text
    assert text.index("slow-training 20") < text.index("quick-report 1")


def test_percentile_is_the_nearest_rank():
    values = [float(v) for v in range(1, 21)]
    assert overview.percentile(values, 0.5) == 10
    assert overview.percentile(values, 0.95) == 19
    assert overview.percentile([7.0], 0.95) == 7
    assert overview.percentile([], 0.5) is None


@pytest.mark.django_db
def test_the_slowest_steps_by_mean_duration(user_client):
    pipeline = Pipeline.objects.create(name="churn")
    start = midnight(2)
    for index, train_seconds in enumerate((60, 84)):
        run = make_run(pipeline, created=start + timedelta(hours=index), seconds=200)
        for order, name, seconds in ((1, "Extract", 3), (2, "Train", train_seconds)):
            StepRun.objects.create(
                run=run,
                order=order,
                name=name,
                step_type="csv" if order == 1 else "train_sklearn",
                status="succeeded",
                started_at=run.started_at,
                finished_at=run.started_at + timedelta(seconds=seconds),
            )

    text = text_of(user_client.get(URL))

    # Train: mean of 60 and 84 s = 72 s; Extract 3 s, listed after it.
    assert "2. Train churn 2 1 m 12 s 1 m 24 s" in text
    assert "1. Extract churn 2 3.0 s 3.0 s" in text
    assert text.index("2. Train") < text.index("1. Extract")


class FakeStat:
    def __init__(self, status, workers, host="worker-1"):
        self.status, self.workers, self.host = status, workers, host


@pytest.mark.django_db
def test_now_queued_running_workers_and_the_task_queue(user_client, monkeypatch):
    pipeline = Pipeline.objects.create(name="churn")
    now = timezone.now()
    make_run(pipeline, "queued", created=now - timedelta(minutes=5))
    make_run(pipeline, "queued", created=now - timedelta(seconds=30))
    make_run(pipeline, "running", created=now - timedelta(minutes=3), seconds=0)
    OrmQ.objects.create(key=Conf.CLUSTER_NAME, payload="-", lock=now - timedelta(seconds=90))
    OrmQ.objects.create(key=Conf.CLUSTER_NAME, payload="-", lock=now - timedelta(seconds=10))
    OrmQ.objects.create(key=Conf.CLUSTER_NAME, payload="-", lock=now + timedelta(hours=6))
    monkeypatch.setattr(
        "django_q.status.Stat.get_all",
        lambda *args: [
            FakeStat("Idle", [101, 102]),
            FakeStat("Working", [201], host="worker-2"),
            FakeStat(Conf.STOPPED, [301]),
        ],
    )

    text = text_of(user_client.get(URL))

    assert "Running runs 1 longest running 3 m 0 s" in text
    assert "Queued runs 2 oldest waiting 5 m 0 s" in text
    assert "Workers alive 3 in 2 clusters on worker-1, worker-2" in text
    assert "Task queue (ORM) 2 tasks waiting, oldest 1 m 30 s; 1 taken by workers" in text


@pytest.mark.django_db
def test_unreadable_cluster_stats_are_said_not_hidden(user_client, monkeypatch):
    def broken(*args):
        raise ConnectionError("redis is down")

    monkeypatch.setattr("django_q.status.Stat.get_all", broken)
    text = text_of(user_client.get(URL))
    assert (
        "Workers alive ? Error: cluster stats unreadable (ConnectionError: redis is down)" in text
    )


@pytest.mark.django_db
def test_the_next_scheduled_runs_soonest_first(user_client):
    nightly = Pipeline.objects.create(name="nightly-scoring")
    hourly = Pipeline.objects.create(name="hourly-refresh")
    off = Pipeline.objects.create(name="switched-off")
    soon = timezone.now() + timedelta(minutes=20)
    PipelineSchedule.objects.create(
        pipeline=nightly, cron="0 6 * * *", timezone="UTC", next_tick_at=soon + timedelta(hours=5)
    )
    PipelineSchedule.objects.create(pipeline=hourly, interval_seconds=3600, next_tick_at=soon)
    PipelineSchedule.objects.create(
        pipeline=off, interval_seconds=60, enabled=False, next_tick_at=soon
    )

    text = text_of(user_client.get(URL))

    local = timezone.localtime(soon)
    assert f"hourly-refresh {local:%b} {local.day}, {local:%H:%M} " in text
    assert "every 1 h 0 m" in text
    assert "cron 0 6 * * * (UTC)" in text
    assert text.index("hourly-refresh") < text.index("nightly-scoring")
    assert "switched-off" not in text


@pytest.mark.django_db
def test_recent_failures_show_the_first_line_of_the_error_and_link_to_the_run(user_client):
    pipeline = Pipeline.objects.create(name="churn")
    failed = make_run(
        pipeline,
        "failed",
        created=timezone.now() - timedelta(hours=2),
        seconds=5,
        error_message="\nKeyError: column 'age' is missing\n  File engine.py, line 3",
    )
    make_run(pipeline, "failed", created=midnight(9), error_message="An old failure")

    response = user_client.get(URL)

    text = text_of(response)
    assert f"#{failed.pk} churn" in text
    assert "KeyError: column 'age' is missing" in text
    assert "engine.py" not in text
    assert "An old failure" not in text  # older than 7 days
    assert f'href="{reverse("runs:detail", args=[failed.pk])}"' in response.content.decode()


@pytest.mark.django_db
def test_each_pipelines_main_metric_its_latest_value_and_trend(user_client):
    classifier = Pipeline.objects.create(name="churn-classifier")
    regressor = Pipeline.objects.create(name="price-regressor")
    start = midnight(20)
    accuracies = [0.5, 0.51, 0.7, 0.71, 0.72, 0.73, 0.74, 0.75, 0.76, 0.8, 0.85, 0.9123]
    for day, value in enumerate(accuracies):
        make_run(
            classifier,
            created=start + timedelta(days=day),
            seconds=1,
            metrics={"accuracy": value, "f1": 0.1},
        )
    make_run(classifier, "failed", metrics={"accuracy": 0.1})  # not a succeeded run
    for day, value in enumerate([12.0, 10.5]):
        make_run(regressor, created=start + timedelta(days=day), seconds=1, metrics={"rmse": value})
    Pipeline.objects.create(name="never-trained")

    response = user_client.get(URL)

    text = text_of(response)
    assert "churn-classifier accuracy ↑ higher is better 0.912" in text
    assert "▲ better was 0.850" in text
    assert "price-regressor rmse ↓ lower is better 10.5" in text
    assert "▼ better was 12.0" in text
    assert "never-trained" not in text
    html = response.content.decode()
    # The sparkline holds the last 10 succeeded runs, oldest first.
    assert (
        'aria-label="accuracy over the last 10 runs: '
        '0.700, 0.710, 0.720, 0.730, 0.740, 0.750, 0.760, 0.800, 0.850, 0.912"'
    ) in html


@pytest.mark.django_db
def test_a_worse_metric_says_worse():
    pipeline = Pipeline.objects.create(name="drifting")
    for day, value in enumerate([0.9, 0.8]):
        make_run(pipeline, created=midnight(5 - day), seconds=1, metrics={"r2": value})
    [row] = overview.main_metrics()
    assert (row["metric"], row["direction"], row["verdict"]) == ("r2", "down", "worse")
    assert row["values"] == [0.9, 0.8]


@pytest.mark.django_db
def test_online_prediction_traffic_per_model_over_24_hours(user_client):
    minute = timezone.now().replace(second=0, microsecond=0)
    ServingStat.objects.create(
        model_name="churn",
        version=1,
        minute=minute - timedelta(hours=3),
        requests=100,
        errors=4,
        rows=1234,
        latency_ms_total=2000,
        latency_ms_max=300,
        latency_le_10ms=90,
        latency_le_250ms=10,
    )
    ServingStat.objects.create(
        model_name="churn",
        version=2,
        minute=minute,
        requests=300,
        rows=5000,
        latency_ms_total=6000,
        latency_ms_max=90,
        latency_le_25ms=290,
        latency_le_100ms=10,
    )
    ServingStat.objects.create(
        model_name="churn", version=1, minute=minute - timedelta(hours=30), requests=9999
    )
    ServingStat.objects.create(
        model_name="slow-model",
        version=3,
        minute=minute,
        requests=10,
        rows=10,
        latency_ms_total=40000,
        latency_ms_max=4000,
        latency_over_2500ms=10,
    )

    text = text_of(user_client.get(URL))

    # 400 requests: 90 ≤ 10 ms, 290 ≤ 25 ms: the 95th percentile (380th) lies in ≤ 25 ms.
    assert "churn v2 +1 400 6,234 ≤ 25.0 ms 4 (1.00 %)" in text
    assert "slow-model v3 10 10 > 2,500 ms 0" in text


@pytest.mark.django_db
def test_the_htmx_fragment_is_one_section_that_polls_itself(user_client):
    pipeline = Pipeline.objects.create(name="churn")
    make_run(pipeline, "failed", error_message="boom")
    for name in ("now", "runs", "models"):
        response = user_client.get(URL, {"section": name}, headers={"HX-Request": "true"})
        html = response.content.decode()
        assert response.status_code == 200
        assert "<html" not in html
        assert html.count("<section") == 1
        assert f'id="overview-{name}"' in html
        assert 'hx-trigger="every 30s"' in html
        assert f'hx-get="/?section={name}"' in html
    # Without HTMX the same URL is the whole page.
    page = user_client.get(URL, {"section": "now"}).content.decode()
    assert "<html" in page and page.count("<section") == 3


def seed(pipelines: int, runs: int) -> None:
    """`runs` runs across `pipelines` pipelines, with step runs, schedules, failures,
    metrics and prediction traffic: every section of the page has rows."""
    made = Pipeline.objects.bulk_create(Pipeline(name=f"p{i:03d}") for i in range(pipelines))
    now = timezone.now()
    statuses = ["succeeded", "succeeded", "failed", "cancelled", "queued", "running"]
    objs = PipelineRun.objects.bulk_create(
        PipelineRun(
            pipeline=made[i % pipelines],
            status=statuses[i % len(statuses)],
            started_at=now - timedelta(hours=i),
            finished_at=now - timedelta(hours=i) + timedelta(seconds=30 + i),
            metrics={"accuracy": 0.5 + i / (2 * runs)},
            error_message="ValueError: x\nmore",
        )
        for i in range(runs)
    )
    PipelineRun.objects.update(created_at=now - timedelta(hours=1))
    StepRun.objects.bulk_create(
        StepRun(
            run=run,
            order=order,
            name=f"step {order}",
            step_type="noop",
            status="succeeded",
            started_at=run.started_at,
            finished_at=run.finished_at,
        )
        for run in objs
        for order in (1, 2)
    )
    for pipeline in made:
        PipelineSchedule.objects.create(pipeline=pipeline, interval_seconds=600)
        ServingStat.objects.create(
            model_name=pipeline.name, version=1, minute=now, requests=10, latency_le_5ms=10
        )


@pytest.mark.django_db
@pytest.mark.parametrize("cache_seconds", [0, 15])
def test_the_query_count_does_not_grow_with_runs_or_pipelines(user_client, settings, cache_seconds):
    settings.MLOPS_OVERVIEW_CACHE_SECONDS = cache_seconds
    seed(pipelines=10, runs=10)
    cache.clear()
    with CaptureQueriesContext(connection) as few:
        assert user_client.get(URL).status_code == 200
    PipelineRun.objects.all().delete()
    Pipeline.objects.all().delete()
    ServingStat.objects.all().delete()
    seed(pipelines=10, runs=200)
    cache.clear()
    with CaptureQueriesContext(connection) as many:
        response = user_client.get(URL)
    assert "p009" in text_of(response)
    assert len(many) == len(few), [query["sql"][:120] for query in many]


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's query plan")
def test_runs_per_day_and_durations_read_the_run_timeline_index_alone(user_client):
    seed(pipelines=3, runs=20)
    with CaptureQueriesContext(connection) as captured:
        overview.runs_per_day()
        overview.run_durations()
    run_queries = [query["sql"] for query in captured if "pipelines_pipelinerun" in query["sql"]]
    assert len(run_queries) == 2
    with connection.cursor() as cursor:
        for sql in run_queries:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            plan = [row[-1] for row in cursor.fetchall()]
            # Every run read is a range of the covering index: no run row, no full scan.
            reads = [step for step in plan if "pipelines_pipelinerun" in step]
            assert reads and all("COVERING INDEX run_timeline" in step for step in reads), plan


@pytest.mark.django_db
def test_cached_sections_are_served_from_the_cache_for_the_configured_time(user_client, settings):
    settings.MLOPS_OVERVIEW_CACHE_SECONDS = 15
    pipeline = Pipeline.objects.create(name="churn")
    make_run(pipeline, "failed", error_message="first failure")
    with CaptureQueriesContext(connection) as cold:
        assert "first failure" in text_of(user_client.get(URL))
    make_run(pipeline, "failed", error_message="second failure")
    with CaptureQueriesContext(connection) as warm:
        text = text_of(user_client.get(URL))
    assert "second failure" not in text  # still the cached section
    assert len(warm) < len(cold)
    cache.clear()
    assert "second failure" in text_of(user_client.get(URL))


@pytest.mark.django_db(transaction=True)
def test_the_page_through_a_real_server(live_server, client, django_user_model):
    pipeline = Pipeline.objects.create(name="served-pipeline")
    make_run(pipeline, "failed", error_message="RuntimeError: through the wire")
    client.force_login(django_user_model.objects.create_user("operator"))
    session = client.cookies["sessionid"].value
    request = urllib.request.Request(
        f"{live_server.url}{URL}", headers={"Cookie": f"sessionid={session}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        html = response.read().decode()
    assert "Operations overview" in html
    assert "RuntimeError: through the wire" in html
    fragment = urllib.request.Request(
        f"{live_server.url}{URL}?section=now",
        headers={"Cookie": f"sessionid={session}", "HX-Request": "true"},
    )
    with urllib.request.urlopen(fragment, timeout=30) as response:
        body = response.read().decode()
    assert body.lstrip().startswith("<section") and "RuntimeError: through the wire" in body


SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.mark.screenshots
@pytest.mark.django_db(transaction=True)
def test_write_a_screenshot_of_the_overview(live_server, django_user_model, monkeypatch):
    """docs/screenshots/overview.png with a month of realistic activity."""
    from pipelines.tests.browser import PASSWORD, chromium_page, log_in

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    monkeypatch.setattr(
        "django_q.status.Stat.get_all", lambda *args: [FakeStat("Idle", [11, 12], "worker-a")]
    )
    seed_realistic()
    django_user_model.objects.create_user("analyst", password=PASSWORD)
    with chromium_page() as page:
        log_in(page, live_server.url, "analyst", next_path="/")
        page.wait_for_load_state("networkidle")
        page.wait_for_function("() => window.Chart && document.querySelector('canvas')")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "overview.png", full_page=True)


def seed_realistic() -> None:
    """Six pipelines run a few times a day for 30 days, with failures, step timings,
    metrics, schedules, waiting and running runs, and prediction traffic."""
    import random

    rng = random.Random(7)
    specs = [
        ("breast-cancer-classifier", "accuracy", 0.91, 0.001, 95),
        ("churn-model", "accuracy", 0.80, 0.002, 240),
        ("house-prices", "rmse", 31000.0, -300.0, 610),
        ("customer-segments", "silhouette", 0.42, 0.002, 130),
        ("daily-sales-report", None, None, 0, 35),
        ("demand-forecast", "r2", 0.71, 0.003, 420),
    ]
    steps = ["Extract", "Clean", "Features", "Train", "Predict"]
    now = timezone.now()
    runs, step_rows = [], []
    for name, metric, base, drift, seconds in specs:
        pipeline = Pipeline.objects.create(name=name)
        for day in range(30, -1, -1):
            for _ in range(rng.randint(1, 5)):
                created = now - timedelta(days=day, hours=rng.uniform(0.5, 20))
                if created > now:
                    continue
                status = rng.choices(["succeeded", "failed", "cancelled"], weights=[88, 9, 3])[0]
                took = seconds * rng.lognormvariate(0, 0.25)
                value = None
                if metric:
                    value = base + drift * (30 - day) + rng.gauss(0, abs(drift) * 2 + 1e-9)
                    value = round(value, 4)
                runs.append(
                    PipelineRun(
                        pipeline=pipeline,
                        status=status,
                        started_at=created + timedelta(seconds=2),
                        finished_at=created + timedelta(seconds=2 + took),
                        metrics={metric: value} if metric and status == "succeeded" else {},
                        error_message=(
                            rng.choice(
                                [
                                    "KeyError: column 'tenure' is missing from the dataset",
                                    "TimeoutError: the data source did not answer in 30 s",
                                    "ValueError: Input contains NaN",
                                ]
                            )
                            + "\nTraceback (most recent call last): ..."
                            if status == "failed"
                            else ""
                        ),
                    )
                )
                runs[-1]._created = created
    made = PipelineRun.objects.bulk_create(runs)
    for run in made:
        PipelineRun.objects.filter(pk=run.pk).update(created_at=run._created)
        share = [0.1, 0.1, 0.15, 0.55, 0.1]
        at = run.started_at
        total = (run.finished_at - run.started_at).total_seconds()
        for order, (step, part) in enumerate(zip(steps, share, strict=True), start=1):
            step_rows.append(
                StepRun(
                    run=run,
                    order=order,
                    name=step,
                    step_type=step.lower(),
                    status="succeeded",
                    started_at=at,
                    finished_at=at + timedelta(seconds=total * part),
                )
            )
            at += timedelta(seconds=total * part)
    StepRun.objects.bulk_create(step_rows)
    pipelines = {p.name: p for p in Pipeline.objects.all()}
    make_run(pipelines["churn-model"], "running", created=now - timedelta(minutes=3), seconds=0)
    make_run(pipelines["house-prices"], "queued", created=now - timedelta(seconds=50))
    for name, every in (("daily-sales-report", 86400), ("churn-model", 3600)):
        PipelineSchedule.objects.create(pipeline=pipelines[name], interval_seconds=every)
    PipelineSchedule.objects.create(
        pipeline=pipelines["demand-forecast"], cron="30 6 * * 1-5", timezone="Europe/Paris"
    )
    minute = now.replace(second=0, microsecond=0)
    for model, per_minute, fast in (
        ("breast-cancer-classifier", 40, True),
        ("churn-model", 9, False),
    ):
        for back in range(0, 24 * 60, 10):
            requests = per_minute + rng.randint(0, 10)
            fast_share = int(requests * (0.97 if fast else 0.9))
            ServingStat.objects.create(
                model_name=model,
                version=3 if fast else 1,
                minute=minute - timedelta(minutes=back),
                requests=requests,
                errors=1 if back % 300 == 0 else 0,
                rows=requests * (1 if fast else 25),
                latency_ms_total=requests * (18 if fast else 70),
                latency_ms_max=240 if fast else 900,
                latency_le_25ms=fast_share if fast else 0,
                latency_le_100ms=0 if fast else fast_share,
                latency_le_250ms=requests - fast_share if fast else 0,
                latency_le_500ms=0 if fast else requests - fast_share,
            )
