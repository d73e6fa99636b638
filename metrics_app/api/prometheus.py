"""GET /metrics: the Prometheus exposition, the same whichever process answers.

Nothing here is a per-process counter. Records, items and durations are sums over the hourly
rollups (kept forever, so the counters only grow); last-record times come from the minute
rollups; firing alerts from the alerts table; WebSocket clients from every live process's
report (metrics_app.stream.bus). The duration histogram folds the rollups' 1.2x buckets into
the usual Prometheus edges (LE_SECONDS): a rollup bucket counts under the first edge at or
above its upper bound, so a count may sit one edge high, never low.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Final

from django.conf import settings
from django.db.models import Count, Sum
from django.utils import timezone
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from metrics_app import histogram
from metrics_app.alerts import signals
from metrics_app.alerts.models import Alert, visible_to
from metrics_app.history import entities, fields
from metrics_app.models import HourlyRollup
from metrics_app.records import epoch_ms
from metrics_app.stream.bus import get_bus

LE_SECONDS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Cluster(Collector):
    """The cluster's figures, read once (`read`): prometheus_client writes the families, but for
    the duration histogram, whose text is written here (`histogram_text`): fourteen lines per
    source and type, at 10,000 sources 140,000 of them, took prometheus_client 1.5 s to build
    and format, and this writer a tenth of that. Label values are source names and types,
    which hold nothing a label needs escaped (metrics_app.records)."""

    def __init__(self, sources: frozenset[str] | None = None) -> None:
        self.sources = sources  # what a key limited to sources may see; None: everything
        self.durations: dict[tuple[str, str], tuple[list[int], float]] = {}
        self.totals: dict[tuple[str, str], list[int]] = {}  # (source, type) → [records, successes]
        self.item_sums: dict[str, int] = {}
        self.field_shares: list[tuple[str, str, float | None, float | None]] = []
        self.responses: dict[tuple[str, int], int] = {}
        self.stale: dict[str, int] = {}

    def read(self) -> None:
        rollups = HourlyRollup.objects.order_by()
        if self.sources is not None:
            rollups = rollups.filter(scraper_source__in=self.sources)
        for source, kind, bucket, n, ok, total, found in rollups.values_list(
            "scraper_source", "metric_type", "duration_bucket"
        ).annotate(Sum("records"), Sum("successes"), Sum("duration_sum"), Sum("items_sum")):
            summed = self.totals.setdefault((source, kind), [0, 0])
            summed[0] += n
            summed[1] += ok
            counts, seconds = self.durations.get((source, kind), ([0] * (len(LE_SECONDS) + 1), 0.0))
            counts[_edge(bucket)] += n
            self.durations[(source, kind)] = (counts, seconds + total / 1000)
            self.item_sums[source] = self.item_sums.get(source, 0) + found
        now = timezone.now()
        window = timedelta(seconds=settings.METRICS_ALERT_WINDOW_S)
        # the alert evaluator's window (whole minutes from the minute rollups), so a gauge
        # reads what field_broken judged
        self.field_shares = fields.window_ratios(now - window, now + timedelta(microseconds=1), self.sources)
        self.responses = fields.responses_ever(self.sources)
        self.stale = entities.stale_now(epoch_ms(now), self.sources)

    def collect(self) -> Iterator[Any]:
        records = CounterMetricFamily(
            "wealthmetrics_records", "Stored records.", labels=["source", "type", "success"]
        )
        for (source, kind), (n, ok) in sorted(self.totals.items()):
            records.add_metric([source, kind, "true"], ok)
            records.add_metric([source, kind, "false"], n - ok)
        yield records
        items = CounterMetricFamily("wealthmetrics_items", "Items extracted (scrapes) and processed (runs).",
                                    labels=["source"])  # fmt: skip
        for source, found in sorted(self.item_sums.items()):
            items.add_metric([source], found)
        yield items
        last = GaugeMetricFamily(
            "wealthmetrics_last_record_timestamp_seconds",
            "When a source's newest record was made.",
            labels=["source"],
        )
        newest = signals.newest_minutes(timezone.now() + timedelta(minutes=1))
        for source, at in sorted(signals.last_records(newest).items()):
            if self.sources is None or source in self.sources:
                last.add_metric([source], at / 1000)
        yield last
        firing = GaugeMetricFamily(
            "wealthmetrics_alerts_firing", "Alerts firing now.", labels=["verdict", "source"]
        )
        for verdict, named, n in _firing(self.sources):
            firing.add_metric([verdict, named or ""], n)
        yield firing
        yield from self._data_families()
        yield GaugeMetricFamily("wealthmetrics_websocket_clients", "Open WebSocket clients, every process.",
                                value=get_bus().clients())  # fmt: skip

    def _data_families(self) -> Iterator[Any]:
        """What the data holds: each field's shares over the alert window (a share with
        nothing to divide is left out, not 0), and navigations per HTTP status ever."""
        filled = GaugeMetricFamily("wealthmetrics_field_filled_ratio",
                                   "Share of a field's items that had it filled, over the alert window.",
                                   labels=["source", "field"])  # fmt: skip
        valid = GaugeMetricFamily("wealthmetrics_field_valid_ratio",
                                  "Share of filled items that passed its check, in the alert window.",
                                  labels=["source", "field"])  # fmt: skip
        for source, name, filled_share, valid_share in self.field_shares:
            if filled_share is not None:
                filled.add_metric([source, name], filled_share)
            if valid_share is not None:
                valid.add_metric([source, name], valid_share)
        yield filled
        yield valid
        responses = CounterMetricFamily("wealthmetrics_http_responses", "Navigations per final HTTP status.",
                                        labels=["source", "code"])  # fmt: skip
        for (source, code), n in sorted(self.responses.items()):
            responses.add_metric([source, str(code)], n)
        yield responses
        stale = GaugeMetricFamily("wealthmetrics_entities_stale", "Stale entities per source.",
                                  labels=["source"])  # fmt: skip
        for source, n in sorted(self.stale.items()):
            stale.add_metric([source], n)
        yield stale

    def histogram_text(self) -> bytes:
        """wealthmetrics_duration_seconds, in the text exposition format."""
        name = "wealthmetrics_duration_seconds"
        lines = [f"# HELP {name} Record durations.", f"# TYPE {name} histogram"]
        edges = [*map(str, LE_SECONDS), "+Inf"]
        for (source, kind), (counts, seconds) in sorted(self.durations.items()):
            labels = f'source="{source}",type="{kind}"'
            cumulative = 0
            for edge, n in zip(edges, counts, strict=True):
                cumulative += n
                lines.append(f'{name}_bucket{{{labels},le="{edge}"}} {cumulative}.0')
            lines.append(f"{name}_count{{{labels}}} {cumulative}.0")
            lines.append(f"{name}_sum{{{labels}}} {seconds!r}")
        return ("\n".join(lines) + "\n").encode()


def exposition(sources: frozenset[str] | None = None) -> bytes:
    """GET /metrics: every family, cut to `sources` when the caller is limited to some."""
    cluster = Cluster(sources)
    cluster.read()
    found = CollectorRegistry(auto_describe=False)
    found.register(cluster)
    return generate_latest(found) + cluster.histogram_text()


def _edge(bucket: int) -> int:
    """The first LE_SECONDS edge at or above a rollup bucket's upper bound (or +Inf)."""
    upper = histogram.upper_bound(bucket) / 1000
    return next((n for n, edge in enumerate(LE_SECONDS) if upper <= edge), len(LE_SECONDS))


def _firing(sources: frozenset[str] | None) -> list[tuple[str, str | None, int]]:
    firing = Alert.objects.filter(state=Alert.State.FIRING)
    if sources is not None:
        firing = firing.filter(visible_to(sources))
    return list(
        firing.values_list("verdict", "scraper_source")
        .annotate(n=Count("id"))
        .order_by("verdict", "scraper_source")
    )
