"""The runs list and the run page: filters, pages, live progress, cancel and run again."""

import http.cookiejar
import re
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from pipelines.choices import RunStatus, RunTrigger, StepRunStatus
from pipelines.models import PipelineRun, PipelineStep, StepRun
from pipelines.progress import definition_diff, run_progress
from pipelines.templatetags.mlops_format import duration, sig3, thousands
from pipelines.tests.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium

IRIS_STEPS = [
    {"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}},
    {"type": "drop_na", "name": "Clean", "params": {"columns": ["target"]}},
]
HTMX = {"HX-Request": "true"}
PASSWORD = "correct horse battery staple"


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def analyst(django_user_model):
    user = django_user_model.objects.create_user("analyst", password=PASSWORD)
    return grant(user, "add_pipelinerun", "change_pipelinerun")


@pytest.fixture
def analyst_client(client, analyst):
    client.force_login(analyst)
    return client


@pytest.fixture
def viewer(django_user_model):
    return django_user_model.objects.create_user("viewer")


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def staff_client(django_user_model):
    # A client of its own, so a test can compare what staff and others see.
    staff = Client()
    staff.force_login(django_user_model.objects.create_user("operator", is_staff=True))
    return staff


@pytest.fixture
def iris(make_pipeline):
    return make_pipeline(IRIS_STEPS, name="iris")


def make_run(pipeline, **fields) -> PipelineRun:
    fields.setdefault("definition", pipeline.definition())
    return PipelineRun.objects.create(pipeline=pipeline, **fields)


def ended(status=RunStatus.SUCCEEDED, seconds=72, ago=60, **fields) -> dict:
    """Fields of a run that ended `ago` seconds ago after running `seconds`."""
    finished = timezone.now() - timedelta(seconds=ago)
    started = finished - timedelta(seconds=seconds)
    return {"status": status, "started_at": started, "finished_at": finished, **fields}


def add_steps(run, count, status=StepRunStatus.SUCCEEDED):
    start = timezone.now() - timedelta(seconds=10)
    StepRun.objects.bulk_create(
        StepRun(
            run=run,
            order=order,
            step_type="drop_na",
            name=f"Step {order}",
            status=status,
            started_at=start,
            finished_at=start + timedelta(seconds=1.5),
            rows_in=12345,
            columns_in=5,
            rows_out=12000,
            columns_out=5,
            summary={"rows": 12000, "columns": 5, "dropped_rows": 345},
        )
        for order in range(1, count + 1)
    )


def rows(page: str) -> list[str]:
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr.*?</tr>", body, re.S)


def progress_url(run, after=0) -> str:
    return f"/runs/{run.pk}/progress/?after={after}"


# ---- Display filters ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value, text",
    [
        (timedelta(seconds=72), "1 m 12 s"),
        (3.24, "3.2 s"),
        (42, "42 s"),
        (timedelta(hours=2, minutes=5, seconds=10), "2 h 5 m"),
        (timedelta(days=1, hours=3), "1 d 3 h"),
        (0.01, "< 0.1 s"),
        (None, ""),
    ],
)
def test_duration_reads_as_minutes_and_seconds(value, text):
    assert duration(value) == text


@pytest.mark.parametrize(
    "value, text",
    [
        (0.912345, "0.912"),
        (1.0, "1.00"),
        (12.345, "12.3"),
        (100.0, "100"),
        (1234.5, "1,230"),
        (0.0000123456, "1.23e-05"),
        (7, "7"),
        (float("nan"), "NaN"),
        ("n/a", "n/a"),
    ],
)
def test_sig3_keeps_three_significant_figures(value, text):
    assert sig3(value) == text


def test_thousands_separates_counts():
    assert (thousands(1234567), thousands(None), thousands(12)) == ("1,234,567", "", "12")


# ---- Services ----------------------------------------------------------------------


def test_definition_diff_is_empty_when_identical_and_unified_otherwise(iris):
    old = iris.definition()
    assert definition_diff(old, {**old}) == []

    PipelineStep.objects.filter(pipeline=iris, order=2).update(params={"columns": ["sepal"]})
    diff = definition_diff(old, iris.definition())

    assert diff[:2] == ["--- definition the run ran", "+++ pipeline now"]
    assert '-          "target"' in diff and '+          "sepal"' in diff


