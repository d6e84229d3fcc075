"""/api/v1/schedules/: list, create, read, change and delete schedules; pause, resume, fire.

Every refused request is checked to have changed nothing.
"""

import json
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from pipelines import runs, schedules
from pipelines.api.tokens import issue_token
from pipelines.models import PipelineRun, PipelineSchedule, ScheduleTick

STEPS = [{"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}}]
ADD = "pipelines.add_pipelineschedule"
CHANGE = "pipelines.change_pipelineschedule"
DELETE = "pipelines.delete_pipelineschedule"
ADD_RUN = "pipelines.add_pipelinerun"
URL = "/api/v1/schedules/"


def at(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.fixture
def iris(make_pipeline):
    return make_pipeline(STEPS, name="iris")


@pytest.fixture
def paris_daily(iris):
    """06:00 in Paris every day; its next tick is 2026-03-28 06:00 CET, before the DST change."""
    return schedules.create_schedule(
        iris, cron="0 6 * * *", timezone="Europe/Paris", now=at(2026, 3, 27, 12)
    )


def detail(schedule, action=""):
    return f"{URL}{schedule.pk}/{action + '/' if action else ''}"


def errors(response) -> list[tuple]:
    return [(error["field"], error["message"]) for error in response.json()["errors"]]


def stored(schedule) -> dict:
    """What the database holds of a schedule, to show a refused request changed nothing."""
    return PipelineSchedule.objects.filter(pk=schedule.pk).values().get()


# -- list and read -----------------------------------------------------------------------


def test_list_shows_each_rule_in_words_and_its_next_runs_in_utc_and_local_time(api_as, paris_daily):
    response = api_as().get(URL)

    assert response.status_code == 200
    assert response.json()["count"] == 1
    [shown] = response.json()["results"]
    assert shown["pipeline"] == "iris"
    assert shown["url"] == f"http://testserver{detail(paris_daily)}"
    assert (shown["cron"], shown["interval_seconds"], shown["timezone"]) == (
        "0 6 * * *",
        None,
        "Europe/Paris",
    )
    assert (shown["enabled"], shown["overlap_policy"], shown["catch_up"]) == (True, "skip", "none")
    assert shown["rule"] == "cron 0 6 * * *"
    # Paris moves from UTC+1 to UTC+2 on 2026-03-29: 06:00 local stays 06:00 local.
    assert shown["next_runs"] == [
        {"utc": "2026-03-28T05:00:00Z", "local": "2026-03-28T06:00:00+01:00"},
        {"utc": "2026-03-29T04:00:00Z", "local": "2026-03-29T06:00:00+02:00"},
        {"utc": "2026-03-30T04:00:00Z", "local": "2026-03-30T06:00:00+02:00"},
        {"utc": "2026-03-31T04:00:00Z", "local": "2026-03-31T06:00:00+02:00"},
        {"utc": "2026-04-01T04:00:00Z", "local": "2026-04-01T06:00:00+02:00"},
    ]


def test_interval_next_runs_follow_the_stored_tick_and_a_paused_schedule_has_none(api_as, iris):
    schedule = schedules.create_schedule(iris, interval_seconds=900, now=at(2026, 5, 1, 10, 7))
    paused = schedules.pause_schedule(schedules.create_schedule(iris, interval_seconds=600))

    client = api_as()
    shown = client.get(detail(schedule)).json()
    assert shown["rule"] == "every 900 s"
    assert [run["utc"] for run in shown["next_runs"]][:3] == [
        "2026-05-01T10:22:00Z",
        "2026-05-01T10:37:00Z",
        "2026-05-01T10:52:00Z",
    ]
    assert client.get(detail(paused)).json()["next_runs"] == []


def test_list_filters_by_pipeline_name_or_id_and_by_enabled(api_as, iris, make_pipeline):
    other = make_pipeline(STEPS, name="other")
    active = schedules.create_schedule(iris, interval_seconds=600)
    paused = schedules.pause_schedule(schedules.create_schedule(iris, cron="@daily"))
    elsewhere = schedules.create_schedule(other, interval_seconds=600)
    client = api_as()

    def ids(query):
        response = client.get(f"{URL}?{query}")
        assert response.status_code == 200
        return [schedule["id"] for schedule in response.json()["results"]]

    assert ids("pipeline=iris") == [active.pk, paused.pk]
    assert ids(f"pipeline={other.pk}") == [elsewhere.pk]
    assert ids("enabled=false") == [paused.pk]
    assert ids("enabled=true&pipeline=iris") == [active.pk]
    assert ids("page_size=2&page=2") == [elsewhere.pk]


def test_list_refuses_an_unknown_pipeline_or_enabled_value(api_as, iris):
    client = api_as()

    response = client.get(f"{URL}?pipeline=nope")
    assert response.status_code == 400
    assert errors(response) == [("pipeline", "no pipeline named or numbered 'nope'")]
    response = client.get(f"{URL}?enabled=maybe")
    assert response.status_code == 400
    assert errors(response) == [
        ("enabled", "Select a valid choice. maybe is not one of the available choices.")
    ]


def test_listing_costs_the_same_queries_for_one_schedule_or_many(api_as, iris, make_pipeline):
    client = api_as()
    schedules.create_schedule(iris, cron="0 6 * * *", timezone="Asia/Tokyo")
    client.get(URL)  # the token's and the rate limit's first-use writes
    with CaptureQueriesContext(connection) as one:
        assert client.get(URL).status_code == 200
    for index in range(5):
        pipeline = make_pipeline(STEPS, name=f"more-{index}")
        schedules.create_schedule(pipeline, interval_seconds=600 + index)
    with CaptureQueriesContext(connection) as six:
        assert len(client.get(URL).json()["results"]) == 6
    assert len(six) == len(one)


def test_reading_needs_a_login_and_an_unknown_id_is_a_404(client, api_as, paris_daily):
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert client.get(detail(paris_daily)).status_code == 401

    api = api_as()
    for path in (f"{URL}{paris_daily.pk + 1}/", f"{URL}abc/"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


# -- create ------------------------------------------------------------------------------


def test_create_a_cron_schedule_in_a_time_zone(api_as, iris):
    before = timezone.now()
    response = api_as(ADD).post(
        URL,
        {"pipeline": "iris", "cron": " 30 2 * * 1-5 ", "timezone": "America/New_York"},
        format="json",
    )

    assert response.status_code == 201
    schedule = PipelineSchedule.objects.get()
    assert response.json()["id"] == schedule.pk
    assert response["Location"] == f"http://testserver{detail(schedule)}"
    assert (schedule.pipeline, schedule.cron, schedule.timezone) == (
        iris,
        "30 2 * * 1-5",
        "America/New_York",
    )
    assert (schedule.enabled, schedule.overlap_policy, schedule.catch_up) == (True, "skip", "none")
    first = datetime.fromisoformat(response.json()["next_runs"][0]["local"])
    assert schedule.next_tick_at > before
    assert (first, first.hour, first.minute, first.weekday() < 5) == (
        schedule.next_tick_at,
        2,
        30,
        True,
    )


def test_create_an_interval_schedule_by_pipeline_id_with_every_setting(api_as, iris):
    body = {
        "pipeline": iris.pk,
        "interval_seconds": 3600,
        "overlap_policy": "queue",
        "catch_up": "latest",
        "enabled": False,
    }
    response = api_as(ADD).post(URL, body, format="json")

    assert response.status_code == 201
    schedule = PipelineSchedule.objects.get()
    assert (schedule.interval_seconds, schedule.cron, schedule.timezone) == (3600, "", "UTC")
    assert (schedule.overlap_policy, schedule.catch_up, schedule.enabled) == (
        "queue",
        "latest",
        False,
    )
    assert response.json()["rule"] == "every 3600 s"
    assert response.json()["next_runs"] == []


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({}, "cron", "Set a cron expression or an interval in seconds."),
        (
            {"cron": "0 6 * * *", "interval_seconds": 600},
            "interval_seconds",
            "Set a cron expression or an interval, not both.",
        ),
        (
            {"cron": "0 6 * *"},
            "cron",
            "'0 6 * *' must have five fields: minute hour day-of-month month day-of-week.",
        ),
        ({"cron": "61 * * * *"}, "cron", "'61 * * * *' is not a valid cron expression."),
        ({"cron": "0 0 31 2 *"}, "cron", "'0 0 31 2 *' never fires."),
        (
            {"cron": "@fortnightly"},
            "cron",
            "'@fortnightly' is not a cron alias; use one of @annually, @daily, @hourly, "
            "@midnight, @monthly, @weekly, @yearly.",
        ),
        (
            {"interval_seconds": 59},
            "interval_seconds",
            "The interval must be at least 60 seconds: the scheduler runs once a minute.",
        ),
        (
            {"interval_seconds": -5},
            "interval_seconds",
            "The interval must be at least 60 seconds: the scheduler runs once a minute.",
        ),
        (
            {"interval_seconds": 2**31},
            "interval_seconds",
            "Ensure this value is less than or equal to 2147483647.",
        ),
        (
            {"cron": "@daily", "timezone": "Europe/Pariss"},
            "timezone",
            "Unknown time zone 'Europe/Pariss'; use an IANA name such as Europe/Paris.",
        ),
        (
            {"cron": "@daily", "timezone": "../../etc/passwd"},
            "timezone",
            "Unknown time zone '../../etc/passwd'; use an IANA name such as Europe/Paris.",
        ),
        ({"cron": "@daily", "timezone": ""}, "timezone", "This field may not be blank."),
        (
            {"cron": "@daily", "overlap_policy": "wait"},
            "overlap_policy",
            '"wait" is not a valid choice.',
        ),
        ({"cron": "@daily", "catch_up": "some"}, "catch_up", '"some" is not a valid choice.'),
        ({"cron": "@daily", "enabled": "perhaps"}, "enabled", "Must be a valid boolean."),
        (
            {"cron": "@daily", "catchup": "all"},
            "catchup",
            "Unknown field; a schedule accepts: pipeline, cron, interval_seconds, timezone, "
            "enabled, overlap_policy, catch_up.",
        ),
        (
            {"cron": "@daily", "pipeline": "nope"},
            "pipeline",
            "no pipeline named or numbered 'nope'",
        ),
        ({"cron": "@daily", "pipeline": None}, "pipeline", "This field may not be null."),
    ],
)
def test_create_refuses_a_bad_setting_naming_the_field(api_as, iris, body, field, message):
    response = api_as(ADD).post(URL, {"pipeline": "iris", **body}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert errors(response) == [(field, message)]
    assert not PipelineSchedule.objects.exists()


def test_create_needs_the_pipeline(api_as, iris):
    response = api_as(ADD).post(URL, {"cron": "@daily"}, format="json")

    assert response.status_code == 400
    assert errors(response) == [("pipeline", "This field is required.")]
    assert not PipelineSchedule.objects.exists()


def test_create_needs_a_login_and_the_add_permission(client, api_as, iris):
    body = {"pipeline": "iris", "cron": "@daily"}
    assert client.post(URL, body, content_type="application/json").status_code == 401

    response = api_as(CHANGE, DELETE).post(URL, body, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert response.json()["message"] == f"This needs the {ADD} permission."
    assert not PipelineSchedule.objects.exists()


# -- update ------------------------------------------------------------------------------


def test_put_replaces_every_setting_and_a_left_out_one_takes_its_default(api_as, paris_daily):
    paris_daily.overlap_policy, paris_daily.catch_up = "queue", "all"
    paris_daily.save()
    before = timezone.now()

    response = api_as(CHANGE).put(
        detail(paris_daily), {"pipeline": "iris", "interval_seconds": 1200}, format="json"
    )

    assert response.status_code == 200
    paris_daily.refresh_from_db()
    assert (paris_daily.cron, paris_daily.interval_seconds, paris_daily.timezone) == (
        "",
        1200,
        "UTC",
    )
    assert (paris_daily.overlap_policy, paris_daily.catch_up) == ("skip", "none")
    # A new rule starts from now: the next tick is an interval after the request.
    assert before + timedelta(seconds=1200) <= paris_daily.next_tick_at
    assert paris_daily.next_tick_at <= timezone.now() + timedelta(seconds=1200)
    assert response.json()["rule"] == "every 1200 s"


def test_put_can_move_a_schedule_to_another_pipeline(api_as, paris_daily, make_pipeline):
    other = make_pipeline(STEPS, name="other")
    body = {"pipeline": other.pk, "cron": "0 6 * * *", "timezone": "Europe/Paris"}

    response = api_as(CHANGE).put(detail(paris_daily), body, format="json")

    assert response.status_code == 200
    assert response.json()["pipeline"] == "other"
    paris_daily.refresh_from_db()
    assert paris_daily.pipeline == other
    assert paris_daily.next_tick_at == at(2026, 3, 28, 5)  # same rule: same next tick


def test_patch_of_a_policy_keeps_the_next_tick(api_as, paris_daily):
    response = api_as(CHANGE).patch(detail(paris_daily), {"catch_up": "all"}, format="json")

    assert response.status_code == 200
    paris_daily.refresh_from_db()
    assert (paris_daily.catch_up, paris_daily.cron) == ("all", "0 6 * * *")
    assert paris_daily.next_tick_at == at(2026, 3, 28, 5)


def test_patch_of_the_time_zone_moves_the_next_tick_from_now(api_as, paris_daily):
    response = api_as(CHANGE).patch(detail(paris_daily), {"timezone": "Asia/Tokyo"}, format="json")

    assert response.status_code == 200
    paris_daily.refresh_from_db()
    next_run = paris_daily.next_tick_at
    assert timezone.now() < next_run <= timezone.now() + timedelta(days=1)
    assert response.json()["next_runs"][0]["local"].endswith("T06:00:00+09:00")


def test_patch_enabled_pauses_and_enabling_restarts_from_now(api_as, paris_daily):
    client = api_as(CHANGE)

    response = client.patch(detail(paris_daily), {"enabled": False}, format="json")
    assert response.json()["enabled"] is False
    paris_daily.refresh_from_db()
    assert not paris_daily.enabled and paris_daily.next_tick_at == at(2026, 3, 28, 5)

    response = client.patch(detail(paris_daily), {"enabled": True}, format="json")
    assert response.json()["enabled"] is True
    paris_daily.refresh_from_db()
    # The 2026 tick was due long ago; enabled again, the schedule is not caught up.
    assert timezone.now() < paris_daily.next_tick_at <= timezone.now() + timedelta(days=1)


@pytest.mark.parametrize(
    "body, field, message",
    [
        (
            {"interval_seconds": 600},
            "interval_seconds",
            "Set a cron expression or an interval, not both.",
        ),
        ({"cron": ""}, "cron", "Set a cron expression or an interval in seconds."),
        (
            {"cron": "* * *"},
            "cron",
            "'* * *' must have five fields: minute hour day-of-month month day-of-week.",
        ),
        (
            {"timezone": "Mars/Olympus"},
            "timezone",
            "Unknown time zone 'Mars/Olympus'; use an IANA name such as Europe/Paris.",
        ),
        ({"overlap_policy": ""}, "overlap_policy", '"" is not a valid choice.'),
        ({"pipeline": "nope"}, "pipeline", "no pipeline named or numbered 'nope'"),
        (
            {"next_tick_at": "2030-01-01T00:00:00Z"},
            "next_tick_at",
            "Unknown field; a schedule "
            "accepts: pipeline, cron, interval_seconds, timezone, enabled, overlap_policy, "
            "catch_up.",
        ),
    ],
)
def test_patch_refuses_a_bad_setting_and_changes_nothing(api_as, paris_daily, body, field, message):
    before = stored(paris_daily)

    response = api_as(CHANGE).patch(detail(paris_daily), body, format="json")

    assert response.status_code == 400
    assert errors(response) == [(field, message)]
    assert stored(paris_daily) == before


def test_put_needs_the_pipeline(api_as, paris_daily):
    before = stored(paris_daily)

    response = api_as(CHANGE).put(detail(paris_daily), {"cron": "@hourly"}, format="json")

    assert response.status_code == 400
    assert errors(response) == [("pipeline", "This field is required.")]
    assert stored(paris_daily) == before


def test_update_needs_a_login_and_the_change_permission(client, api_as, paris_daily):
    before = stored(paris_daily)
    body = {"pipeline": "iris", "cron": "@hourly"}
    assert client.put(detail(paris_daily), body, "application/json").status_code == 401
    assert client.patch(detail(paris_daily), body, "application/json").status_code == 401

    api = api_as(ADD, DELETE)
    for response in (
        api.put(detail(paris_daily), body, format="json"),
        api.patch(detail(paris_daily), body, format="json"),
    ):
        assert response.status_code == 403
        assert response.json()["message"] == f"This needs the {CHANGE} permission."
    assert stored(paris_daily) == before


# -- delete ------------------------------------------------------------------------------


def test_delete_removes_the_schedule_and_its_ticks_and_keeps_the_runs(api_as, paris_daily):
    run = runs.start_run(paris_daily.pipeline)
    ScheduleTick.objects.create(
        schedule=paris_daily, tick_at=at(2026, 3, 28, 5), outcome="started", run=run
    )

    response = api_as(DELETE).delete(detail(paris_daily))

    assert response.status_code == 204
    assert not PipelineSchedule.objects.exists() and not ScheduleTick.objects.exists()
    assert PipelineRun.objects.filter(pk=run.pk).exists()
    assert api_as(username="reader").get(detail(paris_daily)).status_code == 404


def test_delete_needs_a_login_and_the_delete_permission(client, api_as, paris_daily):
    assert client.delete(detail(paris_daily)).status_code == 401

    response = api_as(ADD, CHANGE).delete(detail(paris_daily))
    assert response.status_code == 403
    assert response.json()["message"] == f"This needs the {DELETE} permission."
    assert PipelineSchedule.objects.filter(pk=paris_daily.pk).exists()


# -- pause and resume --------------------------------------------------------------------


def test_pause_and_resume_answer_the_schedule_and_are_idempotent(api_as, paris_daily):
    client = api_as(CHANGE)

    for _ in range(2):
        response = client.post(detail(paris_daily, "pause"))
        assert response.status_code == 200
        assert (response.json()["enabled"], response.json()["next_runs"]) == (False, [])
    assert not PipelineSchedule.objects.get().enabled

    response = client.post(detail(paris_daily, "resume"))
    assert response.status_code == 200 and response.json()["enabled"] is True
    resumed = PipelineSchedule.objects.get().next_tick_at
    assert timezone.now() < resumed <= timezone.now() + timedelta(days=1)
    shown = datetime.fromisoformat(response.json()["next_runs"][0]["utc"])
    assert shown == resumed


def test_resuming_an_enabled_schedule_keeps_its_due_tick(api_as, paris_daily):
    response = api_as(CHANGE).post(detail(paris_daily, "resume"))

    assert response.status_code == 200
    assert response.json()["next_runs"][0]["utc"] == "2026-03-28T05:00:00Z"
    assert PipelineSchedule.objects.get().next_tick_at == at(2026, 3, 28, 5)


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_pause_and_resume_need_a_login_and_the_change_permission(
    client, api_as, paris_daily, action
):
    if action == "resume":
        schedules.pause_schedule(paris_daily)
    before = stored(paris_daily)
    assert client.post(detail(paris_daily, action)).status_code == 401

    response = api_as(ADD, DELETE, ADD_RUN).post(detail(paris_daily, action))
    assert response.status_code == 403
    assert response.json()["message"] == f"This needs the {CHANGE} permission."
    assert stored(paris_daily) == before
    assert api_as(CHANGE, username="owner").post(f"{URL}0/{action}/").status_code == 404


# -- fire --------------------------------------------------------------------------------


def test_fire_starts_a_run_then_skips_while_it_is_active(api_as, paris_daily):
    client = api_as(CHANGE, ADD_RUN)

    response = client.post(detail(paris_daily, "fire"))

    assert response.status_code == 200
    run = PipelineRun.objects.get()
    assert run.trigger == "schedule"
    fired = response.json()
    assert (fired["outcome"], fired["reason"]) == ("started", "fired by hand")
    assert fired["run"] == f"http://testserver/api/v1/runs/{run.pk}/"
    # The overlap policy (skip) applies; the rule's next tick is unchanged.
    skipped = client.post(detail(paris_daily, "fire")).json()
    assert (skipped["outcome"], skipped["reason"], skipped["run"]) == (
        "skipped",
        f"run #{run.pk} still queued",
        None,
    )
    assert PipelineRun.objects.count() == 1 and ScheduleTick.objects.count() == 2
    assert PipelineSchedule.objects.get().next_tick_at == at(2026, 3, 28, 5)


def test_fire_is_a_conflict_when_a_scheduler_recorded_a_tick_this_moment(
    api_as, paris_daily, monkeypatch
):
    moment = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: moment)
    ScheduleTick.objects.create(schedule=paris_daily, tick_at=moment, outcome="skipped")

    response = api_as(CHANGE, ADD_RUN).post(detail(paris_daily, "fire"))

    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert response.json()["message"] == (
        "Another scheduler recorded a tick of this schedule at this moment."
    )
    assert not PipelineRun.objects.exists() and ScheduleTick.objects.count() == 1


def test_fire_needs_the_change_and_the_run_permission(client, api_as, paris_daily):
    assert client.post(detail(paris_daily, "fire")).status_code == 401

    message = f"This needs the {CHANGE} and {ADD_RUN} permission."
    for perms in ((CHANGE,), (ADD_RUN,)):
        response = api_as(*perms, username="-".join(perms)).post(detail(paris_daily, "fire"))
        assert response.status_code == 403
        assert response.json()["message"] == message
    assert not PipelineRun.objects.exists() and not ScheduleTick.objects.exists()


# -- the same service behind the admin ---------------------------------------------------


def test_admin_change_of_the_rule_restarts_from_now_and_of_a_policy_keeps_the_tick(
    admin_client, paris_daily
):
    url = reverse("admin:pipelines_pipelineschedule_change", args=[paris_daily.pk])
    form = {
        "pipeline": paris_daily.pipeline.pk,
        "cron": "0 6 * * *",
        "timezone": "Europe/Paris",
        "interval_seconds": "",
        "enabled": "on",
        "overlap_policy": "queue",
        "catch_up": "none",
        "ticks-TOTAL_FORMS": 0,
        "ticks-INITIAL_FORMS": 0,
        "ticks-MIN_NUM_FORMS": 0,
        "ticks-MAX_NUM_FORMS": 1000,
    }

    assert admin_client.post(url, form).status_code == 302
    paris_daily.refresh_from_db()
    assert (paris_daily.overlap_policy, paris_daily.next_tick_at) == ("queue", at(2026, 3, 28, 5))

    assert admin_client.post(url, {**form, "cron": "0 7 * * *"}).status_code == 302
    paris_daily.refresh_from_db()
    assert paris_daily.cron == "0 7 * * *"
    assert timezone.now() < paris_daily.next_tick_at <= timezone.now() + timedelta(days=1)


# -- through a real server ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_create_then_list_through_a_real_server(live_server, iris, django_user_model):
    user = django_user_model.objects.create_user("scheduler")
    user.user_permissions.add(Permission.objects.get(codename="add_pipelineschedule"))
    token = issue_token(user, "cron-job")[1]

    def call(method, path, body=None):
        request = urllib.request.Request(
            f"{live_server.url}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, json.loads(response.read())

    body = {"pipeline": "iris", "cron": "@daily", "timezone": "Asia/Kolkata"}
    status, headers, created = call("POST", URL, body)
    assert status == 201
    assert headers["Location"] == f"{live_server.url}{URL}{created['id']}/"
    assert created["next_runs"][0]["local"].endswith("T00:00:00+05:30")

    status, _, listed = call("GET", f"{URL}?pipeline=iris")
    assert status == 200
    assert [schedule["id"] for schedule in listed["results"]] == [created["id"]]
