"""Forms of the analyst pages of the datasources app."""

from django import forms

from datasources.connectors import connector_class
from datasources.models import DataSource, DataSourceKind
from datasources.sources import SOURCE_FIELDS

SECRET_HELP = "Write-only: it is never shown. Leave empty to keep the stored secret."


def option_help() -> list[tuple[str, list[tuple[str, str]], int]]:
    """Per kind: its label, the options its connector understands, its default port."""
    kinds = []
    for kind, label in DataSourceKind.choices:
        connector = connector_class(kind)
        kinds.append((label, sorted(connector.options.items()), connector.default_port))
    return kinds


class DataSourceForm(forms.Form):
    """The connection fields of a data source and a write-only secret.

    Validation beyond the field types (unique name, the kind's options) is the service's
    `save_source`, shared with the admin and `manage.py add_datasource`.
    """

    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=DataSourceKind.choices)
    host = forms.CharField(max_length=255)
    port = forms.IntegerField(
        required=False, min_value=1, max_value=65535, help_text="Empty: the kind's default port."
    )
    database = forms.CharField(max_length=255, required=False)
    user = forms.CharField(max_length=255, required=False)
    secret = forms.CharField(
        label="Password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=SECRET_HELP,
    )
    clear_secret = forms.BooleanField(
        label="Remove the stored secret", required=False, help_text="Connect without a password."
    )
    options = forms.JSONField(
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text='A JSON object, e.g. {"tls": true}; the options of each kind are listed below.',
    )
    allow_writes = forms.BooleanField(
        required=False, help_text="Let save steps write tables to this source."
    )

    def __init__(self, *args, source: DataSource | None = None, **kwargs):
        if source is not None and source.pk:
            kwargs.setdefault("initial", {f: getattr(source, f) for f in SOURCE_FIELDS})
        super().__init__(*args, **kwargs)
        self.has_secret = bool(source and source.has_secret)
        if not self.has_secret:
            del self.fields["clear_secret"]
            self.fields["secret"].help_text = "Write-only: it is never shown once saved."

    def clean_options(self):
        options = self.cleaned_data.get("options")
        if options in (None, ""):
            return {}
        if not isinstance(options, dict):
            raise forms.ValidationError('Give a JSON object, like {"tls": true}.')
        return options

    def values(self) -> dict:
        """The source's fields, as `save_source` takes them."""
        return {field: self.cleaned_data[field] for field in SOURCE_FIELDS}

    def new_secret(self) -> str | None:
        """The secret to store: "" to remove it, None to keep the stored one."""
        if self.cleaned_data.get("clear_secret"):
            return ""
        return self.cleaned_data.get("secret") or None
