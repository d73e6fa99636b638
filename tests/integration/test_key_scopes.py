"""Key scopes (contract section 3): a key may ingest, read, or both, and may be limited to
some sources; a scraper's key cannot read the fleet or write as another source."""

import asyncio
from io import StringIO
from typing import Any

import orjson
import pytest
from django.core.management import call_command
from websockets.exceptions import InvalidStatus

from metrics_app.models import ApiKey, PagePerformance, Scope
from tests.support.asgi import AsgiClient
from tests.support.records import navigation
from tests.support.servers import DaphneServer
from tests.support.ws import next_of, open_socket, send

pytestmark = pytest.mark.django_db(transaction=True)


def create(*options: str) -> str:
    out = StringIO()
    call_command("create_api_key", "scoped scraper", *options, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def post(asgi: AsgiClient, key: str, *sources: str) -> Any:
    body = orjson.dumps({"metrics": [navigation(scraperSource=source) for source in sources]})
    return asgi.post("/api/metrics/", data=body, content_type="application/json",
                       headers={"Authorization": f"Bearer {key}"})  # fmt: skip


def read(asgi: AsgiClient, key: str, **params: str) -> Any:
    return asgi.get("/api/metrics/recent/", params, headers={"Authorization": f"Bearer {key}"})


def test_create_api_key_sets_scope_and_sources() -> None:
    create("--scope", "ingest", "--sources", "robinhood,cnbc")
    api_key = ApiKey.objects.get()
    assert (api_key.scope, api_key.source_list) == (Scope.INGEST, frozenset({"robinhood", "cnbc"}))
    with pytest.raises(Exception, match="not a source name"):
        create("--sources", "Not A Source")


def test_an_ingest_key_writes_but_reads_nothing(asgi: AsgiClient, daphne: DaphneServer) -> None:
    key = create("--scope", "ingest")
    assert post(asgi, key, "ingest-only").status_code == 202
    refused = read(asgi, key)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"

    async def handshake() -> int:
        try:
            await open_socket(daphne, key=key)
        except InvalidStatus as exc:
            return int(exc.response.status_code)
        return 101

    assert asyncio.run(handshake()) == 403


def test_a_read_key_stores_nothing(asgi: AsgiClient) -> None:
    key = create("--scope", "read")
    refused = post(asgi, key, "read-only")
    assert refused.status_code == 403
    assert not PagePerformance.objects.filter(scraper_source="read-only").exists()
    assert read(asgi, key).status_code == 200


def test_a_key_limited_to_sources_writes_and_reads_only_those(asgi: AsgiClient, daphne: DaphneServer) -> None:
    key = create("--sources", "robinhood")
    refused = post(asgi, key, "robinhood", "cnbc")
    assert refused.status_code == 403
    assert refused.json()["details"] == [
        {"index": 1, "field": "scraperSource", "message": "this key may not write 'cnbc'"}
    ]
    assert not PagePerformance.objects.exists()  # nothing of the refused batch
    assert post(asgi, key, "robinhood").status_code == 202
    assert read(asgi, key, source="robinhood").status_code == 200
    assert read(asgi, key, source="cnbc").status_code == 403
    assert read(asgi, key).status_code == 403  # every source includes the others

    async def subscriptions() -> tuple[dict[str, Any], dict[str, Any]]:
        async with await open_socket(daphne, key=key) as ws:
            await send(ws, {"type": "subscribe", "scraperSource": "*"})
            forbidden = await next_of(ws, "error")
            await send(ws, {"type": "subscribe", "scraperSource": "robinhood"})
            return forbidden, await next_of(ws, "subscribed")

    forbidden, subscribed = asyncio.run(subscriptions())
    assert forbidden["code"] == "forbidden"
    assert subscribed["subscriptions"] == ["robinhood"]


def test_existing_keys_keep_every_right(asgi: AsgiClient, committed_api_key: str) -> None:
    assert ApiKey.objects.get().scope == Scope.ALL
    assert post(asgi, committed_api_key, "any-source").status_code == 202
    assert read(asgi, committed_api_key).status_code == 200


def test_per_key_rate_limits_answer_429_with_retry_after(asgi: AsgiClient, settings: Any) -> None:
    settings.METRICS_KEY_RATE_LIMIT, settings.METRICS_KEY_RATE_BURST = 1, 2
    key, other = create(), create()
    answers = [post(asgi, key, "limited").status_code for _ in range(3)]
    assert answers == [202, 202, 429]  # a burst of 2, then one a second
    limited = post(asgi, key, "limited")
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    assert limited.json()["error"] == "rate_limited"
    assert read(asgi, key).status_code == 429  # reads count too
    assert post(asgi, other, "limited").status_code == 202  # per key
    assert PagePerformance.objects.filter(scraper_source="limited").count() == 3
