"""MySQL/MariaDB only: partition the detailed tables by UTC day, so retention drops a day's
partition instead of deleting its rows (metrics_app.retention). SQLite is left as it is.

The ALTER rebuilds each table; on a large existing table it takes a while.
"""

from datetime import UTC, datetime

from django.db import migrations


def partition(apps, schema_editor):
    from metrics_app import retention

    db = schema_editor.connection
    if db.vendor != "mysql":
        return
    today = datetime.now(UTC).date()
    with db.cursor() as cursor:
        for table in retention.DETAILED_TABLES:
            cursor.execute(retention.partitioning_sql(table, today))
    retention.add_partitions(db, today)


def unpartition(apps, schema_editor):
    from metrics_app import retention

    db = schema_editor.connection
    if db.vendor != "mysql":
        return
    with db.cursor() as cursor:
        for table in retention.DETAILED_TABLES:
            cursor.execute(f"ALTER TABLE {table} REMOVE PARTITIONING")
            cursor.execute(f"ALTER TABLE {table} DROP PRIMARY KEY, ADD PRIMARY KEY (id)")


class Migration(migrations.Migration):
    dependencies = [("metrics_app", "0002_rollups_and_summaries")]

    operations = [migrations.RunPython(partition, unpartition)]
