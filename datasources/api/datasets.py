"""/api/v1/datasets/: uploaded datasets, versioned by name.

A name's versions live under /datasets/{name}/versions/{version}/ (preview, profile,
download). Every action calls the `datasources.services` function the pages use.

A name may contain "/", so the name in a path is everything before "/versions/": a name
with a "versions" segment after its first one can be reached by the pages only.
"""

from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.uploadhandler import FileUploadHandler
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from datasources import services
from datasources.models import Dataset
from pipelines.api.common import location
from pipelines.api.errors import Conflict, ErrorSerializer
from pipelines.api.pagination import PagePagination
from pipelines.api.permissions import ModelPermissions
from pipelines.api.schema import ApiViewMixin
from pipelines.api.serializers import RejectsUnknownFields

NAME_PATTERN = r"(?:(?!/versions/).)+"
# The largest version a PositiveIntegerField holds on every database: a bigger number in
# a path is a 404, not a database error.
VERSION_MAX = 2**31 - 1
PREVIEW_ROWS = 20
PREVIEW_MAX_ROWS = 1000
NAME_MAX_LENGTH = Dataset._meta.get_field("name").max_length

NAME = OpenApiParameter(
    "name", OpenApiTypes.STR, OpenApiParameter.PATH, description="The dataset's name."
)
VERSION = OpenApiParameter(
    "version",
    {"type": "integer", "minimum": 1, "maximum": VERSION_MAX},
    OpenApiParameter.PATH,
    description="The version number: 1 for the first upload of the name.",
)
SEARCH = OpenApiParameter("search", OpenApiTypes.STR, description="Part of the name, any case.")
LOCATION = location("The new version's URL.", 201)
CONTENT_DISPOSITION = OpenApiParameter(
    "Content-Disposition",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[200],
    description='`attachment; filename="…"`: the uploaded file\'s name, or '
    "`<name>-v<version>.<ext>` when none was kept.",
)
DOWNLOAD_TYPES = {
    (200, content_type): OpenApiResponse(OpenApiTypes.BINARY, "The file as it was uploaded.")
    for content_type in services.CONTENT_TYPES.values()
}
VERSION_NOT_FOUND = OpenApiResponse(ErrorSerializer, "No dataset has this name and version.")


class UploadTooLarge(ValidationError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"

    def __init__(self):
        super().__init__({"file": [services.too_large_message()]})


class UploadLimit(FileUploadHandler):
    """Stops an upload once it passes MLOPS_MAX_UPLOAD_BYTES, while it arrives: Django
    would otherwise write all of it to a temporary file before `add_dataset` refuses it."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        # The declared length refuses most of them before a byte of the body is read.
        if content_length > settings.MLOPS_MAX_UPLOAD_BYTES + services.FORM_OVERHEAD_BYTES:
            raise UploadTooLarge()

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > settings.MLOPS_MAX_UPLOAD_BYTES:
            raise UploadTooLarge()
        return raw_data  # the next handler spools it: memory when small, else a temp file

    def file_complete(self, file_size):
        return None


class VersionLink(serializers.HyperlinkedIdentityField):
    """A link to a view of one version: its path holds the name and the version."""

    def get_url(self, obj, view_name, request, format):
        kwargs = {"name": obj.name, "version": obj.version}
        return self.reverse(view_name, kwargs=kwargs, request=request, format=format)


class DatasetVersionSerializer(serializers.ModelSerializer):
    url = VersionLink(view_name="pipelines-api:dataset-version")
    download_url = VersionLink(view_name="pipelines-api:dataset-download")
    column_types = serializers.DictField(
        source="schema",
        child=serializers.CharField(),
        read_only=True,
        help_text="Each column's type (pandas dtype), inferred from the whole file.",
    )
    uploaded_at = serializers.DateTimeField(source="created_at", read_only=True)
    uploaded_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Dataset
        fields = [
            "id",
            "url",
            "name",
            "version",
            "format",
            "original_filename",
            "size_bytes",
            "checksum",
            "row_count",
            "column_count",
            "column_types",
            "encoding",
            "delimiter",
            "uploaded_at",
            "uploaded_by",
            "download_url",
        ]


class DatasetSummarySerializer(DatasetVersionSerializer):
    versions_url = serializers.HyperlinkedIdentityField(
        view_name="pipelines-api:dataset-detail", lookup_field="name", lookup_url_kwarg="name"
    )
    # Annotated by `latest_datasets`, so a page of names is one query.
    version_count = serializers.IntegerField(read_only=True)

    class Meta(DatasetVersionSerializer.Meta):
        fields = [*DatasetVersionSerializer.Meta.fields, "version_count", "versions_url"]


class DatasetNameSerializer(serializers.Serializer):
    name = serializers.CharField()
    version_count = serializers.IntegerField()
    used_by = serializers.ListField(
        child=serializers.CharField(),
        help_text="Pipelines with a step reading a version of it: deleting is refused "
        "while there are any.",
    )
    versions = DatasetVersionSerializer(many=True, help_text="Newest first.")


@extend_schema_field(OpenApiTypes.BINARY)
class UploadedFileField(serializers.FileField):
    """A file field the schema describes as the file's bytes (a multipart part)."""


class DatasetUploadSerializer(RejectsUnknownFields, serializers.Serializer):
    body_name = "an upload"
    # Blank names and empty files pass here: add_dataset refuses them, with its messages.
    file = UploadedFileField(
        allow_empty_file=True,
        help_text="A CSV (.csv, .tsv, .txt), Parquet or Excel .xlsx file; the format comes "
        "from the file name's extension, else from the content.",
    )
    name = serializers.CharField(
        allow_blank=True,
        help_text=f"The dataset's name, at most {NAME_MAX_LENGTH} characters: an upload "
        "under an existing name is its next version.",
    )
    encoding = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="A CSV file's text encoding (utf-8, cp1252, latin-1, ...). Empty: UTF-8, "
        "else Windows-1252 when no byte of the file is UTF-8.",
    )


