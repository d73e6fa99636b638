"""The in-process API's import path (docs/integration.md): `from metrics_app.collector import
collector`. The collector is part of ingest and lives in metrics_app.ingest.collector."""

from metrics_app.ingest.collector import MetricsCollector, collector

__all__ = ["MetricsCollector", "collector"]