@pytest.mark.database
def test_run_progress_returns_only_the_log_after_the_position(iris):
    run = make_run(iris, status=RunStatus.RUNNING, logs="first line\nsecond line\n")

    progress = run_progress(run, len("first line\n"))

    assert progress.log_text == "second line\n"
    assert progress.log_position == len(run.logs)
    assert (progress.status, progress.finished) == (RunStatus.RUNNING, False)
    again = run_progress(run, progress.log_position)
    assert (again.log_text, again.log_position) == ("", progress.log_position)
    assert run_progress(run, 10_000).log_position == len(run.logs)


def test_run_progress_lists_steps_not_yet_run_as_pending(iris):
    run = make_run(iris, status=RunStatus.RUNNING)
    add_steps(run, 1)

    progress = run_progress(run)

    assert [s.order for s in progress.step_runs] == [1]
    assert [s["order"] for s in progress.pending_steps] == [2]
    assert (progress.steps_done, progress.current_step) == (1, None)
    StepRun.objects.create(run=run, order=2, step_type="drop_na", status=StepRunStatus.RUNNING)
    assert run_progress(run).current_step.order == 2


def test_run_progress_is_finished_only_once_the_last_log_lines_had_time_to_arrive(iris):
    just_ended = make_run(iris, **ended(ago=0))
    long_ended = make_run(iris, **ended(ago=60))

    assert run_progress(just_ended).finished is False
    assert run_progress(long_ended).finished is True


# ---- Runs list ---------------------------------------------------------------------


@pytest.mark.database
def test_list_shows_runs_newest_first_with_every_column(analyst_client, analyst, iris):
    old = make_run(iris, trigger=RunTrigger.SCHEDULE, **ended(RunStatus.FAILED))
    new = make_run(iris, started_by=analyst, start_step=2, **ended(seconds=72))
    add_steps(new, 1)
    PipelineRun.objects.filter(pk=new.pk).update(
        created_at=datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    )
    PipelineRun.objects.filter(pk=old.pk).update(
        created_at=datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
    )

    response = analyst_client.get("/runs/")

    assert response.status_code == 200
    first, second = rows(response.content.decode())
    assert f'href="/runs/{new.pk}/">#{new.pk}</a>' in first
    assert f'href="/pipelines/{iris.pk}/" title="iris">iris</a>' in first
    assert '<span class="status succeeded">Succeeded</span>' in first
    assert "Manual" in first and ">analyst<" in first
    assert "2026-01-15 12:00 UTC" in first
    assert "1 m 12 s" in first
    assert ">1/2<" in first and ">2<" in first
    assert '<span class="status failed">Failed</span>' in second
    assert "Schedule" in second and ">first<" in second


def test_list_shows_created_times_in_the_current_time_zone(analyst_client, iris, settings):
    settings.TIME_ZONE = "Europe/Paris"
    run = make_run(iris)
    PipelineRun.objects.filter(pk=run.pk).update(
        created_at=datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    )

    assert "2026-01-15 13:00 CET" in analyst_client.get("/runs/").content.decode()


@pytest.mark.database
def test_list_filters_by_pipeline_status_trigger_user_and_dates(
    analyst_client, analyst, iris, make_pipeline
):
    other = make_pipeline(IRIS_STEPS, name="other")
    runs = {
        "iris-failed": make_run(iris, status=RunStatus.FAILED),
        "iris-api": make_run(iris, trigger=RunTrigger.API, started_by=analyst),
        "other": make_run(other),
    }
    PipelineRun.objects.filter(pk=runs["other"].pk).update(
        created_at=datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    )

    def shown(query: str) -> set[str]:
        page = analyst_client.get(f"/runs/?{query}").content.decode()
        found = {int(pk) for pk in re.findall(r'href="/runs/(\d+)/">#', page)}
        return {name for name, run in runs.items() if run.pk in found}

    assert shown(f"pipeline={other.pk}") == {"other"}
    assert shown("status=failed") == {"iris-failed"}
    assert shown("trigger=api") == {"iris-api"}
    assert shown(f"user={analyst.pk}") == {"iris-api"}
    assert shown("created_to=2026-01-11") == {"other"}
    assert shown("created_from=2026-01-11") == {"iris-failed", "iris-api"}
    assert shown("created_from=2026-01-10&created_to=2026-01-10") == {"other"}
    assert shown("") == set(runs)


