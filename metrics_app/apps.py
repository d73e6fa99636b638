import atexit

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_save


class MetricsAppConfig(AppConfig):
    name = "metrics_app"
    verbose_name = "Scraper metrics"

    def ready(self) -> None:
        """What a process using the app does once, at start, rather than on import."""
        from metrics_app import db
        from metrics_app.admission.keys import keys
        from metrics_app.ingest.collector import collector
        from metrics_app.models import ApiKey
        from wealthmetrics_client import tracking

        # the collector's queue is stored when the process exits (daphne's SIGTERM included)
        atexit.register(collector.close)
        # scrapers in this process record through the collector unless configured otherwise
        tracking.set_fallback_sink(collector)
        # a key issued or revoked here counts here at once (the cache reloads for the others)
        post_save.connect(keys.saved, sender=ApiKey, dispatch_uid="metrics_app.api_key_cache")
        # no statement outlives its caller's timeout on the server either
        connection_created.connect(db.limit_statements, dispatch_uid="metrics_app.statement_time")