class DatasetPreviewQuerySerializer(serializers.Serializer):
    rows = serializers.IntegerField(
        min_value=1,
        max_value=PREVIEW_MAX_ROWS,
        default=PREVIEW_ROWS,
        help_text="How many of the first rows to show.",
    )


class DatasetPreviewSerializer(serializers.Serializer):
    columns = serializers.ListField(child=serializers.CharField())
    rows = serializers.ListField(
        child=serializers.ListField(child=serializers.JSONField(allow_null=True)),
        help_text="The first rows, each a list of values in the order of `columns`.",
    )
    row_count = serializers.IntegerField(help_text="Rows in the whole dataset.")


class DatasetTopValueSerializer(serializers.Serializer):
    value = serializers.CharField()
    count = serializers.IntegerField()


class DatasetProfileColumnSerializer(serializers.Serializer):
    name = serializers.CharField()
    dtype = serializers.CharField()
    nulls = serializers.IntegerField()
    distinct = serializers.IntegerField(help_text="Distinct values, nulls aside.")
    min = serializers.JSONField(allow_null=True, help_text="Numbers and dates only.")
    max = serializers.JSONField(allow_null=True, help_text="Numbers and dates only.")
    top = DatasetTopValueSerializer(
        many=True, help_text="The most frequent values of any other column, with their counts."
    )


class DatasetProfileSerializer(serializers.Serializer):
    row_count = serializers.IntegerField()
    columns = DatasetProfileColumnSerializer(many=True)


