"""POST /api/metrics/ (docs/api.md): stored on 202, nothing stored on any 4xx, never a 5xx."""

from typing import Any
from unittest.mock import ANY

import orjson
import pytest
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics_app.dialect import insert_sql
from metrics_app.ingest.rows import PAGE_COLUMNS
from metrics_app.models import ApiKey, HourlyRollup, PagePerformance, SchedulerMetric
from metrics_app.records import now_ms
from tests.support.asgi import AsgiClient
from tests.support.db import stored
from tests.support.records import navigation, scheduler_run, scrape
from tests.support.strategies import json_values
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def post(asgi: AsgiClient, body: Any, key: str | None, **headers: str) -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return asgi.post("/api/metrics/", data=data, content_type="application/json", headers=headers)


def test_stores_a_batch_and_answers_202(asgi: AsgiClient, api_key: str) -> None:
    response = post(asgi, {"metrics": [navigation(), scrape(), scheduler_run()]}, api_key)
    assert response.status_code == 202
    assert response.json() == {"accepted": 3}
    assert PagePerformance.objects.count() == 2
    assert SchedulerMetric.objects.count() == 1


def test_stored_rows_hold_every_field(asgi: AsgiClient, api_key: str) -> None:
    nav = navigation(success=False, error="timeout after 30000 ms", recordedAt=1_795_000_000_123)
    run = scheduler_run(scraperSource="cnbc")
    post(asgi, {"metrics": [nav, scrape(), run]}, api_key)
    row = PagePerformance.objects.get(metric_type="page_navigation")
    assert (row.scraper_source, row.page_url, row.navigation_duration_ms, row.retry_count) == (
        "robinhood",
        nav["url"],
        420,
        1,
    )
    assert (row.success, row.error, row.scrape_duration_ms) == (False, "timeout after 30000 ms", None)
    assert int(row.created_at.timestamp() * 1000) == 1_795_000_000_123
    scraped = PagePerformance.objects.get(metric_type="page_scrape")
    assert (scraped.items_extracted, scraped.data_size, scraped.navigation_duration_ms) == (25, 48_000, None)
    assert SchedulerMetric.objects.get().scraper_source == "cnbc"


def test_accepts_1000_records(asgi: AsgiClient, api_key: str) -> None:
    response = post(asgi, {"metrics": [navigation(url=f"https://x/{i}") for i in range(1000)]}, api_key)
    assert response.status_code == 202
    assert stored() == 1000


def test_invalid_record_rejects_the_whole_batch(asgi: AsgiClient, api_key: str) -> None:
    body = {"metrics": [navigation(), scrape(), navigation(navigationDurationMs=-1)]}
    response = post(asgi, body, api_key)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_metrics"
    assert response.json()["details"] == [
        {"index": 2, "field": "navigationDurationMs", "message": "Expected `int` >= 0"}
    ]
    assert stored() == 0


def test_rejects_an_empty_batch(asgi: AsgiClient, api_key: str) -> None:
    response = post(asgi, {"metrics": []}, api_key)
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "metrics"


def test_more_than_1000_records_is_413(asgi: AsgiClient, api_key: str) -> None:
    response = post(asgi, {"metrics": [navigation()] * 1001}, api_key)
    assert response.status_code == 413
    assert stored() == 0


