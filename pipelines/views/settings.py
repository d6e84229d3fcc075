"""The Settings and History tabs of a pipeline: its run settings, its schedules and its
recorded versions.

Each view parses the request, calls one function of `pipelines.services` or
`pipelines.schedules` (the ones the admin, the API and the commands call) and picks a
template: the whole page, or for an HTMX request the fragment the page swaps.
"""

from dataclasses import dataclass

from django import forms
from django.conf import settings as site
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from mlops_site.htmx import htmx_partial
from mlops_site.permissions import permission_needed
from pipelines import schedules, services
from pipelines.choices import CatchUpPolicy, ConcurrencyPolicy, OverlapPolicy
from pipelines.forms import timezone_choices
from pipelines.models import Pipeline, PipelineSchedule, PipelineVersion, ScheduleTick
from pipelines.templatetags.mlops_format import MESSAGE_WORDS, duration
from pipelines.validation import PipelineInvalid, StepError

SETTINGS_PAGE = "pipelines/pipeline_settings.html"
HISTORY_PAGE = "pipelines/pipeline_history.html"
VERSIONS_PER_PAGE = 50
TICKS_SHOWN = 3
PREVIEW_COUNT = 5


# -- Forms: they parse the request; the services validate --------------------------------


class SettingsForm(forms.Form):
    """The run settings, typed as the model declares them. The service checks them (the
    model's own validation); its errors are put on the fields they name."""

    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label="Description"
    )
    mlflow_experiment = forms.CharField(required=False, max_length=200, label="MLflow experiment")
    max_active_runs = forms.IntegerField(
        label="Active runs at most",
        help_text=Pipeline._meta.get_field("max_active_runs").help_text,
    )
    concurrency_policy = forms.ChoiceField(
        choices=ConcurrencyPolicy.choices,
        label="At the limit",
        help_text=Pipeline._meta.get_field("concurrency_policy").help_text,
    )
    timeout_seconds = forms.IntegerField(required=False, label="Time limit (seconds)")
    max_retries = forms.IntegerField(
        label="Retries", help_text=Pipeline._meta.get_field("max_retries").help_text
    )
    retry_backoff_seconds = forms.IntegerField(
        label="Retry backoff (seconds)",
        help_text=Pipeline._meta.get_field("retry_backoff_seconds").help_text,
    )

    def __init__(self, *args, pipeline: Pipeline, **kwargs):
        kwargs.setdefault("initial", {name: getattr(pipeline, name) for name in services.SETTINGS})
        super().__init__(*args, **kwargs)
        # Plain text: the template escapes it, so a name like "<b>" shows as typed.
        default_experiment = f"pipeline/{pipeline.name}"
        experiment = self.fields["mlflow_experiment"]
        experiment.help_text = (
            f"The MLflow experiment runs are tracked in; empty uses {default_experiment}."
        )
        experiment.widget.attrs["placeholder"] = default_experiment
        timeout = self.fields["timeout_seconds"]
        default = site.MLOPS_RUN_TIMEOUT
        timeout.help_text = (
            f"Stop a run after this long; empty uses the site default, {default} s "
            f"({duration(default)}). It must stay under the worker limit of {site.Q_TIMEOUT} s."
        )
        timeout.widget.attrs["placeholder"] = f"{default} (site default)"


class RuleForm(forms.Form):
    """When a schedule fires: what the preview reads. `schedules` checks the rule."""

    cron = forms.CharField(
        required=False,
        max_length=100,
        label="Cron expression",
        help_text="Five fields: minute hour day-of-month month day-of-week, e.g. 0 6 * * 1-5; "
        "or an alias such as @daily.",
        widget=forms.TextInput(attrs={"placeholder": "0 6 * * *", "spellcheck": "false"}),
    )
    interval_seconds = forms.IntegerField(
        required=False,
        label="Interval (seconds)",
        max_value=2**31 - 1,  # what every database stores in the column
        help_text=f"Instead of a cron expression: at least {schedules.MIN_INTERVAL_SECONDS} s.",
    )
    # Any text: an unknown zone gets the service's message, which names it.
    timezone = forms.CharField(
        initial="UTC",
        label="Time zone",
        help_text="Cron times are wall-clock times in this zone.",
        widget=forms.Select(choices=timezone_choices),
    )


