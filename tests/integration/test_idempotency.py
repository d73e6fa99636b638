"""Idempotency-Key (docs/api.md): a batch sent again under its key is stored once, rollups
included, and answered with the first answer; the same key with another body is 409."""

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from django.db.models import Sum
from django.utils import timezone

from metrics_app import retention
from metrics_app.ingest.idempotency import Claim
from metrics_app.ingest.writer import GroupWriter
from metrics_app.models import ApiKey, HourlyRollup, IdempotencyKey, PagePerformance
from metrics_app.records import validate_records
from tests.support.asgi import AsgiClient
from tests.support.records import navigation
from tests.support.servers import DaphneServer
from tests.support.ws import unique_source

pytestmark = pytest.mark.django_db(transaction=True)


def post(asgi: AsgiClient, records: list[dict[str, Any]], key: str, idempotency_key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return asgi.post("/api/metrics/", data=orjson.dumps({"metrics": records}), content_type="application/json",
                       headers=headers)  # fmt: skip


def counted(source: str) -> int:
    """What the hourly rollups say was stored for a source."""
    return HourlyRollup.objects.filter(scraper_source=source).aggregate(n=Sum("records"))["n"] or 0


def test_a_batch_sent_again_is_answered_the_same_and_stored_once(
    asgi: AsgiClient, committed_api_key: str
) -> None:
    batch = [navigation(scraperSource="once", url=f"u{i}") for i in range(3)]
    first = post(asgi, batch, committed_api_key, "batch-1")
    again = post(asgi, batch, committed_api_key, "batch-1")
    assert (first.status_code, first.json()) == (202, {"accepted": 3})
    assert (again.status_code, again.json()) == (202, {"accepted": 3})
    assert PagePerformance.objects.filter(scraper_source="once").count() == 3
    assert counted("once") == 3  # rollups count the batch once


def test_the_same_key_with_another_body_is_409_and_stores_nothing(
    asgi: AsgiClient, committed_api_key: str
) -> None:
    assert post(asgi, [navigation(scraperSource="first")], committed_api_key, "k").status_code == 202
    reused = post(asgi, [navigation(scraperSource="second")], committed_api_key, "k")
    assert reused.status_code == 409
    assert reused.json()["error"] == "idempotency_key_reused"
    assert reused.json()["details"][0]["field"] == "Idempotency-Key"
    assert not PagePerformance.objects.filter(scraper_source="second").exists()


@pytest.mark.parametrize("value", ["x" * 101, "caf\u00e9", "tab\there"])
def test_a_malformed_key_is_400_naming_the_header(
    asgi: AsgiClient, committed_api_key: str, value: str
) -> None:
    headers = {"Authorization": f"Bearer {committed_api_key}", "Idempotency-Key": value}
    response = asgi.post("/api/metrics/", data=orjson.dumps({"metrics": [navigation(scraperSource="bad-key")]}),
                           content_type="application/json", headers=headers)  # fmt: skip
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "Idempotency-Key"
    assert not PagePerformance.objects.filter(scraper_source="bad-key").exists()


def test_keys_belong_to_their_api_key_and_last_24_hours(asgi: AsgiClient, committed_api_key: str) -> None:
    other = ApiKey.issue("another scraper")[1]
    assert post(asgi, [navigation(scraperSource="mine")], committed_api_key, "shared").status_code == 202
    assert post(asgi, [navigation(scraperSource="mine")], other, "shared").status_code == 202
    assert PagePerformance.objects.filter(scraper_source="mine").count() == 2  # two API keys, two batches

    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert post(asgi, [navigation(scraperSource="mine")], committed_api_key, "shared").status_code == 202
    assert PagePerformance.objects.filter(scraper_source="mine").count() == 3  # expired: a new batch
    assert retention.cleanup().idempotency_keys == 1  # the other key's, past its 24 h
    assert IdempotencyKey.objects.count() == 1


def test_a_key_repeated_within_one_group_is_stored_by_the_first(committed_api_key: str) -> None:
    api_key = ApiKey.objects.get()
    body = b"the same body"
    writer = GroupWriter(autostart=False)  # all three wait together, share one transaction
    records = validate_records([navigation(scraperSource="grouped")])
    futures = [writer.submit(records, Claim.of(api_key.pk, "same", body)) for _ in range(2)]
    futures.append(writer.submit(records, Claim.of(api_key.pk, "same", b"another body")))
    writer.start()
    first, second, third = (future.result(timeout=10) for future in futures)
    assert isinstance(first, list) and len(first) == 1
    assert (second.accepted, second.same_body) == (1, True)  # type: ignore[union-attr]
    assert third.same_body is False  # type: ignore[union-attr]
    assert PagePerformance.objects.filter(scraper_source="grouped").count() == 1


def test_concurrent_resends_on_a_live_server_store_once(daphne: DaphneServer, committed_api_key: str) -> None:
    source = unique_source()
    body = orjson.dumps({"metrics": [navigation(scraperSource=source, url=f"u{i}") for i in range(5)]})
    headers = {"Authorization": f"Bearer {committed_api_key}", "Idempotency-Key": f"{source}-batch"}

    async def resend() -> list[tuple[int, Any]]:
        async with httpx.AsyncClient(base_url=daphne.url, timeout=30) as client:
            answers = await asyncio.gather(
                *(client.post("/api/metrics/", content=body, headers=headers) for _ in range(8))
            )
            return [(answer.status_code, answer.json()) for answer in answers]

    assert asyncio.run(resend()) == [(202, {"accepted": 5})] * 8
    assert PagePerformance.objects.filter(scraper_source=source).count() == 5
    assert counted(source) == 5
