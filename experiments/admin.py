from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from experiments import registry, tracking
from experiments.models import AliasChange, ModelPolicy, ServingStat


@admin.register(ModelPolicy)
class ModelPolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "gate_metric", "higher_is_better", "predict_group", "updated_at")
    list_filter = ("higher_is_better",)
    search_fields = ("name", "gate_metric")
    fields = ("name", "gate_metric", "higher_is_better", "predict_group", "updated_by")
    readonly_fields = ("updated_by",)

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)


class AliasChangeForm(forms.ModelForm):
    """Adding a row here sets, moves or removes the alias in MLflow through the registry,
    promotion gate included; the registry then writes the row."""

    class Meta:
        model = AliasChange
        fields = ("model_name", "alias", "version", "overridden", "reason")
        help_texts = {
            "version": "The version the alias should point at; blank removes the alias.",
            "overridden": "Pass a promotion gate that refuses the move (staff; give a reason).",
        }

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        name, alias, version = data["model_name"], data["alias"], data.get("version")
        try:
            if version is None:
                registry.check_alias_removal(name, alias)
            else:
                registry.check_alias_change(
                    name, alias, version, self.user, data["overridden"], data["reason"]
                )
        except (registry.AliasRefused, tracking.TrackingUnavailable) as error:
            raise ValidationError(str(error)) from None
        return data


@admin.register(AliasChange)
class AliasChangeAdmin(admin.ModelAdmin):
    """The audit of alias changes: read-only; "add" makes a change through the registry."""

    form = AliasChangeForm
    list_display = (
        "changed_at",
        "model_name",
        "alias",
        "previous_version",
        "version",
        "gate_metric",
        "previous_value",
        "new_value",
        "overridden",
        "changed_by",
    )
    list_filter = ("model_name", "alias", "overridden")
    search_fields = ("model_name", "alias", "reason")
    date_hierarchy = "changed_at"

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.user = request.user
        return form

    def save_model(self, request, obj, form, change):
        if obj.version is None:
            done = registry.remove_alias(obj.model_name, obj.alias, request.user, obj.reason)
        else:
            done = registry.set_alias(
                obj.model_name, obj.alias, obj.version, request.user, obj.overridden, obj.reason
            )
        obj.pk = done.pk  # the registry wrote the row; the admin's log and redirect use it

    def has_add_permission(self, request):
        return request.user.has_perm("experiments.set_alias")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ServingStat)
class ServingStatAdmin(admin.ModelAdmin):
    list_display = ("minute", "model_name", "version", "requests", "errors", "rows")
    list_filter = ("model_name",)
    date_hierarchy = "minute"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
