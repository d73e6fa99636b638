"""An alert shows its current numbers while it resolves: the rule that measured it, to measure
again, and the numbers of each transition kept on its events."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("metrics_app", "0012_resync_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="alert",
            name="measure",
            field=models.CharField(
                blank=True,
                default="",
                help_text="The rule that measured it (verdicts.py), measured again while it resolves.",
                max_length=40,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="alertevent",
            name="value",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="alertevent",
            name="threshold",
            field=models.FloatField(blank=True, null=True),
        ),
    ]
