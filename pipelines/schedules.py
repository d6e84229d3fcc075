"""Pipeline schedules: cron (in a time zone) or fixed interval ticks.

A django-q2 schedule calls `fire_due_ticks` every minute (migration 0003). Each tick a
schedule reaches is recorded once as a `ScheduleTick`: the run it started, or why it was
skipped. The row is inserted before the run is started, in the same transaction, so the
unique (schedule, tick_at) constraint lets exactly one scheduler start the run of a tick
even when several evaluate it at the same moment.

Cron expressions are read in the schedule's time zone, as wall-clock times: "30 2 * * *"
fires once per local day at 02:30. Across daylight-saving changes:

* a local time that does not exist (spring forward) fires at the first instant after the
  gap (02:30 on a night that jumps from 02:00 to 03:00 fires at 03:00);
* a local time that happens twice (fall back) fires once, at its first occurrence.
"""

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone as django_timezone

from pipelines import runs
from pipelines.choices import CatchUpPolicy, OverlapPolicy, RunTrigger, TickOutcome
from pipelines.models import Pipeline, PipelineRun, PipelineSchedule, ScheduleTick
from pipelines.validation import PipelineInvalid

logger = logging.getLogger(__name__)

# The scheduler task runs every minute, so a shorter interval could not be kept.
MIN_INTERVAL_SECONDS = 60
# A tick more than this late counts as missed (no scheduler ran when it was due). The
# scheduler runs every minute, so a normally late tick is at most about a minute late.
GRACE = timedelta(minutes=2)
# At most this many due ticks are considered per schedule and call. Ticks are at least a
# minute apart, so a longer backlog keeps the ticks of the last MAX_DUE_TICKS minutes
# (which include the latest one) and records one marker for the older ones it drops.
MAX_DUE_TICKS = 1000

MISSED = "missed while no scheduler ran"
SUPERSEDED = "superseded by a later tick"

_CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


# -- Rules -----------------------------------------------------------------------------


def validate_schedule(cron: str | None, timezone: str, interval_seconds: int | None) -> None:
    """Raise ValidationError keyed by field: cron, timezone or interval_seconds.

    A schedule has exactly one rule: a five-field cron expression (or an @daily-style
    alias) read in `timezone`, or an interval of at least MIN_INTERVAL_SECONDS.
    """
    errors = {}
    cron = (cron or "").strip()
    if not cron and interval_seconds is None:
        errors["cron"] = "Set a cron expression or an interval in seconds."
    elif cron and interval_seconds is not None:
        errors["interval_seconds"] = "Set a cron expression or an interval, not both."
    elif cron:
        problem = _cron_problem(cron)
        if problem:
            errors["cron"] = problem
    elif interval_seconds < MIN_INTERVAL_SECONDS:
        errors["interval_seconds"] = (
            f"The interval must be at least {MIN_INTERVAL_SECONDS} seconds: "
            "the scheduler runs once a minute."
        )
    try:
        _zone(timezone)
    except ValueError as exc:
        errors["timezone"] = str(exc)
    if errors:
        raise ValidationError(errors)


def _cron_problem(cron: str) -> str | None:
    if cron.startswith("@"):
        if cron.lower() not in _CRON_ALIASES:
            return f"{cron!r} is not a cron alias; use one of {', '.join(sorted(_CRON_ALIASES))}."
    elif len(cron.split()) != 5:
        return f"{cron!r} must have five fields: minute hour day-of-month month day-of-week."
    if not croniter.is_valid(cron):
        return f"{cron!r} is not a valid cron expression."
    try:
        croniter(cron, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        return f"{cron!r} never fires."
    return None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"Unknown time zone {name!r}; use an IANA name such as Europe/Paris."
        ) from None


def next_tick(schedule: PipelineSchedule, after: datetime) -> datetime:
    """The schedule's first tick strictly after `after`, as an aware UTC datetime."""
    if not schedule.cron:
        if not schedule.interval_seconds:
            raise ValueError(f"schedule #{schedule.pk} has neither a cron nor an interval")
        return after + timedelta(seconds=schedule.interval_seconds)
    zone = _zone(schedule.timezone)
    wall = after.astimezone(zone).replace(tzinfo=None)
    walls = croniter(schedule.cron, wall)
    # Each local wall-clock time is localized on its own; a wall time of the repeated
    # hour whose first occurrence is not after `after` is passed over, and a time in a
    # spring gap can land on the instant an earlier one already took. A few steps at most.
    while True:
        instant = _localize(walls.get_next(datetime), zone)
        if instant > after:
            return instant