def test_list_shows_an_invalid_filter_with_its_error_and_ignores_it(analyst_client, iris):
    make_run(iris)

    page = analyst_client.get("/runs/?status=exploded").content.decode()

    assert 'class="field-error"' in page and "exploded is not one of the available" in page
    assert len(rows(page)) == 1


def test_list_pages_by_fifty_and_a_page_past_the_end_shows_the_last(analyst_client, iris):
    PipelineRun.objects.bulk_create(
        PipelineRun(pipeline=iris, definition={}, status=RunStatus.SUCCEEDED) for _ in range(51)
    )

    first = analyst_client.get("/runs/").content.decode()
    past = analyst_client.get("/runs/?status=succeeded&page=9")

    assert len(rows(first)) == 50 and "Page 1 of 2" in first
    assert 'href="?page=2"' in first
    assert past.status_code == 200
    page = past.content.decode()
    assert len(rows(page)) == 1 and "Page 2 of 2" in page
    assert "There is no page “9”; this is page 2 of 2." in page
    assert 'href="?status=succeeded&amp;page=1"' in page
    assert analyst_client.get("/runs/?page=abc").status_code == 200


def test_list_without_runs_says_how_to_start_one(analyst_client, db):
    page = analyst_client.get("/runs/").content.decode()

    assert "No runs yet." in page and 'href="/pipelines/"' in page


def test_list_with_filters_matching_nothing_offers_to_clear_them(analyst_client, iris):
    make_run(iris)

    page = analyst_client.get("/runs/?status=cancelled").content.decode()

    assert "No runs match these filters." in page and "clear the filters" in page


@pytest.mark.database
def test_list_query_count_does_not_grow_with_runs(
    analyst_client, iris, analyst, django_assert_max_num_queries
):
    for _ in range(40):
        add_steps(make_run(iris, started_by=analyst, **ended()), 2)
    # Session, user, count, the page of runs, the pipelines and users of the filter form.
    with django_assert_max_num_queries(6):
        page = analyst_client.get("/runs/").content.decode()
    assert len(rows(page)) == 40 and page.count(">2/2<") == 40


def test_list_htmx_request_gets_the_table_only(analyst_client, iris):
    make_run(iris)

    response = analyst_client.get("/runs/?status=queued", headers=HTMX)

    assert [t.name for t in response.templates][0] == "pipelines/htmx/run_table.html"
    assert "<form" not in response.content.decode()
    assert "HX-Request" in response["Vary"]


# ---- The run page ------------------------------------------------------------------


def test_run_page_shows_the_run_its_steps_metrics_and_log(analyst_client, analyst, iris):
    run = make_run(
        iris,
        started_by=analyst,
        trigger=RunTrigger.API,
        metrics={"accuracy": 0.912345, "rmse": 1234.5},
        mlflow_run_id="abc123def",
        logs="[2026-01-15 12:00:00] Running 2 step(s).\n",
        **ended(seconds=72),
    )
    add_steps(run, 1, status=StepRunStatus.REUSED)
    StepRun.objects.create(
        run=run,
        order=2,
        step_type="drop_na",
        name="Clean",
        status=StepRunStatus.SUCCEEDED,
        rows_in=12000,
        columns_in=5,
        rows_out=11990,
        columns_out=5,
        summary={"dropped_rows": 10, "ratio": 0.00083333, "warnings": ["dates parsed one by one"]},
    )

    response = analyst_client.get(f"/runs/{run.pk}/")

    assert response.status_code == 200
    page = response.content.decode()
    assert '<span class="status succeeded" id="run-status">Succeeded</span>' in page
    assert "API" in page and "analyst" in page and "1 m 12 s" in page
    assert '<span class="status reused">Reused from cache</span>' in page
    assert "12,345 × 5" in page and "12,000 × 5" in page and "11,990 × 5" in page
    assert "<dt>dropped_rows</dt>" in page and '<dd title="0.000833">0.000833</dd>' in page
    assert "<strong>Warning:</strong> dates parsed one by one" in page
    assert ">0.912<" in page and ">1,230<" in page
    assert "<code>abc123def</code>" in page
    assert "Running 2 step(s)." in page
    assert "Identical:" in page
    assert "hx-trigger" not in page  # nothing left to wait for


