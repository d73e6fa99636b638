"""The in-process collector (docs/integration.md): validation, write-behind by count and interval,
bounded queues, flush at exit and at server shutdown."""

import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import pytest

from metrics_app.collector import MetricsCollector
from metrics_app.models import PagePerformance, SchedulerMetric
from metrics_app.records import InvalidMetrics
from tests.support.db import stored
from tests.support.servers import ROOT, DaphneServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def record_navigations(collector: MetricsCollector, count: int) -> None:
    for i in range(count):
        collector.record_page_navigation(
            scraper_source="webull", url=f"https://w/{i}", navigation_duration_ms=i
        )


def test_validates_at_the_call(make_collector: Callable[..., MetricsCollector]) -> None:
    collector = make_collector()
    with pytest.raises(InvalidMetrics, match="scraperSource"):
        collector.record_page_navigation(scraper_source="Bad Name", url="u", navigation_duration_ms=1)
    with pytest.raises(InvalidMetrics, match="navigationDurationMs"):
        collector.record_page_navigation(scraper_source="ok", url="u", navigation_duration_ms=-1)
    assert collector.stats()["pending"] == 0


def test_99_records_wait_for_the_interval(make_collector: Callable[..., MetricsCollector]) -> None:
    collector = make_collector(batch_size=100, interval_ms=1500)
    record_navigations(collector, 99)
    time.sleep(0.5)
    assert stored() == 0
    assert collector.stats()["pending"] == 99
    assert wait_for(lambda: stored() == 99, timeout=3)


def test_100_records_flush_at_once(make_collector: Callable[..., MetricsCollector]) -> None:
    collector = make_collector(batch_size=100, interval_ms=60_000)
    record_navigations(collector, 100)
    assert wait_for(lambda: stored() == 100, timeout=3)
    assert collector.stats()["flushed"] == 100


def test_101st_record_waits_for_the_next_flush(make_collector: Callable[..., MetricsCollector]) -> None:
    collector = make_collector(batch_size=100, interval_ms=1500)
    record_navigations(collector, 100)
    assert wait_for(lambda: stored() == 100, timeout=1)
    record_navigations(collector, 1)
    time.sleep(0.3)
    assert stored() == 100
    assert wait_for(lambda: stored() == 101, timeout=3)


def test_every_record_type_is_stored(make_collector: Callable[..., MetricsCollector]) -> None:
    collector = make_collector(batch_size=1000, interval_ms=60_000)
    collector.record_page_navigation(scraper_source="cnbc", url="u", navigation_duration_ms=10, retry_count=2)
    collector.record_page_scrape(
        scraper_source="cnbc", url="u", scrape_duration_ms=5, items_extracted=3, data_size=9
    )
    collector.record_scheduler_metric(scheduler_name="hourly", execution_duration_ms=50, items_processed=4)
    assert collector.flush() == 3
    assert PagePerformance.objects.get(metric_type="page_navigation").retry_count == 2
    assert PagePerformance.objects.get(metric_type="page_scrape").data_size == 9
    assert SchedulerMetric.objects.get().items_processed == 4


def test_full_queue_drops_the_oldest_and_counts_them(make_collector: Callable[..., MetricsCollector]) -> None:
    collector = make_collector(batch_size=1000, interval_ms=60_000, max_queue=5)
    record_navigations(collector, 8)
    stats = collector.stats()
    assert (stats["dropped"], stats["queued"]["page_navigation"]) == (3, 5)
    collector.flush()
    durations = PagePerformance.objects.values_list("navigation_duration_ms", flat=True)
    assert sorted(d or 0 for d in durations) == [3, 4, 5, 6, 7]


def test_queued_records_are_stored_at_normal_exit(live_server_env: dict[str, str]) -> None:
    script = (
        "import django; django.setup()\n"
        "from metrics_app.collector import collector\n"
        "for i in range(5):\n"
        "    collector.record_page_scrape(\n"
        "        scraper_source='exit-test', url='u', scrape_duration_ms=i, items_extracted=1)\n"
    )
    env = {
        **live_server_env,
        "DJANGO_SETTINGS_MODULE": "wealthmetrics.settings",
        "METRICS_FLUSH_INTERVAL_MS": "600000",
    }
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=60)
    assert PagePerformance.objects.filter(scraper_source="exit-test").count() == 5


def test_queued_records_are_stored_when_daphne_shuts_down(live_server_env: dict[str, str]) -> None:
    env = {**live_server_env, "METRICS_FLUSH_INTERVAL_MS": "600000", "METRICS_FLUSH_BATCH_SIZE": "1000"}
    server = DaphneServer(env, application="tests.support.collector_asgi:application")
    server.start()
    try:
        for _ in range(4):
            assert httpx.get(f"{server.url}/test/record/").text == "queued"
        assert PagePerformance.objects.filter(scraper_source="shutdown-test").count() == 0
    finally:
        server.stop()
    assert PagePerformance.objects.filter(scraper_source="shutdown-test").count() == 4, server.log()
