"""Schedules: cron in a time zone across DST, intervals, firing once per tick, policies,
commands and admin. Every test passes an explicit `now` instead of waiting."""

import threading
from datetime import UTC, datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from pipelines import runs, schedules
from pipelines.choices import RunStatus, RunTrigger, TickOutcome
from pipelines.models import PipelineRun, PipelineSchedule, ScheduleTick

PARIS = ZoneInfo("Europe/Paris")


def at(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def ticks_between(cron, start, end, tz="Europe/Paris"):
    schedule = PipelineSchedule(cron=cron, timezone=tz)
    found, tick = [], start
    while (tick := schedules.next_tick(schedule, tick)) <= end:
        found.append(tick)
    return found


def make_schedule(pipeline, next_tick_at, **fields):
    fields.setdefault("cron", "0 * * * *")
    return PipelineSchedule.objects.create(pipeline=pipeline, next_tick_at=next_tick_at, **fields)


def call(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# -- next_tick -------------------------------------------------------------------------


def test_cron_next_tick_is_read_in_the_schedule_time_zone():
    schedule = PipelineSchedule(cron="0 6 * * *", timezone="Europe/Paris")

    assert schedules.next_tick(schedule, at(2026, 1, 15, 10)) == at(2026, 1, 16, 5)  # CET
    assert schedules.next_tick(schedule, at(2026, 7, 1, 3)) == at(2026, 7, 1, 4)  # CEST
    assert schedules.next_tick(schedule, at(2026, 7, 1, 4)) == at(2026, 7, 2, 4)  # strictly after
    new_york = PipelineSchedule(cron="0 6 * * MON", timezone="America/New_York")
    assert schedules.next_tick(new_york, at(2026, 1, 15)) == at(2026, 1, 19, 11)


def test_nonexistent_spring_time_fires_once_just_after_the_gap():
    # 2026-03-29: Paris jumps from 02:00 CET to 03:00 CEST (01:00 UTC); 02:30 never exists.
    fired = ticks_between("30 2 * * *", at(2026, 3, 27, 12), at(2026, 3, 30, 12))

    assert fired == [at(2026, 3, 28, 1, 30), at(2026, 3, 29, 1), at(2026, 3, 30, 0, 30)]
    assert fired[1].astimezone(PARIS).strftime("%H:%M %Z") == "03:00 CEST"
    assert ticks_between("30 1 * * *", at(2026, 3, 28, 12), at(2026, 3, 30, 12)) == [
        at(2026, 3, 29, 0, 30),  # 01:30 CET, before the change
        at(2026, 3, 29, 23, 30),  # 01:30 CEST
    ]


def test_repeated_autumn_time_fires_once_at_its_first_occurrence():
    # 2026-10-25: Paris goes back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
    fired = ticks_between("30 2 * * *", at(2026, 10, 24, 12), at(2026, 10, 26, 12))

    assert fired == [at(2026, 10, 25, 0, 30), at(2026, 10, 26, 1, 30)]
    assert fired[0].astimezone(PARIS).strftime("%H:%M %Z") == "02:30 CEST"
    assert ticks_between("30 1 * * *", at(2026, 10, 24, 12), at(2026, 10, 26, 12)) == [
        at(2026, 10, 24, 23, 30),  # 01:30 CEST
        at(2026, 10, 26, 0, 30),  # 01:30 CET
    ]


@pytest.mark.parametrize(
    ("day_start", "day_end", "hours", "count"),
    [
        (at(2026, 10, 24, 22), at(2026, 10, 25, 23), 25, 24),  # fall back: a 25-hour day
        (at(2026, 3, 28, 23), at(2026, 3, 29, 22), 23, 23),  # spring forward: 23 hours
    ],
)
def test_hourly_cron_fires_once_per_local_hour_across_a_change(day_start, day_end, hours, count):
    assert (day_end - day_start) == timedelta(hours=hours)

    fired = ticks_between(
        "0 * * * *", day_start - timedelta(seconds=1), day_end - timedelta(seconds=1)
    )

    local = [tick.astimezone(PARIS).strftime("%H:%M") for tick in fired]
    assert len(fired) == len(set(fired)) == count
    assert len(set(local)) == len(local)  # no local time fired twice
    assert fired == sorted(fired)


def test_interval_ticks_follow_the_previous_tick():
    schedule = PipelineSchedule(interval_seconds=900)

    assert schedules.next_tick(schedule, at(2026, 5, 1, 10, 7, 13)) == at(2026, 5, 1, 10, 22, 13)


# -- validation and managing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "tz", "interval", "field", "message"),
    [
        ("61 * * * *", "UTC", None, "cron", "not a valid cron expression"),
        ("* * * * * *", "UTC", None, "cron", "five fields"),
        ("0 6 * *", "UTC", None, "cron", "five fields"),
        ("@reboot", "UTC", None, "cron", "not a cron alias"),
        ("0 0 30 2 *", "UTC", None, "cron", "never fires"),
        ("", "UTC", None, "cron", "Set a cron expression or an interval"),
        ("0 6 * * *", "UTC", 3600, "interval_seconds", "not both"),
        ("", "UTC", 59, "interval_seconds", "at least 60 seconds"),
        ("0 6 * * *", "Europe/Nowhere", None, "timezone", "Unknown time zone"),
        ("0 6 * * *", "../etc/passwd", None, "timezone", "Unknown time zone"),
    ],
)
def test_validation_errors_name_the_field(cron, tz, interval, field, message):
    with pytest.raises(ValidationError) as caught:
        schedules.validate_schedule(cron, tz, interval)

    assert list(caught.value.message_dict) == [field]
    assert message in caught.value.message_dict[field][0]


def test_valid_rules_pass_and_model_clean_validates(classifier_pipeline):
    schedules.validate_schedule("0 6 * * MON-FRI", "Europe/Paris", None)
    schedules.validate_schedule("@daily", "UTC", None)
    schedules.validate_schedule("", "UTC", 60)

    with pytest.raises(ValidationError) as caught:
        PipelineSchedule(
            pipeline=classifier_pipeline, cron="nope", timezone="Mars/Base"
        ).full_clean()
    assert set(caught.value.message_dict) == {"cron", "timezone"}


def test_create_schedule_validates_and_sets_the_first_tick(classifier_pipeline):
    schedule = schedules.create_schedule(
        classifier_pipeline, cron="0 6 * * *", timezone="Europe/Paris", now=at(2026, 1, 15, 10)
    )

    assert schedule.next_tick_at == at(2026, 1, 16, 5)
    assert schedules.local_time(schedule, schedule.next_tick_at) == "2026-01-16 06:00 CET"
    with pytest.raises(ValidationError, match="catch_up"):
        schedules.create_schedule(classifier_pipeline, interval_seconds=60, catch_up="some")
    assert PipelineSchedule.objects.count() == 1


def test_saving_a_schedule_without_next_tick_computes_it(classifier_pipeline):
    before = timezone.now()
    schedule = PipelineSchedule.objects.create(pipeline=classifier_pipeline, interval_seconds=600)

    assert before + timedelta(seconds=600) <= schedule.next_tick_at
    assert schedule.next_tick_at <= timezone.now() + timedelta(seconds=600)


# -- firing ----------------------------------------------------------------------------


def test_a_due_tick_starts_one_run_triggered_by_the_schedule(classifier_pipeline):
    schedule = schedules.create_schedule(
        classifier_pipeline, cron="0 * * * *", now=at(2026, 5, 1, 9, 10)
    )
    assert schedule.next_tick_at == at(2026, 5, 1, 10)

    assert schedules.fire_due_ticks(now=at(2026, 5, 1, 9, 59)) == []
    [tick] = schedules.fire_due_ticks(now=at(2026, 5, 1, 10, 0, 30))

    run = PipelineRun.objects.get()
    assert (tick.outcome, tick.run, tick.tick_at) == (TickOutcome.STARTED, run, at(2026, 5, 1, 10))
    assert run.trigger == RunTrigger.SCHEDULE
    assert run.status == RunStatus.QUEUED
    schedule.refresh_from_db()
    assert schedule.next_tick_at == at(2026, 5, 1, 11)


@pytest.mark.database
def test_firing_twice_for_the_same_moment_makes_one_run(classifier_pipeline):
    make_schedule(classifier_pipeline, at(2026, 5, 1, 10))

    first = schedules.fire_due_ticks(now=at(2026, 5, 1, 10, 0, 5))
    second = schedules.fire_due_ticks(now=at(2026, 5, 1, 10, 0, 5))

    assert len(first) == 1 and second == []
    assert PipelineRun.objects.count() == 1
    assert ScheduleTick.objects.count() == 1


@pytest.mark.database
def test_a_tick_another_scheduler_recorded_starts_no_second_run(classifier_pipeline):
    schedule = make_schedule(classifier_pipeline, at(2026, 5, 1, 10))
    # The other scheduler inserted the tick row (and started its run) first.
    ScheduleTick.objects.create(
        schedule=schedule, tick_at=at(2026, 5, 1, 10), outcome=TickOutcome.STARTED
    )

    assert schedules.fire_due_ticks(now=at(2026, 5, 1, 10, 0, 5)) == []

    assert not PipelineRun.objects.exists()
    assert ScheduleTick.objects.count() == 1
    schedule.refresh_from_db()
    assert schedule.next_tick_at == at(2026, 5, 1, 11)


@pytest.mark.database
def test_a_stale_schedule_object_cannot_fire_a_tick_twice(classifier_pipeline):
    schedule = make_schedule(classifier_pipeline, at(2026, 5, 1, 10))
    schedules.fire_due_ticks(now=at(2026, 5, 1, 10, 0, 5))

    # A second scheduler still holding the old row goes straight to the insert.
    assert schedules._fire(schedule, at(2026, 5, 1, 10)) is None
    assert PipelineRun.objects.count() == 1


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_two_schedulers_at_once_start_one_run(classifier_pipeline):
    make_schedule(classifier_pipeline, at(2026, 5, 1, 10))
    results, lock = [], threading.Lock()

    def scheduler():
        try:
            fired = schedules.fire_due_ticks(now=at(2026, 5, 1, 10, 0, 5))
        finally:
            connection.close()
        with lock:
            results.append(len(fired))

    threads = [threading.Thread(target=scheduler) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [0, 0, 0, 1]
    assert PipelineRun.objects.count() == 1
    assert ScheduleTick.objects.get().outcome == TickOutcome.STARTED


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RUNNING])
def test_overlap_skip_records_the_active_run(classifier_pipeline, status):
    active = runs.start_run(classifier_pipeline)
    PipelineRun.objects.filter(pk=active.pk).update(status=status)
    make_schedule(classifier_pipeline, at(2026, 5, 1, 10), overlap_policy="skip")

    [tick] = schedules.fire_due_ticks(now=at(2026, 5, 1, 10, 0, 5))

    assert tick.outcome == TickOutcome.SKIPPED
    assert tick.reason == f"run #{active.pk} still {status}"
    assert PipelineRun.objects.count() == 1


