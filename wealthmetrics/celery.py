"""Celery app: `celery -A wealthmetrics worker` and `celery -A wealthmetrics beat`.

Settings come from Django's, prefixed CELERY_; the beat schedule lives in
django-celery-beat's tables so the admin shows and edits it.
"""

import os
import sys

from celery import Celery

from wealthmetrics.env import bad_settings_in_one_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wealthmetrics.settings")

app = Celery("wealthmetrics")
if "celery" in os.path.basename(sys.argv[0]):  # a worker or beat: fail at start, in one line
    from django.conf import settings

    with bad_settings_in_one_line():
        settings.INSTALLED_APPS  # noqa: B018 (loads the settings)

app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
