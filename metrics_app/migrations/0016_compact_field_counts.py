"""A page's stored field counts become `{"price": [filled, invalid]}` (records.fields_json),
half the bytes of the wire's objects: rows stored before are rewritten in that shape."""

from typing import Any

from django.db import migrations, models


def _rewrite(apps: Any, shape: type, convert: Any) -> None:
    """Rewrite every stored page whose counts are not yet of `shape`, with `convert`."""
    pages = apps.get_model("metrics_app", "PagePerformance")
    stored = pages.objects.filter(field_counts__isnull=False).order_by()
    for page in stored.only("id", "created_at", "field_counts").iterator(chunk_size=2000):
        counts = page.field_counts
        if not all(isinstance(count, shape) for count in counts.values()):
            rewritten = {name: convert(count) for name, count in counts.items()}
            pages.objects.filter(id=page.id, created_at=page.created_at).update(field_counts=rewritten)


def to_arrays(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, list, lambda count: [count["filled"], count["invalid"]])


def to_objects(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, dict, lambda count: {"filled": count[0], "invalid": count[1]})


class Migration(migrations.Migration):
    dependencies = [
        ("metrics_app", "0015_field_broken_verdict"),
    ]

    operations = [
        migrations.AlterField(
            model_name="pageperformance",
            name="field_counts",
            field=models.JSONField(
                blank=True, help_text='A scrape\'s fields: {"price": [filled, invalid], …}.', null=True
            ),
        ),
        migrations.RunPython(to_arrays, to_objects),
    ]