@extend_schema_view(
    list=extend_schema(
        description="The latest version of each dataset name, by name.", parameters=[SEARCH]
    ),
)
class DatasetViewSet(ApiViewMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = DatasetSummarySerializer
    permission_classes = [IsAuthenticated, ModelPermissions]
    permission_model = Dataset
    parser_classes = [MultiPartParser]
    pagination_class = PagePagination
    lookup_field = "name"
    lookup_value_regex = NAME_PATTERN

    def get_queryset(self):
        return services.latest_datasets(self.request.query_params.get("search", "").strip())

    def initialize_request(self, request, *args, **kwargs):
        drf_request = super().initialize_request(request, *args, **kwargs)
        if self.action == "create":
            # Before anything reads the body: a session's CSRF check reads it early.
            request.upload_handlers.insert(0, UploadLimit(request))
        return drf_request

    def perform_content_negotiation(self, request, force=False):
        # A download client may accept only the file's type: its errors still come as JSON.
        return super().perform_content_negotiation(request, force or self.action == "download")

    @extend_schema(
        request=DatasetUploadSerializer,
        parameters=[LOCATION],
        responses={
            201: OpenApiResponse(DatasetVersionSerializer, "Stored as the name's next version."),
            400: OpenApiResponse(
                ErrorSerializer,
                "Nothing stored: a field is missing or unknown, or the file is refused "
                "(unreadable, blank or duplicate column names, ragged rows, bad encoding); "
                "each rejected field with its message.",
            ),
            413: OpenApiResponse(
                ErrorSerializer, "Nothing stored: the file is over the upload limit (`file`)."
            ),
            415: OpenApiResponse(ErrorSerializer, "The body is not multipart/form-data."),
        },
    )
    def create(self, request):
        """Upload a file as a new dataset, or as the next version of an existing name.

        The file is checked whole (format, encoding, header, every row) before anything is
        stored; its row and column counts and column types are kept with it.
        """
        upload = DatasetUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        values = upload.validated_data
        file = values["file"]
        dataset = services.add_dataset(
            file, values["name"], file.name, request.user, encoding=values["encoding"]
        )
        data = DatasetVersionSerializer(dataset, context=self.get_serializer_context()).data
        # The url is DRF's Hyperlink, a str subclass; WSGI servers accept only str itself.
        return Response(
            data, status=status.HTTP_201_CREATED, headers={"Location": str(data["url"])}
        )

    @extend_schema(parameters=[NAME], responses={200: DatasetNameSerializer})
    def retrieve(self, request, name):
        """A dataset name's versions, newest first, and the pipelines that read it."""
        versions = list(services.dataset_versions(name))
        if not versions:
            raise NotFound(f"No dataset is named {name!r}.")
        body = {
            "name": name,
            "version_count": len(versions),
            "used_by": [user["name"] for user in services.pipelines_reading([name])[name]],
            "versions": versions,
        }
        context = self.get_serializer_context()
        return Response(DatasetNameSerializer(body, context=context).data)

    @extend_schema(
        parameters=[NAME],
        request=None,
        responses={
            204: OpenApiResponse(None, "Every version and its file deleted."),
            409: OpenApiResponse(
                ErrorSerializer, "Nothing deleted: pipelines read it (the message names them)."
            ),
        },
    )
    def destroy(self, request, name):
        """Delete every version of a name with their files: all or none."""
        if not services.dataset_versions(name).exists():
            raise NotFound(f"No dataset is named {name!r}.")
        try:
            services.delete_dataset_versions(name)
        except DjangoValidationError as exc:
            raise Conflict(" ".join(exc.messages)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[NAME, VERSION],
        responses={200: DatasetVersionSerializer, 404: VERSION_NOT_FOUND},
    )
    @action(detail=True, url_path=r"versions/(?P<version>[0-9]+)", url_name="version")
    def version_detail(self, request, name, version):
        """One version of a dataset."""
        dataset = _version_or_404(name, version)
        context = self.get_serializer_context()
        return Response(DatasetVersionSerializer(dataset, context=context).data)

    @extend_schema(
        parameters=[NAME, VERSION],
        request=None,
        responses={
            204: OpenApiResponse(None, "The version and its file deleted."),
            404: VERSION_NOT_FOUND,
            409: OpenApiResponse(
                ErrorSerializer, "Not deleted: pipelines read it (the message names them)."
            ),
        },
    )
    @version_detail.mapping.delete
    def delete_version(self, request, name, version):
        """Delete one version and its file; the name's other versions stay."""
        dataset = _version_or_404(name, version)
        try:
            services.delete_dataset(dataset)
        except DjangoValidationError as exc:
            raise Conflict(" ".join(exc.messages)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[NAME, VERSION, DatasetPreviewQuerySerializer],
        responses={
            200: DatasetPreviewSerializer,
            400: OpenApiResponse(ErrorSerializer, "`rows` is not a number from 1 to 1000."),
            404: OpenApiResponse(
                ErrorSerializer, "No dataset has this name and version, or its file is missing."
            ),
        },
    )
    @action(detail=True, url_path=r"versions/(?P<version>[0-9]+)/preview")
    def preview(self, request, name, version):
        """The first rows of a version, with the column types the whole file gave."""
        query = DatasetPreviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        dataset = _version_or_404(name, version)
        with _stored_file(dataset):
            head = services.dataset_head(dataset, query.validated_data["rows"])
        return Response(DatasetPreviewSerializer({**head, "row_count": dataset.row_count}).data)

    @extend_schema(
        parameters=[NAME, VERSION],
        responses={
            200: DatasetProfileSerializer,
            404: OpenApiResponse(
                ErrorSerializer, "No dataset has this name and version, or its file is missing."
            ),
        },
    )
    @action(detail=True, url_path=r"versions/(?P<version>[0-9]+)/profile")
    def profile(self, request, name, version):
        """Per column of a version: type, nulls, distinct values, min and max or top values.

        Computed from the whole file on the first request, then kept.
        """
        dataset = _version_or_404(name, version)
        with _stored_file(dataset):
            columns = services.profile_dataset(dataset)
        return Response(
            DatasetProfileSerializer({"row_count": dataset.row_count, "columns": columns}).data
        )

    @extend_schema(
        parameters=[NAME, VERSION, CONTENT_DISPOSITION],
        responses={
            **DOWNLOAD_TYPES,
            404: OpenApiResponse(
                ErrorSerializer, "No dataset has this name and version, or its file is missing."
            ),
        },
    )
    @action(detail=True, url_path=r"versions/(?P<version>[0-9]+)/download")
    def download(self, request, name, version):
        """The version's file as it was uploaded, streamed."""
        dataset = _version_or_404(name, version)
        with _stored_file(dataset):
            handle = dataset.file.open("rb")
        return FileResponse(
            handle,
            as_attachment=True,
            filename=services.download_filename(dataset),
            content_type=services.CONTENT_TYPES.get(dataset.format, "application/octet-stream"),
        )


def _version_or_404(name: str, version: str) -> Dataset:
    """The version a path names, or the API's 404 (also for numbers no version can have)."""
    number = int(version)
    found = None
    if number <= VERSION_MAX:
        found = services.dataset_versions(name).filter(version=number).first()
    if found is None:
        raise NotFound(f"Dataset {name!r} has no version {version}.")
    return found


@contextmanager
def _stored_file(dataset: Dataset):
    """Turns a stored file gone missing (deleted by hand, a lost volume) into a 404."""
    try:
        yield
    except FileNotFoundError:
        raise NotFound(f"The stored file of {dataset} is missing.") from None
