"""The registry of sources and schedulers, counted against METRICS_MAX_SOURCES: filled with
every name the hourly rollups already hold, so an installation's count starts where it is."""

from typing import Any

from django.db import migrations, models


def register_existing(apps: Any, schema_editor: Any) -> None:
    Source = apps.get_model("metrics_app", "Source")
    HourlyRollup = apps.get_model("metrics_app", "HourlyRollup")
    channels = set(HourlyRollup.objects.values_list("scraper_source", flat=True).distinct())
    schedulers = set(
        HourlyRollup.objects.exclude(scheduler_name="").values_list("scheduler_name", flat=True).distinct()
    )
    Source.objects.bulk_create(
        [Source(name=name) for name in sorted(channels | schedulers)], batch_size=1000, ignore_conflicts=True
    )


class Migration(migrations.Migration):
    dependencies = [
        ("metrics_app", "0010_key_scopes"),
    ]

    operations = [
        migrations.CreateModel(
            name="Source",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=50, unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "db_table": "metrics_sources",
                "ordering": ["name"],
            },
        ),
        migrations.RunPython(register_existing, migrations.RunPython.noop),
    ]
