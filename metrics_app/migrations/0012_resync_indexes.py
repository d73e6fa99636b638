"""Indexes for a resync: a channel's records after an id, in id order, read without the other
channels' rows (a resync from id 0 scanned the whole table)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("metrics_app", "0011_sources"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="pageperformance",
            index=models.Index(fields=["scraper_source", "id"], name="idx_page_source_id"),
        ),
        migrations.AddIndex(
            model_name="schedulermetric",
            index=models.Index(fields=["scraper_source", "id"], name="idx_sched_source_id"),
        ),
        migrations.AddIndex(
            model_name="schedulermetric",
            index=models.Index(fields=["scheduler_name", "id"], name="idx_sched_name_id"),
        ),
    ]
