from django import forms
from django.contrib import admin, messages

from datasources.admin_guard import GuardedDeleteAdmin
from datasources.models import DataSource
from datasources.sources import check_source, delete_source, pipelines_using_source, rename_problem


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

    def clean_name(self):
        # The instance still holds the stored name here: the form applies its values later.
        stored = self.instance.name if self.instance.pk else None
        if problem := rename_problem(stored, self.cleaned_data["name"]):
            raise forms.ValidationError(problem)
        return self.cleaned_data["name"]

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
class DataSourceAdmin(GuardedDeleteAdmin, admin.ModelAdmin):
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

    # Deleting goes through delete_source: refused while a pipeline's step names the source.

    def delete_or_refuse(self, source):
        delete_source(source)

    def used_by(self, source):
        return pipelines_using_source(source)

    @admin.display(boolean=True, description="Secret set")
    def has_secret(self, source):
        return source.has_secret

    # Testing opens connections with the stored secret and reveals the server's version
    # and the account's rights: it takes the right to change the source, not to view it.
    @admin.action(description="Test connection", permissions=["change"])
    def test_connections(self, request, queryset):
        for source in queryset:
            check = check_source(source)
            if not check.ok:
                level = messages.ERROR
            elif check.worrying:
                level = messages.WARNING
            else:
                level = messages.SUCCESS
            # The admin's template capitalises a message's first letter: starting with
            # "Data source" keeps the name exactly as typed ("local-mariadb").
            self.message_user(request, f"Data source {source.name}: {check.report}", level)