class ScheduleForm(RuleForm):
    """A new schedule's rule and policies; `schedules.create_schedule` checks them."""

    overlap_policy = forms.ChoiceField(
        choices=OverlapPolicy.choices,
        initial=OverlapPolicy.SKIP,
        label="While a run is active",
        help_text=PipelineSchedule._meta.get_field("overlap_policy").help_text,
    )
    catch_up = forms.ChoiceField(
        choices=CatchUpPolicy.choices,
        initial=CatchUpPolicy.NONE,
        label="Missed ticks",
        help_text=PipelineSchedule._meta.get_field("catch_up").help_text,
    )


# -- Settings ------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def pipeline_settings(request, pk):
    if request.method == "POST":
        return _save_settings(request, pk)
    pipeline = get_object_or_404(Pipeline, pk=pk)
    return render(request, SETTINGS_PAGE, _settings_context(pipeline))


@permission_needed("pipelines.change_pipeline", "change a pipeline's settings")
def _save_settings(request, pk):
    pipeline = get_object_or_404(Pipeline, pk=pk)
    form = SettingsForm(request.POST, pipeline=pipeline)
    notice = None
    if form.is_valid():
        try:
            notice = _update_settings(pipeline, form.cleaned_data, request.user)
        except PipelineInvalid as exc:
            _add_service_errors(form, exc.errors)
    if notice and not request.htmx:
        messages.add_message(request, *notice)
        return redirect("pipelines:settings", pk=pk)
    if notice:  # The saved values, as the service stored them.
        form = SettingsForm(pipeline=pipeline)
    context = {"form": form, "settings_notice": notice and _notice(*notice)}
    if request.htmx:
        return render(
            request, "pipelines/htmx/settings_form.html", {"pipeline": pipeline, **context}
        )
    return render(request, SETTINGS_PAGE, _settings_context(pipeline, **context))


def _update_settings(pipeline: Pipeline, values: dict, user) -> tuple[int, str]:
    """Save the settings; the message level and text, naming the version recorded."""
    before = _latest_version(pipeline)
    services.update_pipeline(pipeline, settings=values, user=user)
    after = _latest_version(pipeline)
    if after == before:
        return messages.INFO, "Nothing changed, so no version was recorded."
    return messages.SUCCESS, f"Settings saved as version {after}."


def _latest_version(pipeline: Pipeline) -> int | None:
    return pipeline.versions.order_by("-number").values_list("number", flat=True).first()


def _add_service_errors(form: forms.Form, errors: list[StepError]) -> None:
    for error in errors:
        form.add_error(error.field if error.field in form.fields else None, error.message)


# -- Schedules -----------------------------------------------------------------------------


@dataclass
class ScheduleRow:
    """A schedule as its table row shows it: times in the schedule's own time zone."""

    schedule: PipelineSchedule
    rule: str
    next_run: str
    ticks: list[tuple[ScheduleTick, str]]


