from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from datasources.admin_guard import GuardedDeleteAdmin
from datasources.models import Dataset
from datasources.services import add_dataset, delete_dataset, pipelines_using, preview_dataset

PREVIEW_ROWS = 20


class DatasetUploadForm(forms.ModelForm):
    user = None
    upload = forms.FileField(
        help_text="A CSV (.csv), Parquet (.parquet) or Excel (.xlsx) file with a header row."
    )
    encoding = forms.CharField(
        required=False,
        max_length=20,
        help_text="A CSV file's text encoding (utf-8, cp1252, latin-1...). Leave empty to "
        "detect UTF-8, or Windows-1252 when no text in the file is UTF-8.",
    )

    class Meta:
        model = Dataset
        fields = ("name",)

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        upload = cleaned["upload"]
        try:
            self.instance = add_dataset(
                upload,
                cleaned["name"],
                upload.name,
                self.user,
                encoding=cleaned.get("encoding", "").strip(),
            )
        except ValidationError as exc:
            for key, errors in exc.message_dict.items():
                field = {"file": "upload", "name": "name", "encoding": "encoding"}.get(key)
                self.add_error(field, errors)
        return cleaned


@admin.register(Dataset)
class DatasetAdmin(GuardedDeleteAdmin, admin.ModelAdmin):
    list_display = (
        "name",
        "version",
        "format",
        "row_count",
        "column_count",
        "size_bytes",
        "created_at",
    )
    list_filter = ("format",)
    search_fields = ("name",)
    readonly_fields = (
        "name",
        "version",
        "format",
        "encoding",
        "delimiter",
        "original_filename",
        "checksum",
        "size_bytes",
        "row_count",
        "column_count",
        "schema",
        "uploaded_by",
        "created_at",
        "preview",
    )

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None:
            return super().get_form(request, obj, **kwargs)
        # A subclass per request carries the uploader without sharing state between requests.
        return type("DatasetUploadForm", (DatasetUploadForm,), {"user": request.user})

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else ()

    def get_fields(self, request, obj=None):
        return ("name", "upload", "encoding") if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        # The upload form stored the dataset through add_dataset while validating.
        if change:
            super().save_model(request, obj, form, change)

    @admin.display(description="Preview")
    def preview(self, obj):
        try:
            data = preview_dataset(obj, PREVIEW_ROWS)
        except Exception as exc:  # noqa: BLE001 - a page must show even if the file is gone
            return f"Preview unavailable: {exc}"
        columns, types = data["columns"], data["column_types"]
        header = format_html_join(
            "", "<th>{}<br><small>{}</small></th>", ((c, types.get(c, "")) for c in columns)
        )
        cells = (
            format_html_join(
                "", "<td>{}</td>", (("" if row[c] is None else row[c],) for c in columns)
            )
            for row in data["rows"]
        )
        body = format_html_join("", "<tr>{}</tr>", ((cell,) for cell in cells))
        nulls = format_html_join(
            "", "<td>{}</td>", ((data["null_counts"].get(c, ""),) for c in columns)
        )
        return format_html(
            "<p>First {} of {} rows; null counts from {}.</p>"
            '<div style="overflow-x:auto"><table><thead><tr>{}</tr></thead>'
            '<tbody>{}<tr><td colspan="{}"><b>Nulls</b></td></tr><tr>{}</tr></tbody></table></div>',
            len(data["rows"]),
            data["row_count"],
            data["null_counts_scope"],
            header,
            body,
            len(columns) or 1,
            nulls,
        )

    # Deleting goes through delete_dataset: refused while a pipeline reads the dataset.

    def delete_or_refuse(self, dataset):
        delete_dataset(dataset)

    def used_by(self, dataset):
        return pipelines_using(dataset)


from datasources import admin_sources  # noqa: E402,F401  (registers DataSourceAdmin)