def test_body_over_the_limit_is_413(asgi: AsgiClient, api_key: str, settings: Any) -> None:
    settings.METRICS_MAX_BODY_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = post(asgi, {"metrics": [navigation(url="x" * 400)] * 40}, api_key)
    assert response.status_code == 413
    assert "limit" in response.json()["message"]
    assert stored() == 0


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer wm_wrong", "Basic dXNlcjpwYXNz", "wm_x"]
)
def test_without_a_valid_key_is_401(asgi: AsgiClient, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = post(asgi, {"metrics": [navigation()]}, None, **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert stored() == 0


def test_revoked_key_is_401(asgi: AsgiClient) -> None:
    api_key, key = ApiKey.issue("old")
    api_key.revoke()
    assert post(asgi, {"metrics": [navigation()]}, key).status_code == 401


def test_logged_in_session_alone_cannot_ingest(asgi: AsgiClient, django_user_model: Any) -> None:
    asgi.force_login(django_user_model.objects.create_user("amy", password="pw-123456!"))
    assert post(asgi, {"metrics": [navigation()]}, None).status_code == 401


def test_key_is_checked_before_the_body_is_read(asgi: AsgiClient) -> None:
    assert post(asgi, b"{broken", "wm_wrong").status_code == 401


def test_get_is_405(asgi: AsgiClient, api_key: str) -> None:
    response = asgi.get("/api/metrics/", headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 405
    assert response["Allow"] == "POST"


@pytest.mark.django_db(transaction=True)
def test_marks_key_last_used_without_holding_up_the_request(asgi: AsgiClient, committed_api_key: str) -> None:
    post(asgi, {"metrics": [navigation()]}, committed_api_key)
    assert wait_for(lambda: ApiKey.objects.get().last_used_at is not None, 5)  # on a thread of its own


record_keys = st.sampled_from(
    [
        "type",
        "scraperSource",
        "url",
        "navigationDurationMs",
        "retryCount",
        "scrapeDurationMs",
        "itemsExtracted",
        "dataSize",
        "schedulerName",
        "executionDurationMs",
        "itemsProcessed",
        "success",
        "error",
        "recordedAt",
        "extra",
    ]
)
mutated_records = st.builds(
    lambda base, changes: {**base, **changes},
    st.sampled_from([navigation(), scrape(), scheduler_run()]),
    st.dictionaries(record_keys, json_values, max_size=3),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=64),
        json_values.map(orjson.dumps),
        st.lists(mutated_records, max_size=5).map(lambda m: orjson.dumps({"metrics": m})),
    )
)
def test_never_answers_5xx(asgi: AsgiClient, api_key: str, body: bytes) -> None:
    before = stored()
    response = post(asgi, body, api_key)
    assert response.status_code in {202, 400, 413}, response.content
    if response.status_code == 202:
        assert stored() == before + response.json()["accepted"]
    else:
        assert stored() == before
        assert response.json()["message"]


def test_huge_numbers_are_400_not_500(asgi: AsgiClient, api_key: str) -> None:
    body = (
        b'{"metrics":[{"type":"page_scrape","scraperSource":"x","url":"u","scrapeDurationMs":1,'
        b'"itemsExtracted":1,"dataSize":100000000000000000000000000000}]}'
    )
    response = post(asgi, body, api_key)
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "dataSize"


def test_no_valid_record_can_make_a_later_batch_fail(asgi: AsgiClient, api_key: str) -> None:
    """Every value at its maximum, many times over, into one hour and duration bucket: the
    rollup sums hold, and a later mixed batch for the same hour is stored."""
    hour = now_ms() // 3_600_000 * 3_600_000
    for poison, field in [(scrape(dataSize=2**62, recordedAt=hour), "dataSize"),
                          (scrape(recordedAt=4_000_000_000_000), "recordedAt")]:  # fmt: skip
        response = post(asgi, {"metrics": [poison, scrape()]}, api_key)
        assert response.status_code == 400
        assert response.json()["details"] == [{"index": 0, "field": field, "message": ANY}]
    biggest = scrape(scraperSource="poison", scrapeDurationMs=2**31 - 1, itemsExtracted=2**31 - 1,
                     dataSize=2**30, recordedAt=hour)  # fmt: skip
    for _ in range(5):
        assert post(asgi, orjson.dumps({"metrics": [biggest] * 1000}), api_key).status_code == 202
    mixed = [biggest] + [scrape(scraperSource="bystander", recordedAt=hour)] * 999
    assert post(asgi, orjson.dumps({"metrics": mixed}), api_key).status_code == 202
    assert HourlyRollup.objects.filter(scraper_source="poison").aggregate(Sum("bytes_sum"))[
        "bytes_sum__sum"
    ] == (5001 * 2**30)


@pytest.mark.parametrize(
    "body", [b'{"metrics": ' + b"[" * 5000 + b"]" * 5000 + b"}", b'{"a":' * 50_000 + b"1" + b"}" * 50_000]
)
def test_deep_nesting_is_a_400_naming_the_body(asgi: AsgiClient, api_key: str, body: bytes) -> None:
    response = post(asgi, body, api_key)
    assert response.status_code == 400
    assert response.json()["details"] == [
        {"index": None, "field": "body", "message": "JSON nested too deeply"}
    ]


def test_the_endpoint_answers_without_its_trailing_slash(asgi: AsgiClient, api_key: str) -> None:
    response = asgi.post("/api/metrics", data=orjson.dumps({"metrics": [navigation()]}),
                           content_type="application/json", headers={"Authorization": f"Bearer {api_key}"})  # fmt: skip
    assert response.status_code == 202
    assert stored() == 1


def test_the_insert_statements_kept_are_bounded() -> None:
    for rows in range(1, 300):
        insert_sql("scraper_page_performance", PAGE_COLUMNS, rows)
    assert insert_sql.cache_info().currsize <= 64
