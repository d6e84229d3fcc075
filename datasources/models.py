import uuid

from django.conf import settings
from django.db import models


def dataset_upload_path(instance, filename):
    # The server chooses the stored name; the user's file name is kept only as a label.
    return f"datasets/{uuid.uuid4().hex}.csv"


class DatasetQuerySet(models.QuerySet):
    def matching(self, reference: str | int) -> "DatasetQuerySet":
        """Datasets named by a step parameter: every version of a name, or an id."""
        if isinstance(reference, int):
            return self.filter(pk=reference)
        by_name = self.filter(name=reference)
        # A name made only of digits ("2024") wins over the id it could also be.
        if reference.isascii() and reference.isdigit() and not by_name.exists():
            return self.filter(pk=int(reference))
        return by_name

    def resolve(self, reference: str | int) -> "Dataset":
        """A dataset by id, or the latest version of a name; DoesNotExist otherwise."""
        latest = self.matching(reference).order_by("-version").first()
        if latest is None:
            raise Dataset.DoesNotExist(f"dataset {reference!r} does not exist")
        return latest


class Dataset(models.Model):
    """An uploaded data file, one row per version of a name."""

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    file = models.FileField(upload_to=dataset_upload_path)
    original_filename = models.CharField(max_length=255, blank=True)
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the stored file.")
    size_bytes = models.PositiveBigIntegerField()
    row_count = models.PositiveBigIntegerField()
    column_count = models.PositiveIntegerField()
    schema = models.JSONField(default=dict, help_text="Column name to inferred type.")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DatasetQuerySet.as_manager()

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="unique_dataset_version")
        ]

    def __str__(self):
        return f"{self.name} v{self.version}"
