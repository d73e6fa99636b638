"""Register the nightly jobs in django-celery-beat's tables, where beat reads them and the
admin shows them: the daily aggregation at 02:00 and the cleanup at 03:30, in TIME_ZONE."""

from django.conf import settings
from django.db import migrations

JOBS = [
    # (name, task, hour, minute)
    ("Aggregate daily metrics", "metrics_app.tasks.aggregate_daily", "2", "0"),
    ("Clean up expired metrics", "metrics_app.tasks.cleanup_metrics", "3", "30"),
]


def register(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, hour, minute in JOBS:
        schedule, _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_week="*",
            day_of_month="*",
            month_of_year="*",
            timezone=settings.TIME_ZONE,
        )
        PeriodicTask.objects.update_or_create(
            name=name, defaults={"task": task, "crontab": schedule, "enabled": True}
        )


def unregister(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, *_ in JOBS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("metrics_app", "0003_partition_detailed_tables"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(register, unregister)]
