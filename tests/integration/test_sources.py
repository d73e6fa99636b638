"""A bound on the names records are sent under (issue 22): an ingest key cannot mint sources
without end, and names with nothing left in the retention window are forgotten."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from metrics_app import retention
from metrics_app.models import ApiKey, PagePerformance, SchedulerMetric, Source
from tests.support.asgi import AsgiClient
from tests.support.db import store
from tests.support.records import navigation, scheduler_run
from tests.support.ws import unique_source

pytestmark = pytest.mark.django_db(transaction=True)


def post(asgi: AsgiClient, key: str, records: list[dict[str, Any]]) -> Any:
    return asgi.post("/api/metrics/", {"metrics": records}, headers={"Authorization": f"Bearer {key}"})


def test_a_record_that_would_pass_the_bound_is_refused_naming_it(asgi: AsgiClient, settings: Any) -> None:
    settings.METRICS_MAX_SOURCES = 3
    key = ApiKey.issue("fleet")[1]
    known = [unique_source() for _ in range(3)]
    assert post(asgi, key, [navigation(scraperSource=name) for name in known]).status_code == 202
    newcomer = unique_source()
    refused = post(asgi, key, [navigation(scraperSource=known[0]), navigation(scraperSource=newcomer)])
    assert refused.status_code == 422
    answer = refused.json()
    assert answer["error"] == "too_many_sources"
    assert newcomer in answer["message"] and "METRICS_MAX_SOURCES is 3" in answer["message"]
    assert answer["details"] == [
        {"index": 1, "field": "scraperSource", "message": f"{newcomer!r} is not a known name"}
    ]
    assert PagePerformance.objects.count() == 3  # nothing of the refused batch
    assert (
        post(asgi, key, [navigation(scraperSource=name) for name in known]).status_code == 202
    )  # known: fine
    assert Source.objects.count() == 3


def test_a_schedulers_name_counts_too(asgi: AsgiClient, settings: Any) -> None:
    settings.METRICS_MAX_SOURCES = 1
    key = ApiKey.issue("fleet")[1]
    source = unique_source()
    assert post(asgi, key, [navigation(scraperSource=source)]).status_code == 202
    run = scheduler_run(schedulerName=unique_source(), scraperSource=source)
    refused = post(asgi, key, [run])
    assert refused.status_code == 422 and refused.json()["details"][0]["field"] == "schedulerName"
    assert not SchedulerMetric.objects.exists()


def test_a_key_adds_new_names_at_a_bounded_rate(asgi: AsgiClient, settings: Any) -> None:
    settings.METRICS_NEW_SOURCES_PER_KEY = 2
    key, other = ApiKey.issue("typo-prone")[1], ApiKey.issue("careful")[1]
    three = [navigation(scraperSource=unique_source()) for _ in range(3)]
    refused = post(asgi, key, three)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert refused.json()["error"] == "new_sources_rate_limited"
    assert post(asgi, key, three[:2]).status_code == 202
    assert post(asgi, key, [navigation(scraperSource=unique_source())]).status_code == 429
    assert post(asgi, other, [navigation(scraperSource=unique_source())]).status_code == 202  # per key


def test_names_with_nothing_left_in_the_window_are_forgotten_and_come_back() -> None:
    now = timezone.now()
    old, recent = unique_source(), unique_source()
    store(navigation(scraperSource=old, recordedAt=int((now - timedelta(days=30)).timestamp() * 1000)))
    store(navigation(scraperSource=recent))
    assert set(Source.objects.values_list("name", flat=True)) >= {old, recent}
    report = retention.cleanup(7)
    assert report.names_forgotten >= 1
    names = set(Source.objects.values_list("name", flat=True))
    assert recent in names and old not in names