def test_overlap_queue_starts_a_run_that_waits(classifier_pipeline):
    active = runs.start_run(classifier_pipeline)
    make_schedule(classifier_pipeline, at(2026, 5, 1, 10), overlap_policy="queue")

    [tick] = schedules.fire_due_ticks(now=at(2026, 5, 1, 10, 0, 5))

    assert tick.outcome == TickOutcome.STARTED
    assert tick.run != active
    assert tick.run.status == RunStatus.QUEUED
    assert tick.run.dispatched_at is None  # waiting for the active run's slot


def test_a_refused_start_is_recorded_as_skipped(classifier_pipeline):
    classifier_pipeline.concurrency_policy = "refuse"
    classifier_pipeline.save()
    active = runs.start_run(classifier_pipeline)
    make_schedule(classifier_pipeline, at(2026, 5, 1, 10), overlap_policy="queue")

    [tick] = schedules.fire_due_ticks(now=at(2026, 5, 1, 10, 0, 5))

    assert tick.outcome == TickOutcome.SKIPPED
    assert f"run #{active.pk} is queued" in tick.reason
    assert PipelineRun.objects.count() == 1


def test_an_invalid_pipeline_is_recorded_as_skipped(classifier_pipeline):
    classifier_pipeline.steps.filter(order=1).update(step_type="no_such_step")
    make_schedule(classifier_pipeline, at(2026, 5, 1, 10))

    [tick] = schedules.fire_due_ticks(now=at(2026, 5, 1, 10, 0, 5))

    assert tick.outcome == TickOutcome.SKIPPED
    assert "no_such_step" in tick.reason
    assert not PipelineRun.objects.exists()


