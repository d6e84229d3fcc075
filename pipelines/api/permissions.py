"""Who may do what through the API: the Django model permissions the pages check.

A refused request gets 403 with the missing permission named, so an integrator knows
which one to ask an operator for.
"""

from rest_framework.permissions import SAFE_METHODS, BasePermission


def requires(*perms: str) -> type[BasePermission]:
    """A permission class needing every one of `perms` ("app.codename")."""

    class Requires(BasePermission):
        message = f"This needs the {' and '.join(perms)} permission."

        def has_permission(self, request, view):
            return request.user.has_perms(perms)

    return Requires


class ModelPermissions(BasePermission):
    """Reading needs a login; writing needs add, change or delete on the view's model.

    The view names its model in `permission_model` (the queryset may be of another).
    """

    ACTIONS = {"POST": "add", "PUT": "change", "PATCH": "change", "DELETE": "delete"}

    def has_permission(self, request, view):
        if request.method in SAFE_METHODS:
            return True
        meta = view.permission_model._meta
        perm = f"{meta.app_label}.{self.ACTIONS[request.method]}_{meta.model_name}"
        self.message = f"This needs the {perm} permission."
        return request.user.has_perm(perm)
