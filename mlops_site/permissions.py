"""The pages' answer to an action the user may not take: 403 naming the permission."""

from functools import wraps

from django.contrib.auth.models import Permission
from django.shortcuts import render


def permission_needed(permission: str, action: str):
    """Refuse with 403 and a page naming `permission` (use under login_required).

    `action` completes "To ... you need": e.g. "start runs".
    """

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.user.has_perm(permission):
                return view(request, *args, **kwargs)
            return forbidden(request, permission, action)

        return wrapped

    return decorator


def forbidden(request, permission: str, action: str):
    app_label, codename = permission.split(".")
    named = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
    context = {"permission": permission, "name": named.name if named else "", "action": action}
    return render(request, "forbidden.html", context, status=403)
