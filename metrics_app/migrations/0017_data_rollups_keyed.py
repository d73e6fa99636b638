"""The field and status rollups of minutes and hours take their upsert key as their primary
key (metrics_app.data_models, FieldMinute): each table is set aside, made again keyed, and its
rows copied over; back the same way."""

from typing import Any

from django.db import migrations, models

# model, table, time column and its help, key column and its field, counters with theirs, index
COUNTERS = [
    ("items", models.BigIntegerField(help_text="Items extracted by the pages that reported the field.")),
    (
        "filled",
        models.BigIntegerField(help_text="Of those items, the ones with the field present and non-empty."),
    ),
    ("invalid", models.BigIntegerField(help_text="Of the filled, the ones that failed the field's check.")),
]
FIELD = ("field", lambda: models.CharField(max_length=64), lambda: [(n, f.clone()) for n, f in COUNTERS])
STATUS = (
    "http_status",
    lambda: models.SmallIntegerField(verbose_name="HTTP status"),
    lambda: [("navigations", models.BigIntegerField())],
)
MINUTE = ("minute", "Start of the minute (UTC).")
HOUR = ("hour", "Start of the hour, in TIME_ZONE's hours.")
TABLES = [
    (
        "FieldMinute",
        "scraper_fields_minute",
        MINUTE,
        FIELD,
        "uniq_field_minute_key",
        "idx_field_minute_minute",
        "field minute",
    ),
    (
        "FieldHour",
        "scraper_fields_hourly",
        HOUR,
        FIELD,
        "uniq_field_hour_key",
        "idx_field_hour_hour",
        "field hour",
    ),
    (
        "StatusMinute",
        "scraper_status_minute",
        MINUTE,
        STATUS,
        "uniq_status_minute_key",
        "idx_status_minute_minute",
        "status minute",
    ),
    (
        "StatusHour",
        "scraper_status_hourly",
        HOUR,
        STATUS,
        "uniq_status_hour_key",
        "idx_status_hour_hour",
        "status hour",
    ),
]


def _copier(source: str, target: str, columns: list[str]) -> Any:
    def copy(apps: Any, schema_editor: Any) -> None:
        listed = ", ".join(columns)
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {target} ({listed}) SELECT {listed} FROM {source}")

    return copy


def rekey(
    name: str,
    table: str,
    time: tuple[str, str],
    key: tuple[Any, Any, Any],
    unique: str,
    index: str,
    verbose: str,
) -> list[Any]:
    before, set_aside = f"{name}Before", f"{table}_before"
    (time_column, time_help), (key_column, key_field, counters) = time, key
    columns = ["scraper_source", key_column, *(n for n, _ in counters()), time_column]
    return [
        migrations.RenameModel(name, before),
        migrations.AlterModelTable(before, set_aside),
        migrations.RemoveConstraint(before.lower(), unique),
        migrations.RemoveIndex(before.lower(), index),
        migrations.CreateModel(
            name=name,
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "scraper_source",
                        time_column,
                        key_column,
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("scraper_source", models.CharField(max_length=50)),
                (key_column, key_field()),
                *counters(),
                (time_column, models.DateTimeField(help_text=time_help)),
            ],
            options={
                "verbose_name": verbose,
                "db_table": table,
                "ordering": [f"-{time_column}", "scraper_source", key_column],
                "indexes": [models.Index(fields=[time_column], name=index)],
            },
        ),
        migrations.RunPython(_copier(set_aside, table, columns), _copier(table, set_aside, columns)),
        migrations.DeleteModel(before),
    ]


class Migration(migrations.Migration):
    dependencies = [
        ("metrics_app", "0016_compact_field_counts"),
    ]

    operations = [operation for spec in TABLES for operation in rekey(*spec)]