@pytest.mark.parametrize(
    ("catch_up", "started", "skipped_reason"),
    [
        ("none", [], schedules.MISSED),
        ("latest", [at(2026, 5, 1, 12)], schedules.SUPERSEDED),
        ("all", [at(2026, 5, 1, 10), at(2026, 5, 1, 11), at(2026, 5, 1, 12)], None),
    ],
)
def test_catch_up_after_three_hours_down(classifier_pipeline, catch_up, started, skipped_reason):
    # Hourly; the last scheduler stopped before 10:00 and the next one starts at 12:30.
    schedule = make_schedule(
        classifier_pipeline, at(2026, 5, 1, 10), catch_up=catch_up, overlap_policy="queue"
    )

    fired = schedules.fire_due_ticks(now=at(2026, 5, 1, 12, 30))

    assert [t.tick_at for t in fired] == [at(2026, 5, 1, h) for h in (10, 11, 12)]
    assert [t.tick_at for t in fired if t.outcome == TickOutcome.STARTED] == started
    assert PipelineRun.objects.filter(trigger=RunTrigger.SCHEDULE).count() == len(started)
    assert {t.reason for t in fired if t.outcome == TickOutcome.SKIPPED} <= {skipped_reason}
    assert ScheduleTick.objects.filter(schedule=schedule).count() == 3
    schedule.refresh_from_db()
    assert schedule.next_tick_at == at(2026, 5, 1, 13)


