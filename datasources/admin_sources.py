from django import forms
from django.contrib import admin, messages

from datasources.models import DataSource
from datasources.sources import check_source


class DataSourceForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only: leave empty to keep the stored secret.",
    )
    clear_secret = forms.BooleanField(required=False, help_text="Remove the stored secret.")

    class Meta:
        model = DataSource
        fields = ("name", "kind", "host", "port", "database", "user", "options", "allow_writes")

    def save(self, commit=True):
        source = super().save(commit=False)
        if self.cleaned_data.get("clear_secret"):
            source.set_secret("")
        elif self.cleaned_data.get("secret"):
            source.set_secret(self.cleaned_data["secret"])
        if commit:
            source.save()
        return source


@admin.register(DataSource)
class DataSourceAdmin(admin.ModelAdmin):
    form = DataSourceForm
    list_display = (
        "name",
        "kind",
        "host",
        "port",
        "database",
        "user",
        "allow_writes",
        "has_secret",
    )
    list_filter = ("kind", "allow_writes")
    search_fields = ("name", "host", "database")
    actions = ["test_connections"]

    @admin.display(boolean=True, description="Secret set")
    def has_secret(self, source):
        return source.has_secret

    @admin.action(description="Test connection")
    def test_connections(self, request, queryset):
        for source in queryset:
            ok, message = check_source(source)
            level = messages.SUCCESS if ok else messages.ERROR
            self.message_user(request, f"{source}: {message}", level)
