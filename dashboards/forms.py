"""Forms of the dashboard pages. Column choices come from the chart's source
(`aggregate.source_columns`); whether the options suit those columns is the engine's
call (`ChartInvalid`), whose messages land beside the fields they name."""

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone

from dashboards.choices import Aggregation, ChartKind, ChartSort, SourceKind, TimeGrain
from datasources.models import Dataset, DataSource
from pipelines.models import Pipeline

# ChartInvalid keys that are not the form's own field names.
ENGINE_FIELDS = {"pipeline_id": "pipeline", "dataset_version": "dataset_version"}
# Where an unreadable source is named, by kind of source.
SOURCE_FIELDS = {"dataset": "dataset", "predictions": "pipeline", "table": "table"}


class DashboardForm(forms.Form):
    title = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class DashboardSettingsForm(DashboardForm):
    shared_with = forms.CharField(
        required=False,
        label="Shared with",
        help_text="Usernames, separated by commas: they may view it; only you and staff edit.",
    )

    def __init__(self, *args, owner=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner

    def clean_shared_with(self):
        names = {n.strip() for n in self.cleaned_data["shared_with"].split(",") if n.strip()}
        users = list(get_user_model().objects.filter(username__in=names).exclude(pk=self.owner.pk))
        unknown = names - {user.get_username() for user in users} - {self.owner.get_username()}
        if unknown:
            raise forms.ValidationError(f"No such user: {', '.join(sorted(unknown))}.")
        return users


class ShareLinkForm(forms.Form):
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Without a date, the link works until you revoke it.",
    )

    def clean_expires_at(self):
        expires_at = self.cleaned_data["expires_at"]
        if expires_at and expires_at <= timezone.now():
            raise forms.ValidationError("Choose a time in the future.")
        return expires_at


class ChartForm(forms.Form):
    title = forms.CharField(
        max_length=200, required=False, help_text="Empty: named after its type."
    )
    kind = forms.ChoiceField(choices=ChartKind.choices, label="Chart type")
    source_kind = forms.ChoiceField(choices=SourceKind.choices, label="Source")
    dataset = forms.ChoiceField(required=False)
    dataset_version = forms.IntegerField(
        min_value=1, required=False, label="Version", help_text="Empty: always the latest."
    )
    pipeline = forms.ModelChoiceField(
        Pipeline.objects.order_by("name"),
        required=False,
        empty_label="—",
        help_text="Its latest successful run's predictions.",
    )
    datasource = forms.ChoiceField(required=False, label="Data source")
    table = forms.CharField(
        max_length=200, required=False, help_text="A table saved by a pipeline."
    )
    x = forms.ChoiceField(required=False, label="X axis")
    y = forms.MultipleChoiceField(
        required=False,
        label="Values (y)",
        help_text="One or more (Ctrl- or ⌘-click); none counts rows.",
    )
    aggregation = forms.ChoiceField(choices=Aggregation.choices)
    time_grain = forms.ChoiceField(
        choices=[("", "—"), *TimeGrain.choices], required=False, help_text="For a date x axis."
    )
    group_by = forms.ChoiceField(required=False, label="Group by", help_text="One series each.")
    filters = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "amount > 10"}),
        help_text="One condition a line: column, operator, value.",
    )
    sort = forms.ChoiceField(choices=[("", "—"), *ChartSort.choices], required=False)
    limit = forms.IntegerField(min_value=1, required=False, help_text="Keep the first N.")
    stacked = forms.BooleanField(required=False, help_text="Bars and areas: stack the series.")

    def __init__(self, *args, columns: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.columns = columns or {}
        names = Dataset.objects.order_by("name").values_list("name", flat=True).distinct()
        self.fields["dataset"].choices = [("", "—"), *((n, n) for n in names)]
        sources = DataSource.objects.values_list("name", flat=True)
        self.fields["datasource"].choices = [("", "—"), *((n, n) for n in sources)]
        for name in ("x", "y", "group_by"):
            self.fields[name].choices = self._column_choices(name)

    def _column_choices(self, name: str) -> list[tuple[str, str]]:
        """The source's columns, plus a chosen one it lacks, so that the engine names it."""
        chosen = self.data.getlist(name) if self.is_bound else self.initial.get(name) or []
        chosen = [chosen] if isinstance(chosen, str) else chosen
        choices = [(c, f"{c} ({kind})") for c, kind in self.columns.items()]
        choices += [(c, f"{c} (not in the source)") for c in chosen if c and c not in self.columns]
        return choices if name == "y" else [("", "—"), *choices]

    def clean_filters(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["filters"].splitlines() if line.strip()]

    def clean(self):
        cleaned = super().clean()
        needed = {"dataset": "dataset", "predictions": "pipeline", "table": "datasource"}
        field = needed.get(cleaned.get("source_kind"))
        if field and not cleaned.get(field) and field not in self.errors:
            self.add_error(field, "Choose one.")
        if cleaned.get("source_kind") == "table" and not cleaned.get("table"):
            self.add_error("table", "Name the table.")
        return cleaned

    def add_engine_errors(self, errors: dict[str, str]) -> None:
        """ChartInvalid's messages beside the fields they name (else above the form)."""
        for key, message in errors.items():
            name = ENGINE_FIELDS.get(key, key)
            if name == "source":
                name = SOURCE_FIELDS.get(self.cleaned_data.get("source_kind"), "source_kind")
            self.add_error(name if name in self.fields else None, message)