def test_catch_up_none_fires_a_tick_inside_the_grace_window_only(classifier_pipeline):
    on_time = make_schedule(classifier_pipeline, at(2026, 5, 1, 10), overlap_policy="queue")
    too_late = make_schedule(classifier_pipeline, at(2026, 5, 1, 9, 58), cron="58 * * * *")

    fired = schedules.fire_due_ticks(
        now=at(2026, 5, 1, 10) + schedules.GRACE - timedelta(seconds=1)
    )

    outcomes = {(t.schedule_id, t.outcome, t.reason) for t in fired}
    assert outcomes == {
        (on_time.pk, TickOutcome.STARTED, ""),
        (too_late.pk, TickOutcome.SKIPPED, schedules.MISSED),
    }


def test_catch_up_all_with_overlap_skip_runs_the_first_missed_tick_only(classifier_pipeline):
    make_schedule(classifier_pipeline, at(2026, 5, 1, 10), catch_up="all", overlap_policy="skip")

    fired = schedules.fire_due_ticks(now=at(2026, 5, 1, 12, 30))

    run = PipelineRun.objects.get()
    assert [t.outcome for t in fired] == ["started", "skipped", "skipped"]
    assert {t.reason for t in fired[1:]} == {f"run #{run.pk} still queued"}


def test_interval_schedule_catches_up_on_its_own_grid(classifier_pipeline):
    schedule = make_schedule(
        classifier_pipeline,
        at(2026, 5, 1, 10, 0, 30),
        cron="",
        interval_seconds=600,
        catch_up="latest",
    )

    fired = schedules.fire_due_ticks(now=at(2026, 5, 1, 10, 25))

    assert [t.tick_at for t in fired] == [
        at(2026, 5, 1, 10, 0, 30),
        at(2026, 5, 1, 10, 10, 30),
        at(2026, 5, 1, 10, 20, 30),
    ]
    assert fired[-1].outcome == TickOutcome.STARTED
    schedule.refresh_from_db()
    assert schedule.next_tick_at == at(2026, 5, 1, 10, 30, 30)