def _localize(wall: datetime, zone: ZoneInfo) -> datetime:
    """A naive local time as UTC: the first occurrence of a repeated time, and the first
    instant after the gap for a time skipped by a spring-forward change."""
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # Nonexistent: fold=0 reads it with the offset before the change, fold=1 with the
    # offset after, so the change lies between the two readings. Find it to the second.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)  # before the change
    high = instant  # after the change
    before = low.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = (low + (high - low) // 2).replace(microsecond=0)
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high


def describe_rule(schedule: PipelineSchedule) -> str:
    if schedule.cron:
        return f"cron {schedule.cron}"
    return f"every {schedule.interval_seconds} s"


def local_time(schedule: PipelineSchedule, moment: datetime | None) -> str:
    """A moment in the schedule's time zone, e.g. 2026-03-30 06:00 CEST."""
    if moment is None:
        return "-"
    try:
        zone = _zone(schedule.timezone)
    except ValueError:
        zone = UTC
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


# -- Managing schedules ------------------------------------------------------------------


# What may be set on a schedule (the API and the admin change them with update_schedule).
RULE_FIELDS = ("cron", "timezone", "interval_seconds")
SETTINGS_FIELDS = (*RULE_FIELDS, "overlap_policy", "catch_up", "enabled", "pipeline")


def create_schedule(
    pipeline: Pipeline,
    cron: str | None = None,
    timezone: str = "UTC",
    interval_seconds: int | None = None,
    overlap_policy: str = OverlapPolicy.SKIP,
    catch_up: str = CatchUpPolicy.NONE,
    enabled: bool = True,
    now: datetime | None = None,
) -> PipelineSchedule:
    """Validate and save a schedule whose first tick is the first one after `now`."""
    schedule = PipelineSchedule(
        pipeline=pipeline,
        cron=(cron or "").strip(),
        timezone=timezone,
        interval_seconds=interval_seconds,
        overlap_policy=overlap_policy,
        catch_up=catch_up,
        enabled=enabled,
    )
    _check_settings(schedule)
    schedule.next_tick_at = next_tick(schedule, now or django_timezone.now())
    schedule.save()
    return schedule


def update_schedule(
    schedule: PipelineSchedule, now: datetime | None = None, **changes
) -> PipelineSchedule:
    """Validate and save new values of any of SETTINGS_FIELDS, as `create_schedule` does.

    A changed rule, or a paused schedule enabled again, starts from `now`: its next tick
    is the first one after it, and ticks the old rule or the pause passed over are not
    caught up. A refused change saves nothing and leaves `schedule` as it was.
    """
    unknown = set(changes) - set(SETTINGS_FIELDS)
    if unknown:
        raise TypeError(f"not a setting of a schedule: {', '.join(sorted(unknown))}")
    changed = PipelineSchedule(pk=schedule.pk, next_tick_at=schedule.next_tick_at)
    for name in SETTINGS_FIELDS:
        setattr(changed, name, changes.get(name, getattr(schedule, name)))
    changed.cron = (changed.cron or "").strip()
    _check_settings(changed)
    rule_changed = any(getattr(changed, name) != getattr(schedule, name) for name in RULE_FIELDS)
    restarted = changed.enabled and (rule_changed or not schedule.enabled)
    for name in SETTINGS_FIELDS:
        setattr(schedule, name, getattr(changed, name))
    fields = list(SETTINGS_FIELDS)
    if restarted:
        schedule.next_tick_at = next_tick(schedule, now or django_timezone.now())
        fields.append("next_tick_at")
    # Otherwise the next tick is left as stored: a scheduler may be moving it meanwhile.
    schedule.save(update_fields=fields)
    return schedule


def _check_settings(schedule: PipelineSchedule) -> None:
    """Raise ValidationError keyed by field for a bad rule or an unknown policy."""
    validate_schedule(schedule.cron, schedule.timezone, schedule.interval_seconds)
    errors = {}
    if schedule.overlap_policy not in OverlapPolicy.values:
        errors["overlap_policy"] = f"Use one of {', '.join(OverlapPolicy.values)}."
    if schedule.catch_up not in CatchUpPolicy.values:
        errors["catch_up"] = f"Use one of {', '.join(CatchUpPolicy.values)}."
    if errors:
        raise ValidationError(errors)


def pause_schedule(schedule: PipelineSchedule) -> PipelineSchedule:
    schedule.enabled = False
    schedule.save(update_fields=["enabled"])
    return schedule


def resume_schedule(schedule: PipelineSchedule, now: datetime | None = None) -> PipelineSchedule:
    """Enable again from `now`: ticks due while the schedule was paused are not caught up."""
    schedule.enabled = True
    schedule.next_tick_at = next_tick(schedule, now or django_timezone.now())
    schedule.save(update_fields=["enabled", "next_tick_at"])
    return schedule


def preview_ticks(
    cron: str | None,
    timezone: str,
    interval_seconds: int | None,
    count: int = 5,
    now: datetime | None = None,
) -> list[datetime]:
    """The first `count` ticks after `now` of a rule not saved yet, in its time zone.

    Raises ValidationError keyed by field, as `validate_schedule` does. The ticks are those
    `create_schedule` would give a schedule created at `now`.
    """
    cron = (cron or "").strip()
    validate_schedule(cron, timezone, interval_seconds)
    rule = PipelineSchedule(cron=cron, timezone=timezone, interval_seconds=interval_seconds)
    zone, tick, ticks = _zone(timezone), now or django_timezone.now(), []
    for _ in range(count):
        tick = next_tick(rule, tick)
        ticks.append(tick.astimezone(zone))
    return ticks


def upcoming_ticks(schedule: PipelineSchedule, count: int = 5) -> list[datetime]:
    """The next `count` ticks of a saved schedule, in its time zone; none while paused.

    They start at its stored next tick, so an interval keeps its own grid and a tick
    overdue while no scheduler ran comes first.
    """
    if not schedule.enabled:
        return []
    zone = _zone(schedule.timezone)
    tick = schedule.next_tick_at or next_tick(schedule, django_timezone.now())
    ticks = [tick]
    while len(ticks) < count:
        ticks.append(next_tick(schedule, ticks[-1]))
    return [tick.astimezone(zone) for tick in ticks]


def delete_schedule(schedule: PipelineSchedule) -> None:
    """Delete a schedule and its tick history; the runs its ticks started are kept."""
    schedule.delete()


# -- Firing ------------------------------------------------------------------------------


def fire_due_ticks(now: datetime | None = None) -> list[ScheduleTick]:
    """Record every due tick of the enabled schedules; start the runs policies allow.

    Returns the ticks this call recorded, oldest first per schedule. Ticks another
    scheduler recorded first are left to it.
    """
    now = now or django_timezone.now()
    recorded = []
    for schedule in PipelineSchedule.objects.filter(enabled=True, next_tick_at__isnull=True):
        try:
            PipelineSchedule.objects.filter(pk=schedule.pk, next_tick_at__isnull=True).update(
                next_tick_at=next_tick(schedule, now)
            )
        except Exception:
            logger.exception("schedule #%s: cannot compute its next tick", schedule.pk)
    due = PipelineSchedule.objects.filter(enabled=True, next_tick_at__lte=now)
    for schedule_pk in due.order_by("next_tick_at", "pk").values_list("pk", flat=True):
        try:
            recorded.extend(_fire_schedule(schedule_pk, now))
        except Exception:
            logger.exception("schedule #%s: firing its due ticks failed", schedule_pk)
    return recorded


def _fire_schedule(schedule_pk: int, now: datetime) -> list[ScheduleTick]:
    with transaction.atomic():
        schedule = PipelineSchedule.objects.select_for_update().filter(pk=schedule_pk).first()
        # Read again under the lock: another scheduler may have fired it meanwhile.
        if schedule is None or not schedule.enabled or schedule.next_tick_at > now:
            return []
        ticks, following, dropped = _due_ticks(schedule, now)
        recorded = []
        if dropped is not None:
            kept_from = local_time(schedule, ticks[0] if ticks else following)
            reason = f"{MISSED}; this and every later tick before {kept_from} dropped"
            tick = _record(schedule, dropped, reason)
            recorded.extend([tick] if tick else [])
        for tick_at, reason in _plan(schedule.catch_up, ticks, now):
            tick = _record(schedule, tick_at, reason) if reason else _fire(schedule, tick_at)
            recorded.extend([tick] if tick else [])
        schedule.next_tick_at = following
        schedule.save(update_fields=["next_tick_at"])
    return recorded


def _due_ticks(schedule, now) -> tuple[list[datetime], datetime, datetime | None]:
    """(due ticks in order, the first tick after now, first dropped tick or None)."""
    ticks, tick = _walk(schedule, schedule.next_tick_at, now)
    if tick > now:
        return ticks, tick, None
    # A longer backlog than the bound: keep the ticks of the last MAX_DUE_TICKS minutes.
    ticks, tick = _walk(
        schedule, _first_after(schedule, now - timedelta(minutes=MAX_DUE_TICKS)), now
    )
    if tick <= now:  # cannot happen with ticks a minute apart; never leave a stale tick
        tick = _first_after(schedule, now)
    return ticks, tick, schedule.next_tick_at


def _first_after(schedule, moment: datetime) -> datetime:
    """The first tick after `moment`; interval ticks stay anchored on next_tick_at."""
    if schedule.cron:
        return next_tick(schedule, moment)
    step = timedelta(seconds=schedule.interval_seconds)
    return schedule.next_tick_at + ((moment - schedule.next_tick_at) // step + 1) * step


def _walk(schedule, tick, now) -> tuple[list[datetime], datetime]:
    ticks = []
    while tick <= now and len(ticks) < MAX_DUE_TICKS:
        ticks.append(tick)
        tick = next_tick(schedule, tick)
    return ticks, tick


def _plan(catch_up: str, ticks: list[datetime], now: datetime):
    """(tick, None) for a tick to fire, (tick, reason) for one to record as skipped."""
    for index, tick_at in enumerate(ticks):
        if catch_up == CatchUpPolicy.ALL:
            yield tick_at, None
        elif catch_up == CatchUpPolicy.LATEST:
            yield tick_at, None if index == len(ticks) - 1 else SUPERSEDED
        else:
            yield tick_at, MISSED if tick_at < now - GRACE else None


def _record(schedule, tick_at, reason: str) -> ScheduleTick | None:
    """Insert a skipped tick; None when another scheduler already has this tick."""
    try:
        with transaction.atomic():
            return ScheduleTick.objects.create(
                schedule=schedule, tick_at=tick_at, outcome=TickOutcome.SKIPPED, reason=reason[:255]
            )
    except IntegrityError:
        return None


def _fire(schedule, tick_at, note: str = "") -> ScheduleTick | None:
    """Claim the tick by inserting its row, then start a run or record why not."""
    tick = _record(schedule, tick_at, "starting")
    if tick is None:
        return None  # another scheduler claimed this tick and starts its run
    pipeline = schedule.pipeline
    active = None
    if schedule.overlap_policy == OverlapPolicy.SKIP:
        active = PipelineRun.objects.active().filter(pipeline=pipeline).order_by("created_at", "pk")
        active = active.first()
    if active is not None:
        tick.reason = f"run #{active.pk} still {active.status}"
    else:
        try:
            with transaction.atomic():
                tick.run = runs.start_run(pipeline, trigger=RunTrigger.SCHEDULE)
        except (runs.PipelineBusy, PipelineInvalid) as exc:
            tick.reason = str(exc)
        except Exception as exc:
            logger.exception("schedule #%s: starting the run of %s failed", schedule.pk, tick_at)
            tick.reason = f"could not start a run: {exc}"
        else:
            tick.outcome = TickOutcome.STARTED
            tick.reason = note
    tick.reason = tick.reason[:255]
    tick.save(update_fields=["outcome", "reason", "run"])
    return tick


def fire_now(schedule: PipelineSchedule, now: datetime | None = None) -> ScheduleTick | None:
    """An extra tick at `now`, outside the schedule's rule (the admin's "fire now").

    The overlap policy applies; the schedule's next tick is unchanged.
    """
    with transaction.atomic():
        return _fire(schedule, now or django_timezone.now(), note="fired by hand")
