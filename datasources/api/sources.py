"""/api/v1/datasources/: register, change and delete data sources, test their connection,
and browse their tables.

Every action is a function of `datasources.sources`, shared with the pages, the admin and
the commands. The secret is write-only: accepted on create and update, never answered.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from datasources import sources
from datasources.models import DataSource
from pipelines.api.errors import Conflict, ErrorSerializer
from pipelines.api.pagination import PagePagination
from pipelines.api.permissions import ModelPermissions, requires
from pipelines.api.schema import ApiViewMixin

SOURCE_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The source's id.")
TABLE = OpenApiParameter(
    "table", str, OpenApiParameter.PATH, description="A table (collection) of the source."
)
UNREADABLE = OpenApiResponse(
    ErrorSerializer,
    "`source_unreadable`: the source could not be reached or read (unreachable host, "
    "login refused, unknown database, time limit); the message says why.",
)


class SourceUnreadable(exceptions.APIException):
    # The request depended on reading the source, and that failed: the user's source (its
    # host, login or database) is at fault, not this server, so not a 5xx (which monitoring
    # and clients read as this server's failure, to alert on or retry blindly).
    status_code = status.HTTP_424_FAILED_DEPENDENCY
    default_code = "source_unreadable"


class LastTestSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="Whether it connected and read.")
    worrying = serializers.BooleanField(
        help_text="The account may do more than reading, or its rights could not be checked."
    )
    refused = serializers.BooleanField(
        help_text="Extraction is refused (MLOPS_REQUIRE_READONLY_ACCOUNTS is on)."
    )
    message = serializers.CharField(help_text="The server, or what went wrong.")
    warning = serializers.CharField(help_text="What the account may do besides reading; or ''.")
    seconds = serializers.FloatField(help_text="How long the test took.")
    tested_at = serializers.DateTimeField()


class SourceTestSerializer(LastTestSerializer):
    refusal = serializers.CharField(help_text="Why extraction is refused, or ''.")


class DataSourceSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="pipelines-api:datasource-detail")
    port = serializers.IntegerField(
        min_value=1,
        max_value=65535,
        required=False,
        allow_null=True,
        help_text="Null: the kind's default port.",
    )
    options = serializers.DictField(
        required=False,
        help_text='Connection options of the kind, e.g. {"tls": true, "connect_timeout": 5}.',
    )
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_null=True,
        allow_blank=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="The password: write-only, never answered. Omitted, the stored one is "
        'kept; null or "" removes it.',
    )
    has_secret = serializers.BooleanField(read_only=True, help_text="Whether a secret is stored.")
    last_test = serializers.SerializerMethodField(
        help_text="The outcome of the last connection test; null: not tested lately."
    )

    class Meta:
        model = DataSource
        fields = [
            "id",
            "url",
            "name",
            "kind",
            "host",
            "port",
            "database",
            "user",
            "secret",
            "has_secret",
            "options",
            "allow_writes",
            "last_test",
            "created_at",
            "updated_at",
        ]
        # A taken name is refused by `save_source`, with the page's message.
        extra_kwargs = {"name": {"validators": []}}

    @extend_schema_field(LastTestSerializer(allow_null=True))
    def get_last_test(self, source):
        # The list asks for its whole page at once; a single source asks for itself.
        tests = self.context.get("last_tests")
        if tests is None:
            tests = sources.last_tests([source])
        record = tests.get(source.pk)
        return None if record is None else LastTestSerializer(record).data

    def create(self, validated_data):
        return self._save(validated_data, None)

    def update(self, instance, validated_data):
        return self._save(validated_data, instance)

    def _save(self, validated_data: dict, source: DataSource | None) -> DataSource:
        values = {k: v for k, v in validated_data.items() if k != "secret"}
        return sources.save_source(values, _new_secret(validated_data), source)


def _new_secret(validated_data: dict) -> str | None:
    """The secret to store: None keeps the stored one (none given), "" removes it."""
    if "secret" not in validated_data:
        return None
    return validated_data["secret"] or ""


class TablesSerializer(serializers.Serializer):
    tables = serializers.ListField(child=serializers.CharField(), help_text="By name.")


class ColumnSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField(help_text="The database's type of the column.")


class TablePreviewSerializer(serializers.Serializer):
    table = serializers.CharField()
    columns = ColumnSerializer(many=True)
    header = serializers.ListField(
        child=serializers.CharField(), help_text="The names of the preview's columns."
    )
    rows = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField(allow_null=True)),
        help_text=f"The first {sources.PREVIEW_ROWS} rows as text, in `header` order; "
        "null for a missing value.",
    )


@extend_schema_view(
    list=extend_schema(description="Data sources by name, with their last connection test."),
    create=extend_schema(description="Register a data source; test it next."),
    retrieve=extend_schema(parameters=[SOURCE_ID]),
    update=extend_schema(
        parameters=[SOURCE_ID], description="Omit `secret` to keep the stored one."
    ),
    partial_update=extend_schema(
        parameters=[SOURCE_ID], description="Omit `secret` to keep the stored one."
    ),
    destroy=extend_schema(
        parameters=[SOURCE_ID],
        description="Refused while a pipeline's step reads from or writes to it.",
        request=None,
        responses={
            204: OpenApiResponse(None, "Deleted."),
            409: OpenApiResponse(ErrorSerializer, "Pipelines use it: the message names them."),
        },
    ),
)
class DataSourceViewSet(ApiViewMixin, viewsets.ModelViewSet):
    queryset = DataSource.objects.all()
    serializer_class = DataSourceSerializer
    permission_model = DataSource
    permission_classes = [IsAuthenticated, ModelPermissions]
    pagination_class = PagePagination
    lookup_value_regex = "[^/]+"  # a malformed id is a 404 of the API, not an HTML page

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        self.page_tests = sources.last_tests(page)  # one cache read for the whole page
        return page

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if hasattr(self, "page_tests"):
            context["last_tests"] = self.page_tests
        return context

    def perform_destroy(self, instance):
        try:
            sources.delete_source(instance)
        except DjangoValidationError as exc:
            raise Conflict(" ".join(exc.messages)) from None

    @extend_schema(
        parameters=[SOURCE_ID],
        request=None,
        responses={
            200: OpenApiResponse(
                SourceTestSerializer, "Tested: `ok` says whether it connected and read."
            ),
            403: OpenApiResponse(ErrorSerializer, "No permission to change data sources."),
        },
    )
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[IsAuthenticated, requires("datasources.change_datasource")],
        pagination_class=None,
    )
    def test(self, request, pk=None):
        """Connect with the stored secret, read, and report what the account may do.

        Testing reveals the server and the account's rights: like the page, it needs the
        right to change data sources. The secret is scrubbed from every message.
        """
        tested = sources.test_source(self.get_object())
        check = tested.check
        answer = {
            "ok": check.ok,
            "worrying": check.worrying,
            "refused": bool(check.refusal),
            "message": check.message,
            "warning": check.warning,
            "refusal": check.refusal,
            "seconds": tested.seconds,
            "tested_at": tested.tested_at,
        }
        return Response(SourceTestSerializer(answer).data)

    @extend_schema(
        operation_id="datasources_tables_list",
        parameters=[SOURCE_ID],
        responses={200: TablesSerializer, 424: UNREADABLE},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def tables(self, request, pk=None):
        """The tables (collections) of the source, read through its read-only connector."""
        try:
            tables = sources.source_tables(self.get_object())
        except sources.SourceUnreadable as exc:
            raise SourceUnreadable(str(exc)) from None
        return Response(TablesSerializer({"tables": tables}).data)

    @extend_schema(
        operation_id="datasources_table_retrieve",
        parameters=[SOURCE_ID, TABLE],
        responses={
            200: TablePreviewSerializer,
            404: OpenApiResponse(ErrorSerializer, "No such source, or no such table in it."),
            424: UNREADABLE,
        },
    )
    @action(
        detail=True,
        methods=["get"],
        url_path="tables/(?P<table>[^/]+)",
        url_name="table",
        pagination_class=None,
    )
    def table(self, request, table, pk=None):
        """The columns of one table (collection) the source lists, and its first rows."""
        source = self.get_object()
        try:
            preview = sources.listed_table_preview(source, table)
        except sources.TableMissing as exc:
            raise exceptions.NotFound(str(exc)) from None
        except sources.SourceUnreadable as exc:
            raise SourceUnreadable(str(exc)) from None
        columns = [{"name": name, "type": kind} for name, kind in preview.columns]
        answer = {"table": table, "columns": columns, "header": preview.header}
        answer["rows"] = preview.cells()
        return Response(TablePreviewSerializer(answer).data)