def test_run_page_of_a_running_run_polls_its_progress(analyst_client, iris):
    run = make_run(iris, status=RunStatus.RUNNING, started_at=timezone.now(), logs="one\n")

    page = analyst_client.get(f"/runs/{run.pk}/").content.decode()

    assert f'hx-get="/runs/{run.pk}/progress/?after=4"' in page
    assert 'hx-trigger="every 1500ms"' in page
    assert "so far" in page and page.count("Waiting") == 2


def test_run_page_shows_the_diff_against_the_pipeline_now(analyst_client, iris):
    run = make_run(iris, **ended())
    PipelineStep.objects.filter(pipeline=iris, order=1).update(name="Load iris")

    page = analyst_client.get(f"/runs/{run.pk}/").content.decode()

    assert "The pipeline has changed since this run" in page
    assert '<span class="removed">-      &quot;name&quot;: &quot;Load&quot;,</span>' in page
    assert '<span class="added">+      &quot;name&quot;: &quot;Load iris&quot;,</span>' in page


def test_a_failed_run_shows_its_error_to_everyone_and_its_traceback_to_staff_only(
    viewer_client, staff_client, iris
):
    run = make_run(
        iris,
        error_message="step 2 (Clean) failed: no column 'x'",
        error_traceback="Traceback (most recent call last):\n  KeyError: 'x'",
        **ended(RunStatus.FAILED),
    )
    StepRun.objects.create(
        run=run, order=2, step_type="drop_na", status="failed", summary={"error": "no column 'x'"}
    )

    viewer_page = viewer_client.get(f"/runs/{run.pk}/").content.decode()
    staff_page = staff_client.get(f"/runs/{run.pk}/").content.decode()

    for page in (viewer_page, staff_page):
        assert "<strong>Error:</strong> step 2 (Clean) failed: no column &#x27;x&#x27;" in page
        assert "<strong>Error:</strong> no column &#x27;x&#x27;" in page
        assert '<span class="status failed">Failed</span>' in page
    assert "Traceback (most recent call last)" not in viewer_page
    assert "Traceback (most recent call last)" in staff_page


def test_a_retry_links_to_the_run_it_retries_and_back(analyst_client, iris):
    first = make_run(iris, **ended(RunStatus.FAILED))
    retry = make_run(iris, attempt=2, retry_of=first)

    first_page = analyst_client.get(f"/runs/{first.pk}/").content.decode()
    retry_page = analyst_client.get(f"/runs/{retry.pk}/").content.decode()

    assert f'retried as <a href="/runs/{retry.pk}/">#{retry.pk}</a>' in first_page
    assert f'2, retry of <a href="/runs/{first.pk}/">#{first.pk}</a>' in retry_page


def test_a_whole_run_executed_inline_shows_every_step_succeeded(analyst_client, analyst, iris):
    from pipelines.runs import start_run

    run = start_run(iris, user=analyst, wait=True)

    page = analyst_client.get(f"/runs/{run.pk}/").content.decode()

    assert run.status == RunStatus.SUCCEEDED
    assert page.count('<span class="status succeeded">Succeeded</span>') == 2
    assert "150 × 5" in page and "Finished step 2 (Clean)" in page