def test_a_backlog_longer_than_the_bound_keeps_the_latest_ticks(classifier_pipeline):
    schedule = make_schedule(
        classifier_pipeline,
        at(2026, 5, 1, 0, 0, 30),
        cron="",
        interval_seconds=60,
        catch_up="latest",
    )
    now = at(2026, 5, 3, 0, 0, 10)  # two days of minute ticks: 2880

    fired = schedules.fire_due_ticks(now=now)

    marker, *kept = fired
    assert marker.tick_at == at(2026, 5, 1, 0, 0, 30)
    assert "dropped" in marker.reason
    assert len(kept) == schedules.MAX_DUE_TICKS
    assert kept[-1].tick_at == at(2026, 5, 3, 0, 0, 30) - timedelta(minutes=1)
    assert kept[-1].outcome == TickOutcome.STARTED
    assert PipelineRun.objects.count() == 1
    schedule.refresh_from_db()
    assert schedule.next_tick_at == at(2026, 5, 3, 0, 0, 30)


def test_a_paused_schedule_does_not_fire(classifier_pipeline):
    schedule = make_schedule(classifier_pipeline, at(2026, 5, 1, 10))
    schedules.pause_schedule(schedule)

    assert schedules.fire_due_ticks(now=at(2026, 5, 1, 10, 0, 5)) == []
    assert not ScheduleTick.objects.exists()


def test_resume_starts_from_now_without_catching_up(classifier_pipeline):
    schedule = make_schedule(classifier_pipeline, at(2026, 5, 1, 10), catch_up="all")
    schedules.pause_schedule(schedule)

    schedules.resume_schedule(schedule, now=at(2026, 5, 1, 15, 20))

    assert schedule.next_tick_at == at(2026, 5, 1, 16)
    assert schedules.fire_due_ticks(now=at(2026, 5, 1, 15, 21)) == []
    assert not ScheduleTick.objects.exists()


def test_fire_now_adds_a_tick_outside_the_rule(classifier_pipeline):
    schedule = make_schedule(classifier_pipeline, at(2026, 5, 1, 10))

    tick = schedules.fire_now(schedule, now=at(2026, 5, 1, 9, 17))

    assert tick.outcome == TickOutcome.STARTED and tick.run.trigger == RunTrigger.SCHEDULE
    schedule.refresh_from_db()
    assert schedule.next_tick_at == at(2026, 5, 1, 10)


def test_the_worker_task_counts_the_ticks(classifier_pipeline):
    from pipelines import tasks

    schedule = make_schedule(classifier_pipeline, timezone.now() - timedelta(seconds=30))
    ticks_before = ScheduleTick.objects.count()

    fired = tasks.fire_schedules()

    # The count is of every tick the call recorded; this schedule's is one of them.
    assert fired == ScheduleTick.objects.count() - ticks_before
    assert ScheduleTick.objects.filter(schedule=schedule).count() == 1


# -- commands --------------------------------------------------------------------------


