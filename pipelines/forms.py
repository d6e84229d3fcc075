from functools import cache
from zoneinfo import available_timezones

from django import forms
from django.core.exceptions import ValidationError

from pipelines.choices import StepKind
from pipelines.engine.registry import STEP_TYPES
from pipelines.models import PipelineSchedule, PipelineStep
from pipelines.validation import StepError, validate_steps


def step_type_choices() -> list:
    """The registered step types as "slug: label", grouped by kind in pipeline order."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for slug, cls in sorted(STEP_TYPES.items()):
        groups.setdefault(cls.kind, []).append(
            (slug, f"{slug}: {cls.label}" if cls.label else slug)
        )
    kinds = [kind for kind in StepKind.values if kind in groups]
    kinds += sorted(set(groups) - set(kinds))  # kinds of plug-in step types
    labels = dict(StepKind.choices)
    # The blank choice keeps a step whose type is no longer registered from silently
    # taking the first type of the list when its form is saved.
    return [("", "---------"), *((labels.get(kind, kind), groups[kind]) for kind in kinds)]


@cache
def timezone_choices() -> list[tuple[str, str]]:
    """Every IANA time zone name, UTC first (the default), then sorted."""
    # The system's zone files add aliases that are no IANA names ("localtime", "Factory").
    names = sorted(available_timezones() - {"UTC", "localtime", "Factory", "posixrules"})
    return [(name, name) for name in ["UTC", *names]]


class StepForm(forms.ModelForm):
    step_type = forms.ChoiceField(
        label="Step type",
        choices=step_type_choices,
        error_messages={"invalid_choice": "Unknown step type “%(value)s”: pick one from the list."},
    )

    class Meta:
        model = PipelineStep
        fields = ("order", "step_type", "name", "params", "enabled")


class ScheduleForm(forms.ModelForm):
    timezone = forms.ChoiceField(
        label="Time zone",
        choices=timezone_choices,
        initial="UTC",
        help_text="Cron expressions are read as wall-clock times in this zone.",
        error_messages={
            "invalid_choice": "Unknown time zone “%(value)s”: pick an IANA name from the list."
        },
    )

    class Meta:
        model = PipelineSchedule
        fields = (
            "pipeline",
            "cron",
            "timezone",
            "interval_seconds",
            "enabled",
            "overlap_policy",
            "catch_up",
        )


class StepInlineFormSet(forms.BaseInlineFormSet):
    """Validates the steps together (types, params, required context keys).

    Errors are attached to the step's row and field, and nothing is saved.
    """

    def clean(self):
        super().clean()
        live = [
            form for form in self.forms if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        by_order = {form.cleaned_data.get("order"): form for form in live}
        steps = [_definition(form.cleaned_data) for form in live]
        for error in validate_steps(steps):
            form = by_order.get(error.order)
            if form is None:
                raise ValidationError(str(error))
            field = _form_field(error)
            field = field if field in form.fields else None
            # A field that did not clean (malformed JSON, unknown type) was checked as
            # empty: its own error is the true one, a second would mislead.
            if field is not None and form.has_error(field):
                continue
            form.add_error(field, f"{error.field}: {error.message}")


def _form_field(error: StepError) -> str:
    if error.field.startswith("params"):
        return "params"
    return "order" if error.field.endswith("order") else "step_type"


def _definition(data: dict) -> dict:
    return {
        "order": data.get("order"),
        "type": data.get("step_type", ""),
        "name": data.get("name", ""),
        "params": data.get("params") if data.get("params") is not None else {},
        "enabled": data.get("enabled", True),
    }