def test_run_page_query_count_does_not_grow_with_steps(
    analyst_client, iris, django_assert_max_num_queries
):
    small, large = make_run(iris, **ended()), make_run(iris, **ended())
    add_steps(small, 1)
    add_steps(large, 30)
    # Session, user, permissions (2), run, live fields and log, steps, retries, definition.
    with django_assert_max_num_queries(9):
        analyst_client.get(f"/runs/{small.pk}/")
    with django_assert_max_num_queries(9):
        page = analyst_client.get(f"/runs/{large.pk}/").content.decode()
    assert page.count("12,345 × 5") == 30


def test_unknown_run_is_404(analyst_client, db):
    assert analyst_client.get("/runs/999/").status_code == 404
    assert analyst_client.get("/runs/999/progress/").status_code == 404


# ---- The progress fragment ---------------------------------------------------------


@pytest.mark.database
def test_progress_sends_only_new_log_lines_and_keeps_polling_while_running(analyst_client, iris):
    run = make_run(iris, status=RunStatus.RUNNING, logs="old line\n")
    run.append_log("new line")

    response = analyst_client.get(progress_url(run, after=len("old line\n")), headers=HTMX)

    page = response.content.decode()
    assert response.status_code == 200
    assert "new line" in page and "old line" not in page
    assert '<div hx-swap-oob="beforeend:#run-log">' in page
    assert f'hx-get="/runs/{run.pk}/progress/?after={len(run.logs)}"' in page
    assert "no-store" in response["Cache-Control"]


def test_progress_without_new_lines_appends_nothing(analyst_client, iris):
    run = make_run(iris, status=RunStatus.QUEUED, logs="line\n")

    page = analyst_client.get(progress_url(run, after=5), headers=HTMX).content.decode()

    assert "hx-swap-oob" not in page and 'hx-trigger="every 1500ms"' in page


def test_progress_answers_286_with_the_final_state_once_the_run_ended(analyst_client, iris):
    run = make_run(iris, metrics={"accuracy": 0.5}, logs="a\nRun succeeded.\n", **ended())

    response = analyst_client.get(progress_url(run, after=2), headers=HTMX)

    page = response.content.decode()
    assert response.status_code == 286
    assert '<span class="status succeeded" id="run-status">Succeeded</span>' in page
    assert "Run succeeded." in page and ">0.500<" in page
    assert "hx-trigger" not in page


def test_progress_keeps_polling_a_moment_after_the_end_for_the_last_lines(analyst_client, iris):
    run = make_run(iris, **ended(ago=0))

    assert analyst_client.get(progress_url(run), headers=HTMX).status_code == 200


def test_progress_of_a_bad_position_starts_from_the_beginning(analyst_client, iris):
    run = make_run(iris, status=RunStatus.RUNNING, logs="line\n")

    page = analyst_client.get(f"/runs/{run.pk}/progress/?after=-3").content.decode()

    assert "line" in page


# ---- Cancel ------------------------------------------------------------------------


def test_cancel_drops_a_queued_run_and_says_so(analyst_client, iris):
    run = make_run(iris)

    response = analyst_client.post(f"/runs/{run.pk}/cancel/", follow=True)

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert response.redirect_chain == [(f"/runs/{run.pk}/", 302)]
    page = response.content.decode()
    assert f'<strong class="message-word">Done:</strong> Run #{run.pk} was cancelled' in page
    assert '<span class="status cancelled" id="run-status">Cancelled</span>' in page


def test_cancel_of_a_running_run_asks_it_to_stop_through_htmx(analyst_client, iris):
    run = make_run(iris, status=RunStatus.RUNNING, started_at=timezone.now())

    response = analyst_client.post(f"/runs/{run.pk}/cancel/", headers=HTMX)

    run.refresh_from_db()
    assert (run.status, run.cancel_requested) == (RunStatus.RUNNING, True)
    assert [t.name for t in response.templates] == ["pipelines/htmx/run_action_outcome.html"]
    assert "it stops before its next step" in response.content.decode()


def test_cancel_of_a_finished_run_changes_nothing(analyst_client, iris):
    run = make_run(iris, **ended())

    page = analyst_client.post(f"/runs/{run.pk}/cancel/", follow=True).content.decode()

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert "Warning:</strong> Run #" in page and "had already finished" in page