def test_schedule_pipeline_prints_the_schedule_and_next_run(classifier_pipeline):
    output = call(
        "schedule_pipeline",
        "classifier",
        "--cron",
        "0 6 * * *",
        "--tz",
        "Europe/Paris",
        "--overlap",
        "queue",
        "--catch-up",
        "latest",
    )

    schedule = PipelineSchedule.objects.get()
    assert (schedule.cron, schedule.timezone) == ("0 6 * * *", "Europe/Paris")
    assert (schedule.overlap_policy, schedule.catch_up) == ("queue", "latest")
    assert f"Schedule #{schedule.pk}: classifier cron 0 6 * * * (Europe/Paris)" in output
    local = schedule.next_tick_at.astimezone(PARIS)
    assert (local.hour, local.minute) == (6, 0)
    assert f"Next run: {local:%Y-%m-%d} 06:00 CE" in output


def test_schedule_pipeline_every_seconds_by_id(classifier_pipeline):
    output = call("schedule_pipeline", str(classifier_pipeline.pk), "--every", "3600")

    schedule = PipelineSchedule.objects.get()
    assert schedule.interval_seconds == 3600 and schedule.cron == ""
    assert "every 3600 s" in output and "Next run:" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "99 * * * *"], "--cron: "),
        (["--cron", "0 6 * * *", "--tz", "Paris"], "--tz: Unknown time zone 'Paris'"),
        (["--every", "10"], "--every: The interval must be at least 60"),
        (["--every", "60", "--cron", "0 6 * * *"], "not allowed with argument"),
        ([], "one of the arguments --cron --every is required"),
        (["--every", "60", "--overlap", "later"], "--overlap: invalid choice"),
        (["--every", "60", "--catch-up", "some"], "--catch-up: invalid choice"),
    ],
)
def test_schedule_pipeline_bad_input_names_the_option(classifier_pipeline, args, message):
    with pytest.raises(CommandError, match=message):
        call("schedule_pipeline", "classifier", *args)
    assert not PipelineSchedule.objects.exists()


def test_schedule_pipeline_unknown_pipeline(db):
    with pytest.raises(CommandError, match="no pipeline named or numbered 'missing'"):
        call("schedule_pipeline", "missing", "--every", "60")


def test_schedules_list_pause_resume_delete(classifier_pipeline):
    assert call("schedules", "list") == "No schedules.\n"
    cron = schedules.create_schedule(classifier_pipeline, cron="0 6 * * *", timezone="Europe/Paris")
    every = schedules.create_schedule(classifier_pipeline, interval_seconds=600)
    ScheduleTick.objects.create(
        schedule=every, tick_at=at(2026, 5, 1, 10), outcome="skipped", reason="run #3 still running"
    )

    listing = call("schedules", "list").splitlines()
    assert listing[0].split() == [
        "ID",
        "PIPELINE",
        "RULE",
        "TZ",
        "STATE",
        "NEXT",
        "TICK",
        "LAST",
        "TICK",
    ]
    assert f"{cron.pk}" in listing[1] and "cron 0 6 * * *" in listing[1]
    assert "Europe/Paris" in listing[1] and "enabled" in listing[1] and "06:00 CE" in listing[1]
    assert "every 600 s" in listing[2]
    assert "2026-05-01 10:00 UTC skipped: run #3 still running" in listing[2]

    assert call("schedules", "pause", str(cron.pk)) == f"Schedule #{cron.pk} paused.\n"
    cron.refresh_from_db()
    assert not cron.enabled
    assert "paused" in call("schedules", "list").splitlines()[1]

    assert f"Schedule #{cron.pk} resumed; next run " in call("schedules", "resume", str(cron.pk))
    cron.refresh_from_db()
    assert cron.enabled and cron.next_tick_at > timezone.now()
    again = call("schedules", "resume", str(cron.pk))
    assert f"Schedule #{cron.pk} is already enabled; next run " in again

    assert call("schedules", "delete", str(every.pk)) == f"Schedule #{every.pk} deleted.\n"
    assert list(PipelineSchedule.objects.all()) == [cron]
    assert not ScheduleTick.objects.exists()


