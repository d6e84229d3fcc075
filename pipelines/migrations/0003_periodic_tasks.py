"""What the workers need in the database: the reaper and scheduler schedules, and the
database cache table that django-q2 uses to share cluster status between processes."""

from django.core.management import call_command
from django.db import migrations
from django.utils import timezone

PERIODIC = {
    "mlops: reap lost runs": "pipelines.tasks.reap_lost_runs",
    "mlops: fire pipeline schedules": "pipelines.tasks.fire_schedules",
}


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, func in PERIODIC.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": "I",  # minutes
                "minutes": 1,
                "repeats": -1,
                "next_run": timezone.now(),
            },
        )


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=PERIODIC).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("pipelines", "0002_run_lifecycle_and_schedules"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.RunPython(create, remove),
        migrations.RunPython(create_cache_table, migrations.RunPython.noop),
    ]
