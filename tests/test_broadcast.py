"""Stored records are published once on the channel layer, whichever path stored them."""

import asyncio
from typing import Any

import orjson
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import Client

from metrics_app.broadcast import GROUP
from metrics_app.collector import MetricsCollector
from tests.support.records import navigation, scrape
from tests.support.servers import redis_available

pytestmark = pytest.mark.django_db


async def first_broadcast(trigger: Any) -> dict[str, Any]:
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    await layer.group_add(GROUP, channel)
    try:
        await sync_to_async(trigger)()
        message: dict[str, Any] = await asyncio.wait_for(layer.receive(channel), timeout=5)
        return message
    finally:
        await layer.group_discard(GROUP, channel)


def test_ingested_records_are_broadcast(client: Client, api_key: str) -> None:
    records = [navigation(), scrape()]

    def ingest() -> None:
        body = orjson.dumps({"metrics": records})
        response = client.post(
            "/api/metrics/",
            body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {api_key}"},
        )
        assert response.status_code == 202

    message = async_to_sync(first_broadcast)(ingest)
    assert message["metrics"] == records


def test_collected_records_are_broadcast() -> None:
    collector = MetricsCollector(batch_size=1000, interval_ms=60_000)

    def collect() -> None:
        collector.record_page_scrape(
            scraper_source="webull", url="u", scrape_duration_ms=3, items_extracted=2
        )
        collector.flush()

    message = async_to_sync(first_broadcast)(collect)
    assert [(m["scraperSource"], m["itemsExtracted"]) for m in message["metrics"]] == [("webull", 2)]
    collector.close()


@pytest.mark.redis
def test_with_redis_url_the_layer_is_redis() -> None:
    assert redis_available()
    assert "Redis" in settings.CHANNEL_LAYERS["default"]["BACKEND"]
