from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from datasources.models import Dataset
from datasources.services import add_dataset


class DatasetUploadForm(forms.ModelForm):
    user = None
    upload = forms.FileField(help_text="A CSV file with a header row.")

    class Meta:
        model = Dataset
        fields = ("name",)

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        upload = cleaned["upload"]
        try:
            self.instance = add_dataset(upload, cleaned["name"], upload.name, self.user)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict.get("file", exc.messages)) from None
        return cleaned


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "row_count", "column_count", "size_bytes", "created_at")
    search_fields = ("name",)
    readonly_fields = (
        "name",
        "version",
        "original_filename",
        "checksum",
        "size_bytes",
        "row_count",
        "column_count",
        "schema",
        "uploaded_by",
        "created_at",
    )

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None:
            return super().get_form(request, obj, **kwargs)
        # A subclass per request carries the uploader without sharing state between requests.
        return type("DatasetUploadForm", (DatasetUploadForm,), {"user": request.user})

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else ()

    def get_fields(self, request, obj=None):
        return ("name", "upload") if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        # The upload form stored the dataset through add_dataset while validating.
        if change:
            super().save_model(request, obj, form, change)
