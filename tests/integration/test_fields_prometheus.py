"""GET /metrics watches the data (contract section 13): each field's filled and valid shares
over the alert window, and navigations per HTTP status as a counter that survives the hours'
retention; a key limited to sources sees only theirs."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from metrics_app.models import ApiKey, Scope, StatusDay, StatusHour
from metrics_app.records import now_ms
from tests.support.asgi import AsgiClient
from tests.support.db import store
from tests.support.records import navigation, scrape

pytestmark = pytest.mark.django_db(transaction=True)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
DATA_FAMILIES = ("wealthmetrics_field_filled_ratio", "wealthmetrics_field_valid_ratio",
                 "wealthmetrics_http_responses_total")  # fmt: skip


def exposition(asgi: AsgiClient, key: str) -> Samples:
    answer = asgi.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.content
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.content.decode())
        for sample in family.samples
        if sample.name in DATA_FAMILIES
    }


def sample(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def fields(**counts: tuple[int, int]) -> dict[str, Any]:
    return {name: {"filled": filled, "invalid": invalid} for name, (filled, invalid) in counts.items()}


@pytest.fixture
def data() -> None:
    now = now_ms()
    store(
        scrape(scraperSource="cnbc", recordedAt=now - 30_000, itemsExtracted=100,
               fields=fields(price=(12, 2), name=(100, 0))),
        scrape(scraperSource="cnbc", recordedAt=now - 40_000, itemsExtracted=100, fields=fields(price=(8, 0))),
        # before the window: its full prices must not lift the share
        scrape(scraperSource="cnbc", recordedAt=now - 20 * 60_000, itemsExtracted=100, fields=fields(price=(100, 0))),
        scrape(scraperSource="yahoo", recordedAt=now - 10_000, itemsExtracted=10, fields=fields(price=(0, 0))),
        *[navigation(scraperSource="cnbc", httpStatus=200) for _ in range(3)],
        *[navigation(scraperSource="cnbc", httpStatus=429) for _ in range(2)],
        navigation(scraperSource="yahoo", httpStatus=503),
        navigation(scraperSource="yahoo"),  # no status: not counted
    )  # fmt: skip
    # Days past retention: a day summarised long ago whose hours are gone, and a day whose
    # first hours were trimmed already (its summary holds more than its hours left).
    old = timezone.localtime() - timedelta(days=30)
    StatusDay.objects.create(scraper_source="cnbc", metric_date=old.date(), http_status=200, navigations=50)
    trimmed = (timezone.localtime() - timedelta(days=10)).replace(hour=12, minute=0, second=0, microsecond=0)
    StatusHour.objects.create(scraper_source="cnbc", hour=trimmed, http_status=429, navigations=4)
    StatusDay.objects.create(
        scraper_source="cnbc", metric_date=trimmed.date(), http_status=429, navigations=9
    )


def test_field_shares_are_those_of_the_alert_window(asgi: AsgiClient, data: None, settings: Any) -> None:
    settings.METRICS_ALERT_WINDOW_S = 300
    _, key = ApiKey.issue("prometheus")
    found = exposition(asgi, key)
    filled, valid = "wealthmetrics_field_filled_ratio", "wealthmetrics_field_valid_ratio"
    assert found[sample(filled, source="cnbc", field="price")] == pytest.approx(20 / 200)
    assert found[sample(valid, source="cnbc", field="price")] == pytest.approx(18 / 20)
    assert found[sample(filled, source="cnbc", field="name")] == 1.0
    assert found[sample(valid, source="cnbc", field="name")] == 1.0
    assert found[sample(filled, source="yahoo", field="price")] == 0.0
    assert sample(valid, source="yahoo", field="price") not in found  # nothing filled to check


def test_http_responses_count_every_navigation_ever(asgi: AsgiClient, data: None) -> None:
    _, key = ApiKey.issue("prometheus")
    found = exposition(asgi, key)
    responses = {
        labels: n for (name, labels), n in found.items() if name == "wealthmetrics_http_responses_total"
    }
    assert responses == {
        (("code", "200"), ("source", "cnbc")): 53,  # 50 summarised a month ago, 3 now
        (("code", "429"), ("source", "cnbc")): 11,  # 9 summarised (4 left in hours), 2 now
        (("code", "503"), ("source", "yahoo")): 1,
    }


def test_a_limited_key_sees_only_its_sources(asgi: AsgiClient, data: None) -> None:
    _, key = ApiKey.issue("yahoo only", Scope.READ, ("yahoo",))
    sources = {dict(labels)["source"] for _, labels in exposition(asgi, key)}
    assert sources == {"yahoo"}
