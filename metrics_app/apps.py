from django.apps import AppConfig
from django.db.models.signals import post_save


class MetricsAppConfig(AppConfig):
    name = "metrics_app"
    verbose_name = "Scraper metrics"

    def ready(self) -> None:
        from metrics_app.auth import keys
        from metrics_app.models import ApiKey

        post_save.connect(keys.saved, sender=ApiKey, dispatch_uid="metrics_app.api_key_cache")
