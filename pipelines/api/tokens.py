"""/api/v1/tokens/: a user's own API tokens. The token itself is shown once, at creation."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from knox.settings import knox_settings
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from pipelines.api.pagination import PagePagination
from pipelines.api.schema import ApiViewMixin
from pipelines.models import ApiToken

TOKEN_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The token's id.")


class TokenSerializer(serializers.ModelSerializer):
    prefix = serializers.CharField(
        source="token_key", read_only=True, help_text="The token's first characters."
    )
    expiry = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When it stops working; null: never."
    )

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created", "expiry"]
        read_only_fields = ["id", "created"]


class NewTokenSerializer(TokenSerializer):
    token = serializers.CharField(
        read_only=True, help_text="The token, for `Authorization: Token <token>`: shown once."
    )

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]


def issue_token(user, name: str) -> tuple[ApiToken, str]:
    """A new token of `user`, expiring after MLOPS_API_TOKEN_TTL_DAYS; and the token."""
    return ApiToken.objects.create(user=user, expiry=knox_settings.TOKEN_TTL, name=name)


@extend_schema_view(
    list=extend_schema(description="Your tokens (never the tokens themselves), newest first."),
    retrieve=extend_schema(parameters=[TOKEN_ID]),
    create=extend_schema(
        request=TokenSerializer,
        responses={201: NewTokenSerializer},
        description="A new token, one per integration. The answer is the only time the "
        "token is shown: only its digest is stored.",
    ),
    destroy=extend_schema(parameters=[TOKEN_ID], description="Revoke the token, at once."),
)
class TokenViewSet(
    ApiViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = TokenSerializer
    pagination_class = PagePagination
    lookup_value_regex = "[^/]+"  # a malformed id is a 404 of the API, not an HTML page

    def get_queryset(self):
        return ApiToken.objects.filter(user=self.request.user)

    def create(self, request, *args, **kwargs):
        given = TokenSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        instance, token = issue_token(request.user, given.validated_data["name"])
        instance.token = token
        return Response(NewTokenSerializer(instance).data, status=status.HTTP_201_CREATED)
