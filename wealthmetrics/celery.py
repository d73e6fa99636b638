"""Celery app: `celery -A wealthmetrics worker` and `celery -A wealthmetrics beat`.

Settings come from Django's, prefixed CELERY_; the beat schedule lives in
django-celery-beat's tables so the admin shows and edits it.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wealthmetrics.settings")

app = Celery("wealthmetrics")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