def test_cancel_button_asks_for_confirmation_and_works_without_javascript(analyst_client, iris):
    run = make_run(iris, status=RunStatus.RUNNING, started_at=timezone.now())

    page = analyst_client.get(f"/runs/{run.pk}/").content.decode()
    confirm = analyst_client.get(f"/runs/{run.pk}/cancel/")

    assert f'hx-confirm="Cancel run #{run.pk} of iris?"' in page
    assert f'<form method="get" action="/runs/{run.pk}/cancel/"' in page
    assert confirm.status_code == 200
    body = confirm.content.decode()
    assert f'<form method="post" action="/runs/{run.pk}/cancel/"' in body
    assert "csrfmiddlewaretoken" in body and "Yes, cancel the run" in body
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.RUNNING


def test_cancel_without_permission_is_403_and_its_button_is_hidden(viewer_client, iris):
    run = make_run(iris, status=RunStatus.RUNNING, started_at=timezone.now())

    page = viewer_client.get(f"/runs/{run.pk}/").content.decode()
    response = viewer_client.post(f"/runs/{run.pk}/cancel/")

    assert "Cancel run" not in page and "/cancel/" not in page
    assert response.status_code == 403
    assert "pipelines.change_pipelinerun" in response.content.decode()
    run.refresh_from_db()
    assert (run.status, run.cancel_requested) == (RunStatus.RUNNING, False)


# ---- Run again ---------------------------------------------------------------------


def test_run_again_starts_a_new_run_from_the_same_step_and_opens_it(analyst_client, analyst, iris):
    run = make_run(iris, start_step=2, stop_step=2, trigger=RunTrigger.SCHEDULE, **ended())

    response = analyst_client.post(f"/runs/{run.pk}/again/", follow=True)

    new = PipelineRun.objects.exclude(pk=run.pk).get()
    assert (new.start_step, new.stop_step) == (2, 2)  # "only this step" stays one step
    assert (new.trigger, new.started_by) == (RunTrigger.MANUAL, analyst)
    assert new.status == RunStatus.QUEUED
    assert response.redirect_chain == [(f"/runs/{new.pk}/", 302)]
    assert f"Run #{new.pk} of iris queued." in response.content.decode()


def test_run_again_refused_by_a_busy_pipeline_shows_why(analyst_client, make_pipeline):
    pipeline = make_pipeline(IRIS_STEPS, name="iris", concurrency_policy="refuse")
    run = make_run(pipeline, status=RunStatus.RUNNING, started_at=timezone.now())

    response = analyst_client.post(f"/runs/{run.pk}/again/", follow=True)

    page = response.content.decode()
    assert response.redirect_chain == [(f"/runs/{run.pk}/", 302)]
    assert '<p class="message error"' in page
    assert f"iris was not started: iris is at its limit of 1 active run(s): run #{run.pk}" in page
    assert PipelineRun.objects.count() == 1


def test_run_again_of_a_pipeline_now_invalid_shows_its_errors(analyst_client, iris):
    run = make_run(iris, **ended())
    PipelineStep.objects.create(pipeline=iris, order=3, step_type="no_such_type")

    page = analyst_client.post(f"/runs/{run.pk}/again/", follow=True).content.decode()

    assert "iris was not started: step 3, type: unknown step type" in page
    assert PipelineRun.objects.count() == 1


def test_run_again_without_permission_is_403_and_its_button_is_hidden(viewer, client, iris):
    client.force_login(grant(viewer, "change_pipelinerun"))
    run = make_run(iris, status=RunStatus.RUNNING, started_at=timezone.now())

    page = client.get(f"/runs/{run.pk}/").content.decode()
    response = client.post(f"/runs/{run.pk}/again/")

    assert "Run again" not in page and "Cancel run" in page
    assert response.status_code == 403 and "pipelines.add_pipelinerun" in response.content.decode()
    assert PipelineRun.objects.count() == 1


def test_run_again_is_post_only(analyst_client, iris):
    run = make_run(iris, **ended())

    assert analyst_client.get(f"/runs/{run.pk}/again/").status_code == 405


