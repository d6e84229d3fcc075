"""A pipeline's Settings tab (run settings and schedules) and History tab (versions and
their diff), with their HTMX fragments and permissions, through Django's test client."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from pipelines import schedules, services
from pipelines.choices import CatchUpPolicy, OverlapPolicy, RunTrigger, TickOutcome
from pipelines.models import Pipeline, PipelineRun, PipelineSchedule, PipelineVersion, ScheduleTick

LOAD = {"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}}
HTMX = {"HX-Request": "true"}
EDITOR_PERMISSIONS = (
    "change_pipeline",
    "add_pipelineschedule",
    "change_pipelineschedule",
    "delete_pipelineschedule",
    "add_pipelinerun",
)
SETTINGS = {
    "description": "Iris flowers",
    "mlflow_experiment": "",
    "max_active_runs": "1",
    "concurrency_policy": "queue",
    "timeout_seconds": "",
    "max_retries": "0",
    "retry_backoff_seconds": "30",
}


def with_permissions(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def editor(django_user_model):
    return with_permissions(django_user_model.objects.create_user("editor"), *EDITOR_PERMISSIONS)


@pytest.fixture
def editor_client(editor):
    return logged_in(editor)


@pytest.fixture
def viewer_client(django_user_model):
    return logged_in(django_user_model.objects.create_user("viewer"))


@pytest.fixture
def iris(editor):
    return services.create_pipeline("iris", "Iris flowers", owner=editor, steps=[LOAD], user=editor)


@pytest.fixture
def paris(iris):
    return schedules.create_schedule(iris, cron="0 6 * * *", timezone="Europe/Paris")


def content(response) -> str:
    return response.content.decode()


def settings_url(pipeline) -> str:
    return f"/pipelines/{pipeline.pk}/settings/"


def history_url(pipeline) -> str:
    return f"/pipelines/{pipeline.pk}/history/"


def schedule_url(schedule, action: str) -> str:
    return f"/pipelines/{schedule.pipeline_id}/schedules/{schedule.pk}/{action}/"


def preview_url(pipeline, **query) -> str:
    values = {"cron": "", "interval_seconds": "", "timezone": "UTC", **query}
    return f"/pipelines/{pipeline.pk}/schedules/preview/?" + "&".join(
        f"{key}={value}" for key, value in values.items()
    )


def pipeline_state(pipeline) -> tuple:
    return (
        Pipeline.objects.filter(pk=pipeline.pk).values().get(),
        list(PipelineVersion.objects.filter(pipeline=pipeline).values()),
    )


def field_error(page: str, field: str) -> str:
    """The text of the errors shown under a field (empty when it has none)."""
    found = re.search(rf'<div class="field-error" id="id_{field}_error">(.*?)</div>', page, re.S)
    return re.sub(r"<[^>]+>", "", found.group(1)) if found else ""


def make_versions(pipeline, count: int) -> None:
    for number in range(count):
        services.update_pipeline(pipeline, settings={"description": f"revision {number}"})


# -- Tabs and login --------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["settings", "history"])
def test_the_tabs_need_a_login(client, iris, page):
    response = client.get(f"/pipelines/{iris.pk}/{page}/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(("page", "label"), [("settings", "Settings"), ("history", "History")])
def test_the_tabs_link_steps_settings_history_and_runs_marking_the_current_one(
    viewer_client, iris, page, label
):
    html = content(viewer_client.get(f"/pipelines/{iris.pk}/{page}/"))

    assert f'href="/pipelines/{iris.pk}/"' in html
    assert f'href="/runs/?pipeline={iris.pk}">Runs</a>' in html
    assert f'href="/pipelines/{iris.pk}/{page}/" aria-current="page">{label}</a>' in html
    assert html.count('aria-current="page">') == 2  # the top bar's Pipelines and this tab


def test_an_unknown_pipeline_is_not_found(viewer_client):
    assert viewer_client.get("/pipelines/999/settings/").status_code == 404
    assert viewer_client.get("/pipelines/999/history/").status_code == 404


# -- Settings --------------------------------------------------------------------------------


def test_the_settings_form_shows_the_current_values_and_the_defaults(editor_client, iris):
    response = editor_client.get(settings_url(iris))
    html = content(response)

    assert response.status_code == 200
    assert "Iris flowers</textarea>" in html
    assert 'name="max_active_runs" value="1"' in html
    assert '<option value="queue" selected>Queue the new run</option>' in html
    assert "empty uses pipeline/iris." in html
    assert "empty uses the site default, 3600 s (1 h 0 m)" in html
    assert 'name="timeout_seconds" placeholder="3600 (site default)"' in html
    assert "Save settings" in html and 'name="csrfmiddlewaretoken"' in html


def test_the_default_experiment_in_the_help_is_escaped(editor_client, editor):
    pipeline = services.create_pipeline("<b>bold</b>", steps=[LOAD], user=editor)

    html = content(editor_client.get(settings_url(pipeline)))

    assert "empty uses pipeline/&lt;b&gt;bold&lt;/b&gt;." in html
    assert "<b>bold</b>" not in html


def test_a_viewer_sees_the_settings_read_only_and_is_told_which_permission_is_missing(
    viewer_client, iris
):
    html = content(viewer_client.get(settings_url(iris)))

    assert "Save settings" not in html and 'name="max_active_runs"' not in html
    assert "needs the “pipelines.change_pipeline” permission" in html
    assert '<dd>pipeline/iris <span class="muted">(default)</span></dd>' in html
    assert '<dd>1 h 0 m <span class="muted">(site default)</span></dd>' in html


def test_a_viewer_cannot_save_settings(viewer_client, iris):
    before = pipeline_state(iris)

    response = viewer_client.post(settings_url(iris), {**SETTINGS, "max_retries": "3"})

    assert response.status_code == 403
    assert "pipelines.change_pipeline" in content(response)
    assert pipeline_state(iris) == before


def test_saving_settings_records_a_version_and_names_it(editor_client, iris, editor):
    values = {**SETTINGS, "max_active_runs": "2", "timeout_seconds": "600", "max_retries": "3"}

    response = editor_client.post(settings_url(iris), values, follow=True)

    assert response.redirect_chain == [(settings_url(iris), 302)]
    assert "Settings saved as version 2." in content(response)
    iris.refresh_from_db()
    assert (iris.max_active_runs, iris.timeout_seconds, iris.max_retries) == (2, 600, 3)
    version = iris.versions.get(number=2)
    assert version.changed_by == editor
    assert version.summary == "changed max_active_runs, timeout_seconds, max_retries"


def test_saving_with_htmx_answers_the_form_with_the_outcome(editor_client, iris):
    values = {**SETTINGS, "mlflow_experiment": "flowers"}

    response = editor_client.post(settings_url(iris), values, headers=HTMX)
    html = content(response)

    assert response.templates[0].name == "pipelines/htmx/settings_form.html"
    assert "<html" not in html and 'id="run-settings"' in html
    assert '<strong class="message-word">Done:</strong> Settings saved as version 2.' in html
    assert 'name="mlflow_experiment" value="flowers"' in html
    assert Pipeline.objects.get(pk=iris.pk).experiment_name == "flowers"


def test_saving_unchanged_settings_records_no_version(editor_client, iris):
    response = editor_client.post(settings_url(iris), SETTINGS, headers=HTMX)

    assert "Nothing changed, so no version was recorded." in content(response)
    assert iris.versions.count() == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_active_runs", "0", "At least one run must be allowed."),
        ("timeout_seconds", "21600", "must stay under the worker task limit Q_TIMEOUT"),
        ("retry_backoff_seconds", "-5", "greater than or equal to 0"),
        ("mlflow_experiment", "x" * 201, "at most 200 characters"),
    ],
)
def test_invalid_settings_are_shown_next_to_their_fields_and_nothing_is_saved(
    editor_client, iris, settings, field, value, message
):
    settings.Q_TIMEOUT = 21600
    before = pipeline_state(iris)
    values = {**SETTINGS, "description": "changed too", field: value}

    response = editor_client.post(settings_url(iris), values)
    html = content(response)

    assert response.status_code == 200
    assert "the settings were not saved" in html
    assert message in field_error(html, field)
    assert [name for name in SETTINGS if field_error(html, name)] == [field]
    # What was typed is kept, and linked to its error for screen readers.
    assert f'value="{value}"' in html and "changed too</textarea>" in html
    assert f'aria-invalid="true" aria-describedby="id_{field}_helptext id_{field}_error"' in html
    assert pipeline_state(iris) == before


def test_a_value_that_is_not_a_number_is_an_error_of_its_field(editor_client, iris):
    before = pipeline_state(iris)

    response = editor_client.post(
        settings_url(iris), {**SETTINGS, "max_retries": "many"}, headers=HTMX
    )

    assert "Enter a whole number." in field_error(content(response), "max_retries")
    assert 'name="max_retries" value="many"' in content(response)
    assert pipeline_state(iris) == before


# -- Schedules: the table --------------------------------------------------------------------


def test_schedules_show_rule_zone_state_next_run_in_their_zone_policies_and_latest_ticks(
    viewer_client, iris, paris
):
    interval = schedules.create_schedule(
        iris, interval_seconds=3600, overlap_policy=OverlapPolicy.QUEUE, catch_up="all"
    )
    schedules.pause_schedule(interval)
    run = PipelineRun.objects.create(pipeline=iris, trigger=RunTrigger.SCHEDULE)
    start = datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
    for day in range(4):
        ScheduleTick.objects.create(
            schedule=paris,
            tick_at=start + timedelta(days=day),
            outcome=TickOutcome.STARTED if day == 3 else TickOutcome.SKIPPED,
            reason="" if day == 3 else f"run #{day} still running",
            run=run if day == 3 else None,
        )

    html = content(viewer_client.get(settings_url(iris)))

    assert "<code>cron 0 6 * * *</code>" in html and "<code>every 3600 s</code>" in html
    assert '<td class="zone">Europe/Paris</td>' in html
    assert '<span class="status enabled">enabled</span>' in html
    assert '<span class="status disabled">disabled</span>' in html
    next_run = schedules.local_time(paris, paris.next_tick_at)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d 06:00 CES?T", next_run)
    assert f">{next_run}</time>" in html
    assert "none while disabled" in html
    assert "Skip the tick" in html and "Queue a run" in html
    assert "All: run every missed tick" in html
    # The three latest ticks, in the schedule's zone, with their outcome as a word.
    assert '<span class="status tick-started">started</span>' in html
    assert "2026-03-04 06:00 CET" in html and f'<a href="/runs/{run.pk}/">run #{run.pk}</a>' in html
    assert "run #1 still running" in html and "run #2 still running" in html
    assert "2026-03-01 06:00 CET" not in html


def test_no_schedules_says_what_to_do(editor_client, iris):
    html = content(editor_client.get(settings_url(iris)))

    assert "No schedules: this pipeline runs only when someone starts it." in html
    assert "Add one below" in html


def test_a_viewer_sees_schedules_without_buttons_and_which_permissions_they_need(
    viewer_client, iris, paris
):
    html = content(viewer_client.get(settings_url(iris)))

    assert "cron 0 6 * * *" in html
    for word in (">Disable</button>", ">Fire now</button>", ">Delete</button>", "Add schedule"):
        assert word not in html
    assert "“pipelines.change_pipelineschedule”" in html
    assert "Adding schedules needs the “pipelines.add_pipelineschedule” permission" in html


def test_an_editor_sees_every_schedule_button(editor_client, iris, paris):
    html = content(editor_client.get(settings_url(iris)))

    assert f'hx-post="{schedule_url(paris, "pause")}"' in html and ">Disable</button>" in html
    assert f'hx-post="{schedule_url(paris, "fire")}"' in html
    assert f'<form method="get" action="{schedule_url(paris, "delete")}">' in html
    assert 'hx-confirm="Delete the schedule cron 0 6 * * * (Europe/Paris)' in html
    assert ">Add schedule</button>" in html


def test_firing_is_hidden_without_the_right_to_start_runs(django_user_model, iris, paris):
    user = with_permissions(
        django_user_model.objects.create_user("scheduler"), "change_pipelineschedule"
    )
    client = logged_in(user)

    html = content(client.get(settings_url(iris)))
    response = client.post(schedule_url(paris, "fire"))

    assert ">Disable</button>" in html and ">Fire now</button>" not in html
    assert ">Delete</button>" not in html
    assert response.status_code == 403 and "pipelines.add_pipelinerun" in content(response)
    assert not paris.ticks.exists()


# -- Schedules: adding and previewing --------------------------------------------------------


def test_adding_a_schedule_saves_it_and_says_when_it_first_runs(editor_client, iris):
    values = {
        "cron": " 30 2 * * 1-5 ",
        "interval_seconds": "",
        "timezone": "America/New_York",
        "overlap_policy": "queue",
        "catch_up": "latest",
    }

    response = editor_client.post(f"/pipelines/{iris.pk}/schedules/add/", values, follow=True)

    assert response.redirect_chain == [(settings_url(iris) + "#schedules", 302)]
    schedule = iris.schedules.get()
    assert (schedule.cron, schedule.timezone) == ("30 2 * * 1-5", "America/New_York")
    assert (schedule.overlap_policy, schedule.catch_up) == (OverlapPolicy.QUEUE, "latest")
    first = schedules.local_time(schedule, schedule.next_tick_at)
    html = content(response)
    assert (
        f"Schedule added: cron 30 2 * * 1-5 (America/New_York); its first run is due {first}."
        in html
    )


def test_adding_with_htmx_answers_the_schedules_section_with_the_new_row(editor_client, iris):
    values = {"cron": "", "interval_seconds": "900", "timezone": "UTC"}
    values |= {"overlap_policy": "skip", "catch_up": "none"}

    response = editor_client.post(f"/pipelines/{iris.pk}/schedules/add/", values, headers=HTMX)
    html = content(response)

    assert response.templates[0].name == "pipelines/htmx/schedule_section.html"
    assert "<html" not in html and '<section id="schedules"' in html
    assert "<code>every 900 s</code>" in html and "Schedule added: every 900 s (UTC)" in html
    interval_input = re.search(r'<input type="number" name="interval_seconds"[^>]*>', html)
    assert "value=" not in interval_input.group(0)  # a fresh form


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"cron": "61 * * * *"}, "cron", "'61 * * * *' is not a valid cron expression."),
        ({"cron": "0 6 * *"}, "cron", "must have five fields"),
        ({"cron": "", "interval_seconds": ""}, "cron", "Set a cron expression or an interval"),
        ({"cron": "@daily", "interval_seconds": "60"}, "interval_seconds", "not both"),
        ({"cron": "", "interval_seconds": "30"}, "interval_seconds", "at least 60 seconds"),
        ({"timezone": "Mars/Olympus"}, "timezone", "Unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_rejected_schedule_shows_the_error_at_its_field_and_saves_nothing(
    editor_client, iris, values, field, message
):
    posted = {"cron": "0 6 * * *", "interval_seconds": "", "timezone": "UTC"}
    posted |= {"overlap_policy": "skip", "catch_up": "none", **values}

    response = editor_client.post(f"/pipelines/{iris.pk}/schedules/add/", posted, headers=HTMX)
    html = content(response)

    assert "the schedule was not added" in html
    assert message in field_error(html, field).replace("&#x27;", "'")
    if posted["cron"]:
        assert f'value="{posted["cron"]}"' in html  # as typed
    assert not PipelineSchedule.objects.exists()


def test_adding_needs_the_add_permission(viewer_client, iris):
    posted = {"cron": "0 6 * * *", "timezone": "UTC", "overlap_policy": "skip", "catch_up": "none"}

    response = viewer_client.post(f"/pipelines/{iris.pk}/schedules/add/", posted)

    assert response.status_code == 403
    assert "pipelines.add_pipelineschedule" in content(response)
    assert not PipelineSchedule.objects.exists()


def test_the_add_form_previews_the_rule_as_it_is_typed(editor_client, iris):
    html = content(editor_client.get(settings_url(iris)))

    assert f'hx-get="/pipelines/{iris.pk}/schedules/preview/"' in html
    assert 'hx-trigger="input changed delay:300ms"' in html
    assert 'hx-target="#schedule-preview"' in html
    assert '<option value="UTC" selected>UTC</option>' in html
    assert html.index('value="UTC"') < html.index('value="Africa/Abidjan"')  # UTC first
    assert "the next 5 fire times show here" in html


def test_the_preview_lists_the_next_5_fire_times_in_the_chosen_zone(editor_client, iris):
    response = editor_client.get(
        preview_url(iris, cron="0+6+*+*+1-5", timezone="America/New_York"), headers=HTMX
    )
    html = content(response)

    assert response.templates[0].name == "pipelines/htmx/schedule_preview.html"
    assert "Next 5 fire times in <strong>America/New_York</strong>" in html
    times = re.findall(r"<li><time datetime=\"[^\"]+\">([^<]+)</time></li>", html)
    assert len(times) == 5
    assert all(
        re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri) \d{4}-\d\d-\d\d 06:00 E[SD]T", t) for t in times
    )
    assert "HX-Request" in response["Vary"]


def test_the_preview_of_an_interval_counts_from_now(editor_client, iris):
    html = content(
        editor_client.get(
            preview_url(iris, interval_seconds="86400", timezone="Asia/Tokyo"), headers=HTMX
        )
    )

    times = re.findall(r"<time datetime=\"([^\"]+)\">[^<]+ JST</time>", html)
    assert len(times) == 5
    moments = [datetime.fromisoformat(t) for t in times]
    assert {b - a for a, b in zip(moments, moments[1:], strict=False)} == {timedelta(days=1)}


def test_preview_ticks_are_those_a_new_schedule_would_fire_across_a_dst_change():
    now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)

    ticks = schedules.preview_ticks("30 2 * * *", "Europe/Paris", None, count=3, now=now)

    # 02:30 does not exist on 29 March in Paris: that tick fires at 03:00 CEST.
    assert [t.strftime("%Y-%m-%d %H:%M %Z") for t in ticks] == [
        "2026-03-29 03:00 CEST",
        "2026-03-30 02:30 CEST",
        "2026-03-31 02:30 CEST",
    ]
    with pytest.raises(ValidationError) as caught:
        schedules.preview_ticks("", "Nowhere/Land", 30)
    assert set(caught.value.message_dict) == {"interval_seconds", "timezone"}


@pytest.mark.parametrize(
    ("query", "label", "message"),
    [
        ({"cron": "0+25+*+*+*"}, "Cron expression", "is not a valid cron expression."),
        ({"cron": "0+6+*+*+*", "timezone": "Mars/Olympus"}, "Time zone", "Unknown time zone"),
        ({"interval_seconds": "soon"}, "Interval (seconds)", "Enter a whole number."),
        ({"interval_seconds": "9" * 20}, "Interval (seconds)", "less than or equal to"),
    ],
)
def test_the_preview_of_a_bad_rule_names_the_field_at_fault(
    editor_client, iris, query, label, message
):
    html = content(editor_client.get(preview_url(iris, **query), headers=HTMX))

    assert "<li>" in html and f"<strong>{label}:</strong>" in html and message in html
    assert "fire times in" not in html


def test_the_preview_of_nothing_says_what_to_type(editor_client, iris):
    html = content(editor_client.get(preview_url(iris), headers=HTMX))

    assert "the next 5 fire times show here" in html and "Error" not in html


def test_the_preview_without_htmx_is_the_page_with_the_form_as_typed(editor_client, iris):
    response = editor_client.get(preview_url(iris, cron="0+6+*+*+*", timezone="Europe/Paris"))
    html = content(response)

    assert response.templates[0].name == "pipelines/pipeline_settings.html"
    assert 'value="0 6 * * *"' in html and '<option value="Europe/Paris" selected>' in html
    assert "Next 5 fire times in <strong>Europe/Paris</strong>" in html


# -- Schedules: pause, resume, fire, delete --------------------------------------------------


def test_disabling_and_enabling_a_schedule(editor_client, iris, paris):
    response = editor_client.post(schedule_url(paris, "pause"), headers=HTMX)

    assert response.templates[0].name == "pipelines/htmx/schedule_section.html"
    assert '<span class="status disabled">disabled</span>' in content(response)
    assert ">Enable</button>" in content(response)
    assert "disabled: it fires no more until enabled again" in content(response)
    assert not PipelineSchedule.objects.get(pk=paris.pk).enabled

    response = editor_client.post(schedule_url(paris, "resume"))

    assert response.status_code == 302
    paris.refresh_from_db()
    assert paris.enabled and paris.next_tick_at > datetime.now(UTC)
    page = content(editor_client.get(response["Location"]))
    assert "enabled from now; its next run is due" in page


def test_enabling_an_enabled_schedule_leaves_its_next_tick(editor_client, iris, paris):
    due = paris.next_tick_at

    response = editor_client.post(schedule_url(paris, "resume"), headers=HTMX)

    assert "was already enabled" in content(response)
    paris.refresh_from_db()
    assert paris.next_tick_at == due


def test_firing_a_schedule_queues_a_run_and_links_it(editor_client, iris, paris):
    response = editor_client.post(schedule_url(paris, "fire"), headers=HTMX)

    tick = paris.ticks.get()
    assert tick.outcome == TickOutcome.STARTED and tick.run.trigger == RunTrigger.SCHEDULE
    html = content(response)
    assert f"run #{tick.run_id} queued" in html
    assert f'<a href="/runs/{tick.run_id}/">Open run #{tick.run_id}</a>' in html
    assert '<span class="status tick-started">started</span>' in html


def test_firing_while_a_run_is_active_is_skipped_and_says_why(editor_client, iris, paris):
    active = PipelineRun.objects.create(pipeline=iris)

    response = editor_client.post(schedule_url(paris, "fire"), headers=HTMX)

    assert f"skipped, run #{active.pk} still queued" in content(response)
    assert paris.ticks.get().outcome == TickOutcome.SKIPPED


def test_deleting_asks_first_on_a_page_of_its_own_without_javascript(editor_client, iris, paris):
    schedules.fire_now(paris)

    response = editor_client.get(schedule_url(paris, "delete"))
    html = content(response)

    assert response.status_code == 200
    assert "Delete this schedule?" in html and "its 1 recorded tick is deleted" in html
    assert f'<form method="post" action="{schedule_url(paris, "delete")}"' in html
    assert PipelineSchedule.objects.filter(pk=paris.pk).exists()


def test_deleting_a_schedule_removes_it_and_its_ticks_but_keeps_its_runs(
    editor_client, iris, paris
):
    run = schedules.fire_now(paris).run

    response = editor_client.post(schedule_url(paris, "delete"), follow=True)

    assert "Schedule cron 0 6 * * * (Europe/Paris) deleted with its tick history." in content(
        response
    )
    assert not PipelineSchedule.objects.exists() and not ScheduleTick.objects.exists()
    assert PipelineRun.objects.filter(pk=run.pk).exists()


def test_deleting_with_htmx_answers_the_section_without_the_row(editor_client, iris, paris):
    response = editor_client.post(schedule_url(paris, "delete"), headers=HTMX)

    assert f'id="schedule-{paris.pk}"' not in content(response)
    assert "No schedules" in content(response)


@pytest.mark.parametrize(
    ("action", "method", "permission"),
    [
        ("pause", "post", "pipelines.change_pipelineschedule"),
        ("resume", "post", "pipelines.change_pipelineschedule"),
        ("fire", "post", "pipelines.change_pipelineschedule"),
        ("delete", "get", "pipelines.delete_pipelineschedule"),
        ("delete", "post", "pipelines.delete_pipelineschedule"),
    ],
)
def test_schedule_actions_are_refused_without_their_permission(
    viewer_client, iris, paris, action, method, permission
):
    before = list(PipelineSchedule.objects.values())

    response = getattr(viewer_client, method)(schedule_url(paris, action))

    assert response.status_code == 403
    assert f"“{permission}”" in content(response)
    assert list(PipelineSchedule.objects.values()) == before and not ScheduleTick.objects.exists()


def test_a_schedule_of_another_pipeline_is_not_found(editor_client, iris, paris, editor):
    other = services.create_pipeline("other", steps=[LOAD], user=editor)

    response = editor_client.post(f"/pipelines/{other.pk}/schedules/{paris.pk}/pause/")

    assert response.status_code == 404
    assert PipelineSchedule.objects.get(pk=paris.pk).enabled


def test_actions_need_post(editor_client, paris):
    assert editor_client.get(schedule_url(paris, "pause")).status_code == 405
    assert editor_client.get(schedule_url(paris, "fire")).status_code == 405


# -- History ---------------------------------------------------------------------------------


def test_history_lists_versions_newest_first_with_when_who_and_what(
    viewer_client, iris, editor, settings
):
    settings.TIME_ZONE = "Europe/Paris"
    services.update_pipeline(iris, settings={"max_retries": 2}, user=editor)
    PipelineVersion.objects.filter(pipeline=iris).update(
        created_at=datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    )

    response = viewer_client.get(history_url(iris))
    html = content(response)

    assert response.status_code == 200
    numbers = [v.number for v in response.context["page"].object_list]
    assert numbers == [2, 1]
    assert "2026-07-01 12:00 CEST" in html  # the site's zone, named
    assert "<td>editor</td>" in html
    assert "changed max_retries" in html and "created" in html


def test_history_compares_the_latest_version_with_the_one_before_by_default(viewer_client, iris):
    services.update_pipeline(iris, settings={"description": "Irises, cleaned"})

    html = content(viewer_client.get(history_url(iris)))

    assert "Changes from version 1 to version 2" in html
    assert '<span class="file">--- version 1</span>' in html
    assert (
        '<span class="removed">-  &quot;description&quot;: &quot;Iris flowers&quot;,</span>' in html
    )
    assert (
        '<span class="added">+  &quot;description&quot;: &quot;Irises, cleaned&quot;,</span>'
        in html
    )
    assert "1 line only in version 1" in html and "1 line only in version 2" in html
    assert 'name="a" value="1" aria-label="Compare from version 1" checked' in html
    assert 'name="b" value="2" aria-label="Compare to version 2" checked' in html


def test_history_compares_any_two_versions(viewer_client, iris):
    make_versions(iris, 3)  # versions 2, 3, 4

    html = content(viewer_client.get(history_url(iris) + "?a=4&b=2"))

    assert "Changes from version 4 to version 2" in html
    assert "--- version 4" in html and "+++ version 2" in html
    assert "-  &quot;description&quot;: &quot;revision 2&quot;," in html
    assert "+  &quot;description&quot;: &quot;revision 0&quot;," in html


def test_comparing_a_version_with_itself_says_they_are_the_same(viewer_client, iris):
    make_versions(iris, 1)

    html = content(viewer_client.get(history_url(iris) + "?a=2&b=2"))

    assert "Version 2 and version 2 have the same definition." in html


def test_the_compare_button_swaps_the_diff_with_htmx(viewer_client, iris):
    make_versions(iris, 2)

    page = content(viewer_client.get(history_url(iris)))
    response = viewer_client.get(history_url(iris) + "?a=1&b=3", headers=HTMX)

    assert 'hx-target="#version-diff"' in page and 'hx-push-url="true"' in page
    assert response.templates[0].name == "pipelines/htmx/history_diff.html"
    assert "<html" not in content(response) and "Changes from version 1 to version 3" in content(
        response
    )
    assert "HX-Request" in response["Vary"]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("?a=1&b=9", "iris has no version 9"),
        ("?a=one&b=2", "“one” is not a version number."),
        ("?a=²&b=2", "“²” is not a version number."),
        ("?a=1&b=99999999999999999999999", "is not a version number."),
    ],
)
def test_a_version_that_does_not_exist_is_an_error_not_a_crash(viewer_client, iris, query, problem):
    make_versions(iris, 1)

    response = viewer_client.get(history_url(iris) + query)

    assert response.status_code == 200
    assert problem in content(response).replace("&#x27;", "'")


def test_a_single_version_says_there_is_nothing_to_compare_yet(viewer_client, iris):
    html = content(viewer_client.get(history_url(iris)))

    assert "Only version 1 so far" in html and "<pre" not in html


def test_no_history_says_where_changes_come_from(viewer_client, iris):
    iris.versions.all().delete()

    html = content(viewer_client.get(history_url(iris)))

    assert "No recorded versions yet." in html
    assert f'href="/pipelines/{iris.pk}/settings/"' in html


def test_history_shows_50_versions_a_page_and_keeps_the_comparison_across_pages(
    viewer_client, iris
):
    make_versions(iris, 59)  # 60 versions

    first = viewer_client.get(history_url(iris))
    second = viewer_client.get(history_url(iris) + "?page=2&a=59&b=60")

    assert len(first.context["page"].object_list) == 50
    assert [v.number for v in second.context["page"].object_list] == list(range(10, 0, -1))
    assert "Page 1 of 2" in content(first) and 'href="?page=2"' in content(first)
    # Versions 59 and 60 are on page 1: page 2 carries them in hidden fields.
    assert '<input type="hidden" name="a" value="59">' in content(second)
    assert '<input type="hidden" name="b" value="60">' in content(second)
    assert '<input type="hidden" name="a"' not in content(first)


# -- Query counts ----------------------------------------------------------------------------


def add_schedules_with_ticks(pipeline, count: int) -> None:
    for index in range(count):
        schedule = schedules.create_schedule(pipeline, interval_seconds=3600 + index)
        for day in range(4):
            moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day)
            ScheduleTick.objects.create(
                schedule=schedule, tick_at=moment, outcome=TickOutcome.SKIPPED, reason="test"
            )


def test_the_settings_page_query_count_does_not_grow_with_schedules(
    editor_client, iris, django_assert_max_num_queries
):
    add_schedules_with_ticks(iris, 1)
    with CaptureQueriesContext(connection) as few:
        editor_client.get(settings_url(iris))
    add_schedules_with_ticks(iris, 9)

    with django_assert_max_num_queries(len(few)):
        html = content(editor_client.get(settings_url(iris)))

    assert html.count('<div class="tick">') == 10 * 3


def test_the_history_page_query_count_does_not_grow_with_versions(
    viewer_client, iris, editor, django_assert_max_num_queries
):
    make_versions(iris, 2)
    with CaptureQueriesContext(connection) as few:
        viewer_client.get(history_url(iris))
    for number in range(40):
        services.update_pipeline(iris, settings={"max_retries": number % 5 + 1}, user=editor)

    with django_assert_max_num_queries(len(few)):
        html = content(viewer_client.get(history_url(iris)))

    assert html.count('aria-label="Compare from version') == 43


def test_catch_up_policies_are_offered_in_the_add_form(editor_client, iris):
    html = content(editor_client.get(settings_url(iris)))

    for value, label in CatchUpPolicy.choices:
        assert f'<option value="{value}"' in html and label in html


# -- In a real browser: the HTMX wiring --------------------------------------------------------


def test_in_a_browser_the_preview_follows_typing_and_actions_swap_the_section(
    live_server, editor, iris, paris, monkeypatch
):
    from pipelines.tests.browser import PASSWORD, chromium_page, log_in

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    editor.set_password(PASSWORD)
    editor.save()
    with chromium_page() as page:
        log_in(page, live_server.url, "editor", settings_url(iris))
        page.evaluate("window.sameDocument = true")
        preview = page.locator("#schedule-preview")

        page.fill("#id_cron", "0 6 * * *")
        page.select_option("#id_timezone", "Asia/Tokyo")
        preview.get_by_text("Asia/Tokyo").wait_for()
        times = preview.locator("li").all_inner_texts()
        page.fill("#id_cron", "0 6 * *")  # the box stays, now with the error
        preview.get_by_text("must have five fields").wait_for()
        error = preview.inner_text()

        page.click(f"#schedule-{paris.pk} >> text=Disable")
        page.locator("#schedules .message").get_by_text("it fires no more").wait_for()
        page.once("dialog", lambda dialog: dialog.accept())  # hx-confirm
        page.click(f"#schedule-{paris.pk} >> text=Delete")
        page.locator("#schedules .message").get_by_text("deleted with its tick").wait_for()
        same_document = page.evaluate("window.sameDocument")

    assert len(times) == 5 and all(time.endswith("06:00 JST") for time in times)
    assert "Cron expression:" in error
    assert same_document is True
    assert not PipelineSchedule.objects.exists()