def test_schedules_fire_prints_what_happened(classifier_pipeline):
    assert call("schedules", "fire") == "No tick was due.\n"
    schedule = make_schedule(classifier_pipeline, timezone.now() - timedelta(seconds=20))

    output = call("schedules", "fire")

    run = PipelineRun.objects.get()
    assert f"Schedule #{schedule.pk} (classifier) tick " in output
    assert f": started run #{run.pk}" in output


def test_schedules_errors(db):
    with pytest.raises(CommandError, match="no schedule #42"):
        call("schedules", "pause", "42")
    with pytest.raises(CommandError, match="invalid choice: 'stop'"):
        call("schedules", "stop")
    with pytest.raises(CommandError, match="invalid int value"):
        call("schedules", "delete", "x")


# -- admin -----------------------------------------------------------------------------


def test_admin_changelist_and_change_page_render(admin_client, classifier_pipeline):
    schedule = schedules.create_schedule(
        classifier_pipeline, cron="0 6 * * *", timezone="Europe/Paris"
    )
    for hour in range(25):
        ScheduleTick.objects.create(
            schedule=schedule,
            tick_at=at(2026, 5, 1) + timedelta(hours=hour),
            outcome="skipped",
            reason=f"reason {hour}",
        )

    listing = admin_client.get(reverse("admin:pipelines_pipelineschedule_changelist"))
    assert listing.status_code == 200
    assert "cron 0 6 * * *" in listing.content.decode()
    assert "Europe/Paris" in listing.content.decode()

    page = admin_client.get(reverse("admin:pipelines_pipelineschedule_change", args=[schedule.pk]))
    body = page.content.decode()
    assert page.status_code == 200
    assert "reason 24" in body and "reason 5" in body
    assert "reason 4<" not in body  # only the latest 20 ticks
    assert admin_client.get(reverse("admin:pipelines_scheduletick_changelist")).status_code == 200


def test_admin_pause_resume_and_fire_actions(admin_client, classifier_pipeline):
    schedule = schedules.create_schedule(classifier_pipeline, interval_seconds=600)
    url = reverse("admin:pipelines_pipelineschedule_changelist")

    admin_client.post(url, {"action": "pause", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert not schedule.enabled

    admin_client.post(url, {"action": "resume", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert schedule.enabled

    response = admin_client.post(
        url, {"action": "fire_now", "_selected_action": [schedule.pk]}, follow=True
    )
    run = PipelineRun.objects.get()
    assert run.trigger == RunTrigger.SCHEDULE
    assert f"started run #{run.pk}" in response.content.decode()


def test_admin_add_form_validates_the_rule(admin_client, classifier_pipeline):
    url = reverse("admin:pipelines_pipelineschedule_add")
    form = {
        "pipeline": classifier_pipeline.pk,
        "cron": "0 6 * *",
        "timezone": "Europe/Paris",
        "interval_seconds": "",
        "enabled": "on",
        "overlap_policy": "skip",
        "catch_up": "none",
        "ticks-TOTAL_FORMS": 0,
        "ticks-INITIAL_FORMS": 0,
        "ticks-MIN_NUM_FORMS": 0,
        "ticks-MAX_NUM_FORMS": 1000,
    }

    response = admin_client.post(url, form)
    assert response.status_code == 200
    assert "must have five fields" in response.content.decode()
    assert not PipelineSchedule.objects.exists()

    response = admin_client.post(url, {**form, "cron": "0 6 * * *"})
    assert response.status_code == 302
    schedule = PipelineSchedule.objects.get()
    assert schedule.next_tick_at.astimezone(PARIS).hour == 6


def test_a_tick_names_its_time_in_the_schedule_time_zone(classifier_pipeline):
    schedule = make_schedule(
        classifier_pipeline, at(2026, 5, 2, 4), cron="0 6 * * *", timezone="Europe/Paris"
    )
    tick = ScheduleTick(schedule=schedule, tick_at=at(2026, 5, 1, 4), outcome=TickOutcome.STARTED)

    assert "@ 2026-05-01 06:00 CEST started" in str(tick)
