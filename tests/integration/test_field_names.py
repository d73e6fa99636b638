"""A bound on the field names one source reports (issue 24): a scraper that builds field names
from its data cannot mint rollup rows, grid rows and gauges without end."""

from typing import Any

import pytest

from metrics_app import counters
from metrics_app.admission.field_names import field_names
from metrics_app.models import ApiKey, FieldHour, PagePerformance
from tests.support.asgi import AsgiClient
from tests.support.records import scrape
from tests.support.ws import unique_source

pytestmark = pytest.mark.django_db(transaction=True)


def page(source: str, *names: str) -> dict[str, Any]:
    return scrape(
        scraperSource=source, itemsExtracted=4, fields={n: {"filled": 4, "invalid": 0} for n in names}
    )


def post(asgi: AsgiClient, key: str, records: list[dict[str, Any]]) -> Any:
    return asgi.post("/api/metrics/", {"metrics": records}, headers={"Authorization": f"Bearer {key}"})


def test_a_page_that_would_pass_a_sources_bound_is_refused_naming_the_field(
    asgi: AsgiClient, settings: Any
) -> None:
    settings.METRICS_MAX_FIELDS_PER_SOURCE = 3
    key = ApiKey.issue("fleet")[1]
    source, other = unique_source(), unique_source()
    assert post(asgi, key, [page(source, "price", "change"), page(source, "volume")]).status_code == 202
    refused_before = counters.snapshot().get("requests_too_many_fields", 0)

    refused = post(asgi, key, [page(source, "price"), page(other, "price_AAPL"), page(source, "price_MSFT")])

    assert refused.status_code == 422
    answer = refused.json()
    assert answer["error"] == "too_many_fields"
    assert "price_MSFT" in answer["message"] and "METRICS_MAX_FIELDS_PER_SOURCE is 3" in answer["message"]
    assert answer["details"] == [
        {"index": 2, "field": "fields.price_MSFT", "message": f"{source!r} has 3 fields already"}
    ]
    assert PagePerformance.objects.count() == 2  # nothing of the refused batch
    assert counters.snapshot()["requests_too_many_fields"] == refused_before + 1
    # its known fields, and another source's new ones, are still welcome
    assert post(asgi, key, [page(source, "price", "volume"), page(other, "price_AAPL")]).status_code == 202


def test_the_bound_counts_the_fields_held_not_only_those_this_process_saw(
    asgi: AsgiClient, settings: Any
) -> None:
    settings.METRICS_MAX_FIELDS_PER_SOURCE = 2
    key = ApiKey.issue("fleet")[1]
    source = unique_source()
    assert post(asgi, key, [page(source, "price", "change")]).status_code == 202
    field_names._seen.clear()  # as another process, or this one after FORGET_SEEN_S

    assert post(asgi, key, [page(source, "volume")]).status_code == 422
    assert post(asgi, key, [page(source, "change")]).status_code == 202
    assert set(FieldHour.objects.filter(scraper_source=source).values_list("field", flat=True)) == {
        "price",
        "change",
    }
