from django.contrib import messages
from django.contrib.admin.utils import quote
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.text import capfirst

_REFUSED = "_guarded_delete_refused"


class GuardedDeleteAdmin:
    """A ModelAdmin mixin that deletes through the app's own delete function.

    The admin then refuses what the pages and the API refuse: an object a pipeline still
    uses stays, the operator reads why, and no deletion is logged. Put it before
    admin.ModelAdmin in the bases.
    """

    def delete_or_refuse(self, obj) -> None:
        """Delete one object, or raise ValidationError saying why it must stay."""
        raise NotImplementedError

    def used_by(self, obj) -> list[str]:
        """Names of the pipelines that use the object: it may not go while there are any."""
        raise NotImplementedError

    def delete_model(self, request, obj):
        try:
            self.delete_or_refuse(obj)
        except ValidationError as exc:
            self._refuse(request, exc.messages)

    def delete_queryset(self, request, queryset):
        objects = list(queryset)
        refusals = [message for obj in objects for message in self._usage(obj)]
        if refusals:
            # All or nothing, so the action's own count stays true.
            self._refuse(request, [*refusals, f"No {self.opts.verbose_name} was deleted."])
            return
        for obj in objects:
            try:
                self.delete_or_refuse(obj)
            except ValidationError as exc:  # a pipeline started using it meanwhile
                self._refuse(request, exc.messages)

    def log_deletions(self, request, queryset):
        objects = list(queryset)
        if any(self.used_by(obj) for obj in objects):
            return []  # the deletion will be refused: nothing to log
        return super().log_deletions(request, objects)

    def message_user(self, request, message, level=messages.INFO, *args, **kwargs):
        if getattr(request, _REFUSED, False) and level == messages.SUCCESS:
            return  # no "deleted successfully" after a refusal
        super().message_user(request, message, level, *args, **kwargs)

    def response_delete(self, request, obj_display, obj_id):
        if getattr(request, _REFUSED, False):
            # Back to the object that stayed, not to a list that suggests it went.
            name = f"admin:{self.opts.app_label}_{self.opts.model_name}_change"
            url = reverse(name, args=[quote(obj_id)], current_app=self.admin_site.name)
            return HttpResponseRedirect(url)
        return super().response_delete(request, obj_display, obj_id)

    def _usage(self, obj):
        users = self.used_by(obj)
        if not users:
            return []
        listed = ", ".join(repr(name) for name in users)
        kind = capfirst(self.opts.verbose_name)
        return [f"{kind} {obj} is used by pipeline(s) {listed}: it was not deleted."]

    @staticmethod
    def _refuse(request, errors):
        setattr(request, _REFUSED, True)
        for error in errors:
            messages.error(request, error)
