"""Accounts for integrations: a user that may run pipelines, with an API token."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token

# What a CI job or an orchestrator needs to trigger runs and follow them.
INTEGRATION_PERMISSIONS = [
    "pipelines.view_pipeline",
    "pipelines.view_pipelinerun",
    "pipelines.add_pipelinerun",
    "pipelines.change_pipelinerun",
]


def create_integration_user(username: str) -> tuple[str, bool]:
    """Make (or complete) a user that can run pipelines; returns its token and if it is new.

    The user has no usable password: it signs in with the token only.
    """
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    user.user_permissions.add(*_permissions(INTEGRATION_PERMISSIONS))
    token, _ = Token.objects.get_or_create(user=user)
    return token.key, created


def _permissions(names: list[str]) -> list[Permission]:
    pairs = [name.split(".", 1) for name in names]
    found = Permission.objects.filter(
        content_type__app_label__in={app for app, _ in pairs},
        codename__in={codename for _, codename in pairs},
    )
    return list(found)
