"""MySQL/MariaDB only: partition the detailed tables by UTC day, so retention drops a day's
partition instead of deleting its rows (metrics_app.retention). SQLite is left as it is.

The ALTER rebuilds each table; on a large existing table it takes a while. The SQL is frozen
here as it was when this migration was written; metrics_app.retention adds the day
partitions from then on.
"""

from datetime import UTC, datetime, timedelta

from django.db import migrations

TABLES = ("scraper_page_performance", "scheduler_metrics")
DAYS_AHEAD = 7


def to_days(day):
    return day.toordinal() + 365  # MySQL's TO_DAYS counts a year 0


def partition(apps, schema_editor):
    db = schema_editor.connection
    if db.vendor != "mysql":
        return
    today = datetime.now(UTC).date()
    days = [today + timedelta(days=n) for n in range(DAYS_AHEAD + 1)]
    ahead = ", ".join(
        f"PARTITION p{day:%Y%m%d} VALUES LESS THAN ({to_days(day + timedelta(days=1))})" for day in days
    )
    with db.cursor() as cursor:
        for table in TABLES:
            cursor.execute(
                f"ALTER TABLE {table} DROP PRIMARY KEY, ADD PRIMARY KEY (id, created_at) "
                f"PARTITION BY RANGE (TO_DAYS(created_at)) ("
                f"PARTITION p_past VALUES LESS THAN ({to_days(today)}), {ahead}, "
                f"PARTITION p_future VALUES LESS THAN MAXVALUE)"
            )


def unpartition(apps, schema_editor):
    db = schema_editor.connection
    if db.vendor != "mysql":
        return
    with db.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"ALTER TABLE {table} REMOVE PARTITIONING")
            cursor.execute(f"ALTER TABLE {table} DROP PRIMARY KEY, ADD PRIMARY KEY (id)")


class Migration(migrations.Migration):
    dependencies = [("metrics_app", "0002_rollups_and_summaries")]

    operations = [migrations.RunPython(partition, unpartition)]
