"""Accounts for integrations: a user that may run pipelines, with an API token."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from pipelines.api.tokens import issue_token

# What a CI job or an orchestrator needs to trigger runs and follow them.
INTEGRATION_PERMISSIONS = [
    "pipelines.view_pipeline",
    "pipelines.view_pipelinerun",
    "pipelines.add_pipelinerun",
    "pipelines.change_pipelinerun",
]


def create_integration_user(username: str, token_name: str = "integration") -> tuple[str, bool]:
    """Make (or complete) a user that can run pipelines; returns a new token and if it is new.

    The user has no usable password: it signs in with tokens only. Each call issues a new
    token (only its digest is stored, so an earlier one cannot be shown again); earlier
    tokens keep working until they expire or are revoked (DELETE /api/v1/tokens/<id>/).
    """
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    user.user_permissions.add(*_permissions(INTEGRATION_PERMISSIONS))
    _, token = issue_token(user, token_name)
    return token, created


def _permissions(names: list[str]) -> list[Permission]:
    pairs = [name.split(".", 1) for name in names]
    found = Permission.objects.filter(
        content_type__app_label__in={app for app, _ in pairs},
        codename__in={codename for _, codename in pairs},
    )
    return list(found)
