"""API tokens: django-rest-knox's, with DRF's older keys still accepted.

Both arrive as `Authorization: Token <token>`. A knox token starts with the knox prefix
(`mlops_`), so the header tells which table to look in; a DRF key (40 hex characters,
made before knox tokens) is checked by DRF's own class, until those keys are retired.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox import auth as knox_auth
from knox.settings import knox_settings
from rest_framework import authentication


class TokenAuthentication(knox_auth.TokenAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        prefix = knox_settings.TOKEN_PREFIX.encode()
        if len(header) == 2 and not header[1].startswith(prefix):
            return authentication.TokenAuthentication().authenticate(request)
        return super().authenticate(request)

    def _cleanup_token(self, auth_token) -> bool:
        # Knox also deletes the user's other expired tokens here, one more query on every
        # request; an expired token is refused all the same, and deleted when it is used.
        if auth_token.expiry is not None and auth_token.expiry < knox_auth.timezone.now():
            auth_token.delete()
            return True
        return False


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = TokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        scheme = build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=self.target.authenticate_header(None)
        )
        scheme["description"] = (
            "`Authorization: Token <token>`: a token from POST /api/v1/tokens/ or "
            "`manage.py create_integration_user`."
        )
        return scheme