@login_required
@permission_needed("pipelines.add_pipelineschedule", "add schedules")
@require_POST
def schedule_add(request, pk):
    pipeline = get_object_or_404(Pipeline, pk=pk)
    form = ScheduleForm(request.POST)
    if form.is_valid():
        try:
            schedule = schedules.create_schedule(pipeline, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            first = schedules.local_time(schedule, schedule.next_tick_at)
            text = f"Schedule added: {_name(schedule)}; its first run is due {first}."
            return _schedules_outcome(request, pipeline, messages.SUCCESS, text)
    preview = _preview(RuleForm(request.POST))  # what the box showed as it was typed
    if request.htmx:
        return render(request, _SECTION, _schedules_context(pipeline, form, preview))
    context = _settings_context(pipeline, schedule_form=form, preview=preview)
    return render(request, SETTINGS_PAGE, context)


@login_required
@require_safe
def schedule_preview(request, pk):
    """The next fire times of the rule being typed, or what is wrong with it."""
    pipeline = get_object_or_404(Pipeline, pk=pk)
    preview = _preview(RuleForm(request.GET))
    if htmx_partial(request):
        response = render(request, "pipelines/htmx/schedule_preview.html", {"preview": preview})
    else:  # The page, with the rule as typed and the preview under it.
        form = ScheduleForm(initial=request.GET.dict())
        context = _settings_context(pipeline, schedule_form=form, preview=preview)
        response = render(request, SETTINGS_PAGE, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _preview(form: RuleForm) -> dict:
    if not form.is_valid():
        return {"errors": _labelled_errors(form)}
    values = form.cleaned_data
    if not values["cron"].strip() and values["interval_seconds"] is None:
        return {}  # Nothing typed yet: the template says what to type.
    try:
        times = schedules.preview_ticks(
            values["cron"], values["timezone"], values["interval_seconds"], count=PREVIEW_COUNT
        )
    except ValidationError as exc:
        form.add_error(None, exc)
        return {"errors": _labelled_errors(form)}
    return {"times": times, "timezone": values["timezone"]}


def _labelled_errors(form: forms.Form) -> list[tuple[str, str]]:
    """Each error with the label of the field it is about."""
    return [
        (form.fields[field].label if field in form.fields else "Schedule", message)
        for field, field_errors in form.errors.items()
        for message in field_errors
    ]


@login_required
@permission_needed("pipelines.change_pipelineschedule", "pause schedules")
@require_POST
def schedule_pause(request, pk, schedule_pk):
    schedule = _schedule(pk, schedule_pk)
    schedules.pause_schedule(schedule)
    text = f"Schedule {_name(schedule)} disabled: it fires no more until enabled again."
    return _schedules_outcome(request, schedule.pipeline, messages.SUCCESS, text)


@login_required
@permission_needed("pipelines.change_pipelineschedule", "resume schedules")
@require_POST
def schedule_resume(request, pk, schedule_pk):
    schedule = _schedule(pk, schedule_pk)
    if schedule.enabled:  # Resuming again would move a tick that is due.
        text = f"Schedule {_name(schedule)} was already enabled."
        return _schedules_outcome(request, schedule.pipeline, messages.INFO, text)
    schedules.resume_schedule(schedule)
    following = schedules.local_time(schedule, schedule.next_tick_at)
    text = f"Schedule {_name(schedule)} enabled from now; its next run is due {following}."
    return _schedules_outcome(request, schedule.pipeline, messages.SUCCESS, text)


@login_required
@permission_needed("pipelines.change_pipelineschedule", "fire schedules")
@permission_needed("pipelines.add_pipelinerun", "fire schedules (which starts runs)")
@require_POST
def schedule_fire(request, pk, schedule_pk):
    schedule = _schedule(pk, schedule_pk)
    tick = schedules.fire_now(schedule)
    if tick is None:
        level, text = messages.INFO, "Another scheduler recorded a tick at this moment."
    elif tick.run_id:
        level, text = messages.SUCCESS, f"Fired {_name(schedule)}: run #{tick.run_id} queued."
    else:
        level, text = messages.WARNING, f"Fired {_name(schedule)}: skipped, {tick.reason}."
    return _schedules_outcome(request, schedule.pipeline, level, text, run_id=tick and tick.run_id)


@login_required
@permission_needed("pipelines.delete_pipelineschedule", "delete schedules")
@require_http_methods(["GET", "POST"])
def schedule_delete(request, pk, schedule_pk):
    """GET: the confirmation page (HTMX asks with hx-confirm instead). POST: delete."""
    schedule = _schedule(pk, schedule_pk)
    if request.method == "GET":
        context = {"confirm_delete": schedule, "rule": schedules.describe_rule(schedule)}
        context["tick_count"] = schedule.ticks.count()
        return render(request, SETTINGS_PAGE, _settings_context(schedule.pipeline, **context))
    schedules.delete_schedule(schedule)
    text = f"Schedule {_name(schedule)} deleted with its tick history."
    return _schedules_outcome(request, schedule.pipeline, messages.SUCCESS, text)


_SECTION = "pipelines/htmx/schedule_section.html"


def _schedule(pk: int, schedule_pk: int) -> PipelineSchedule:
    return get_object_or_404(
        PipelineSchedule.objects.select_related("pipeline"), pk=schedule_pk, pipeline_id=pk
    )


def _name(schedule: PipelineSchedule) -> str:
    return f"{schedules.describe_rule(schedule)} ({schedule.timezone})"


def _schedules_outcome(request, pipeline, level: int, text: str, run_id=None):
    """The schedules section with the outcome for HTMX; otherwise back to the page."""
    if not request.htmx:
        messages.add_message(request, level, text)
        return redirect(reverse("pipelines:settings", args=[pipeline.pk]) + "#schedules")
    notice = _notice(level, text, run_id=run_id)
    return render(request, _SECTION, _schedules_context(pipeline, notice=notice))


def _schedules_context(pipeline, schedule_form=None, preview=None, notice=None) -> dict:
    latest_ticks = Prefetch(
        "ticks",
        # A sliced prefetch: one query for the latest ticks of every schedule.
        queryset=ScheduleTick.objects.order_by("-tick_at")[:TICKS_SHOWN],
        to_attr="latest_ticks",
    )
    rows = [
        ScheduleRow(
            schedule,
            schedules.describe_rule(schedule),
            schedules.local_time(schedule, schedule.next_tick_at),
            [
                (tick, schedules.local_time(schedule, tick.tick_at))
                for tick in schedule.latest_ticks
            ],
        )
        for schedule in pipeline.schedules.order_by("pk").prefetch_related(latest_ticks)
    ]
    return {
        "pipeline": pipeline,
        "schedule_rows": rows,
        "schedule_form": schedule_form or ScheduleForm(),
        "preview": preview or {},
        "schedule_notice": notice,
    }


def _settings_context(pipeline, *, schedule_form=None, preview=None, **extra) -> dict:
    return {
        "form": SettingsForm(pipeline=pipeline),
        **_schedules_context(pipeline, schedule_form, preview),
        "tab": "settings",
        **extra,
    }


# -- History -------------------------------------------------------------------------------


@login_required
@require_safe
def pipeline_history(request, pk):
    """The recorded versions, newest first, and the diff between two of them."""
    pipeline = get_object_or_404(Pipeline, pk=pk)
    comparison = _comparison(pipeline, request.GET)
    if htmx_partial(request):
        context = {"pipeline": pipeline, "comparison": comparison}
        response = render(request, "pipelines/htmx/history_diff.html", context)
    else:
        versions = pipeline.versions.select_related("changed_by").order_by("-number")
        page = Paginator(versions, VERSIONS_PER_PAGE).get_page(request.GET.get("page"))
        context = {
            "pipeline": pipeline,
            "page": page,
            "page_numbers": {version.number for version in page.object_list},
            "comparison": comparison,
            "tab": "history",
        }
        response = render(request, HISTORY_PAGE, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _comparison(pipeline: Pipeline, query) -> dict:
    """Versions `a` and `b` of the query (by default the one before the latest, and the
    latest) and the unified diff between them, or what is wrong with the choice."""
    latest = list(pipeline.versions.order_by("-number").values_list("number", flat=True)[:2])
    if not latest:
        return {}
    defaults = {"a": latest[-1], "b": latest[0]}
    chosen, problems = {}, []
    for key in ("a", "b"):
        text = query.get(key, "").strip()
        number = _version_number(text)
        if text and number is None:
            problems.append(f"“{text[:20]}” is not a version number.")
        chosen[key] = number or defaults[key]
    comparison = {**chosen, "only_one": len(latest) == 1}
    if problems:
        return {**comparison, "problem": " ".join(problems)}
    try:
        lines = services.version_diff(pipeline, chosen["a"], chosen["b"])
    except PipelineVersion.DoesNotExist as exc:
        return {**comparison, "problem": f"{exc}: pick two versions from the list."}
    added = sum(1 for line in lines[2:] if line.startswith("+"))
    removed = sum(1 for line in lines[2:] if line.startswith("-"))
    return {**comparison, "lines": lines, "added": added, "removed": removed}


def _version_number(text: str) -> int | None:
    # ASCII digits only ("²" is a digit to Python), and few enough for any database.
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else None


def _notice(level: int, text: str, **extra) -> dict:
    """An outcome shown in a fragment, as base.html shows a message: a word, then text."""
    return {
        "tag": messages.DEFAULT_TAGS[level],
        "word": MESSAGE_WORDS[level],
        "text": text,
        **extra,
    }
