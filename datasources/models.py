import uuid

from django.conf import settings
from django.db import models


class DatasetFormat(models.TextChoices):
    CSV = "csv", "CSV"
    PARQUET = "parquet", "Parquet"
    EXCEL = "excel", "Excel (.xlsx)"


FORMAT_EXTENSIONS = {
    DatasetFormat.CSV: ".csv",
    DatasetFormat.PARQUET: ".parquet",
    DatasetFormat.EXCEL: ".xlsx",
}


def dataset_upload_path(instance, filename):
    # The server chooses the stored name; the user's file name is kept only as a label.
    extension = FORMAT_EXTENSIONS.get(instance.format, ".csv")
    return f"datasets/{uuid.uuid4().hex}{extension}"


class DatasetQuerySet(models.QuerySet):
    def matching(self, reference: str | int) -> "DatasetQuerySet":
        """Datasets named by a step parameter: every version of a name, or an id."""
        if isinstance(reference, int):
            return self.filter(pk=reference)
        by_name = self.filter(name=reference)
        # A name made only of digits ("2024") wins over the id it could also be.
        if reference.isascii() and reference.isdigit() and not by_name.exists():
            return self.filter(pk=int(reference))
        # "name@3" pins a version, unless a dataset is really called that.
        name, at, version = reference.rpartition("@")
        if at and name and version.isascii() and version.isdigit() and not by_name.exists():
            return self.filter(name=name, version=int(version))
        return by_name

    def resolve(self, reference: str | int) -> "Dataset":
        """A dataset by id, "name@version", or the latest version of a name.

        Raises DoesNotExist otherwise.
        """
        latest = self.matching(reference).order_by("-version").first()
        if latest is None:
            raise Dataset.DoesNotExist(f"dataset {reference!r} does not exist")
        return latest


class Dataset(models.Model):
    """An uploaded data file, one row per version of a name."""

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    file = models.FileField(upload_to=dataset_upload_path)
    format = models.CharField(max_length=10, choices=DatasetFormat, default=DatasetFormat.CSV)
    encoding = models.CharField(
        max_length=20, blank=True, default="utf-8", help_text="Text encoding of a CSV file."
    )
    delimiter = models.CharField(
        max_length=1, blank=True, default=",", help_text="Field delimiter of a CSV file."
    )
    original_filename = models.CharField(
        max_length=255, blank=True, help_text="The uploaded file's name: a label only."
    )
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


class DataSourceKind(models.TextChoices):
    MYSQL = "mysql", "MySQL / MariaDB"
    POSTGRESQL = "postgresql", "PostgreSQL"
    MONGODB = "mongodb", "MongoDB"
    CRATEDB = "cratedb", "CrateDB"


class DataSourceQuerySet(models.QuerySet):
    def get_by_reference(self, reference: str | int) -> "DataSource":
        """A data source by name, or by id when no source has that name."""
        found = self.filter(name=str(reference)).first()
        if found is None and str(reference).isascii() and str(reference).isdigit():
            found = self.filter(pk=int(reference)).first()
        if found is None:
            raise DataSource.DoesNotExist(f"data source {reference!r} does not exist")
        return found


class DataSource(models.Model):
    """A database analysts extract from (and, when allowed, save results to).

    The secret (password) is stored encrypted and is write-only: it never leaves the
    server in pages, exports, logs, run snapshots or MLflow params.
    """

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=DataSourceKind)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(null=True, blank=True)
    database = models.CharField(max_length=255, blank=True)
    user = models.CharField(max_length=255, blank=True)
    encrypted_secret = models.TextField(blank=True, editable=False)
    options = models.JSONField(
        default=dict, blank=True, help_text="TLS, auth source, timeouts: see the connector."
    )
    allow_writes = models.BooleanField(
        default=False, help_text="Let save steps write tables to this source."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DataSourceQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def set_secret(self, plain: str) -> None:
        from datasources.secrets import encrypt

        self.encrypted_secret = encrypt(plain)

    def get_secret(self) -> str:
        from datasources.secrets import decrypt

        return decrypt(self.encrypted_secret)

    @property
    def has_secret(self) -> bool:
        return bool(self.encrypted_secret)

    def connector(self):
        from datasources.connectors import get_connector

        return get_connector(self)