# ---- Login and layout --------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/runs/"),
        ("get", "/runs/1/"),
        ("get", "/runs/1/progress/"),
        ("get", "/runs/1/cancel/"),
        ("post", "/runs/1/cancel/"),
        ("post", "/runs/1/again/"),
    ],
)
def test_run_pages_require_login(client, db, method, path):
    response = getattr(client, method)(path)

    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/?next=")


def test_navigation_shows_admin_to_staff_only_and_marks_the_current_section(
    viewer_client, staff_client, db
):
    viewer_page = viewer_client.get("/runs/").content.decode()
    staff_page = staff_client.get("/runs/").content.decode()

    assert '<a href="/runs/" aria-current="page">Runs</a>' in viewer_page
    assert 'href="/pipelines/"' in viewer_page and 'href="/admin/"' not in viewer_page
    assert 'href="/admin/"' in staff_page
    assert "Log out" in viewer_page and "viewer" in viewer_page


# ---- Through a real server ---------------------------------------------------------


def test_run_page_and_progress_through_a_real_server(live_server, analyst, iris):
    running = make_run(iris, status=RunStatus.RUNNING, started_at=timezone.now(), logs="a\n")
    finished = make_run(iris, logs="a\nRun succeeded.\n", **ended())
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = opener.open(f"{live_server.url}/accounts/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
    form = f"csrfmiddlewaretoken={token}&username=analyst&password={PASSWORD.replace(' ', '+')}"
    opener.open(f"{live_server.url}/accounts/login/", data=form.encode()).read()

    def get(path: str, **headers):
        request = urllib.request.Request(f"{live_server.url}{path}", headers=headers)
        with opener.open(request) as response:
            return response.status, response.reason, response.headers, response.read().decode()

    status, _, headers, page = get(f"/runs/{running.pk}/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "HX-Request" in headers["Vary"] and "no-store" in headers["Cache-Control"]
    assert f"/runs/{running.pk}/progress/?after=2" in page

    status, _, _, fragment = get(progress_url(running, after=2), **{"HX-Request": "true"})
    assert status == 200 and 'hx-trigger="every 1500ms"' in fragment

    status, reason, headers, fragment = get(progress_url(finished, after=2), **HTMX)
    assert (status, reason) == (286, "Stop Polling")
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Run succeeded." in fragment and "hx-trigger" not in fragment


@pytest.fixture
def browser_page(monkeypatch):
    require_chromium()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls are ours.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(8_000)
        yield page
        browser.close()


def test_run_page_follows_a_run_live_without_reloading(live_server, browser_page, analyst, iris):
    page = browser_page
    run = make_run(iris, status=RunStatus.RUNNING, started_at=timezone.now())
    run.append_log("Running 2 step(s).")
    page.goto(f"{live_server.url}/accounts/login/?next=/runs/{run.pk}/")
    page.fill("#id_username", "analyst")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/runs/{run.pk}/")
    page.evaluate("window.sameDocument = true")

    add_steps(run, 1)
    run.append_log("Finished step 1 (Step 1): 12000 rows x 5 columns.")
    page.locator("#run-log").get_by_text("Finished step 1").wait_for()
    page.locator("#run-progress").get_by_text("12,000 × 5").wait_for()

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#run-cancel")
    page.locator("#run-action-outcome").get_by_text("is cancelling").wait_for()
    assert PipelineRun.objects.get(pk=run.pk).cancel_requested

    finished = timezone.now() - timedelta(seconds=10)
    PipelineRun.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED, finished_at=finished)
    run.append_log("Run cancelled before step 2 (Step 2); finished steps are kept.")
    page.locator("#run-status").get_by_text("Cancelled").wait_for()
    page.locator("#run-log").get_by_text("Run cancelled").wait_for()

    run.refresh_from_db()
    assert page.locator("#run-log").text_content() == run.logs  # each line once
    assert page.evaluate("window.sameDocument") is True
    assert page.locator("#run-progress").get_attribute("hx-trigger") is None
    assert page.locator("#run-cancel").count() == 0
