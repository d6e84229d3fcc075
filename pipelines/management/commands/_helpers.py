from django.core.management.base import CommandError

from pipelines.models import Pipeline


def get_pipeline(reference: str) -> Pipeline:
    try:
        return Pipeline.objects.get_by_reference(reference)
    except Pipeline.DoesNotExist as exc:
        raise CommandError(str(exc)) from None
