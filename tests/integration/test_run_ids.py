"""`runId` on every record type (docs/api.md, "Runs"): validated, stored and indexed, read back
and streamed as sent; a record without it is stored and shown exactly as before."""

from typing import Any

import httpx
import orjson
import pytest

from metrics_app.models import PagePerformance, SchedulerMetric
from tests.support.asgi import AsgiClient
from tests.support.db import stored
from tests.support.records import navigation, scheduler_run, scrape
from tests.support.servers import DaphneServer
from tests.support.ws import unique_source

pytestmark = pytest.mark.django_db(transaction=True)


def post(asgi: AsgiClient, key: str, *metrics: dict[str, Any]) -> Any:
    return asgi.post("/api/metrics/", data=orjson.dumps({"metrics": list(metrics)}),
                     content_type="application/json", headers={"Authorization": f"Bearer {key}"})  # fmt: skip


@pytest.mark.parametrize(
    "run_id", ["", "-r1", "r 1", "r/1", "ünï", "r" * 65, "r-1\n", 17, True, ["r-1"], {"id": "r-1"}]
)
@pytest.mark.parametrize("make", [navigation, scrape, scheduler_run])
def test_a_bad_run_id_is_refused_naming_index_and_field(
    asgi: AsgiClient, api_key: str, make: Any, run_id: Any
) -> None:
    response = post(asgi, api_key, make(runId="r-0100"), make(runId=run_id))
    assert response.status_code == 400
    assert [(d["index"], d["field"]) for d in response.json()["details"]] == [(1, "runId")]
    assert stored() == 0


def test_the_widest_run_ids_are_accepted(asgi: AsgiClient, api_key: str) -> None:
    widest = ["R" * 64, "2026-12-07T01:00:00.123Z", "quotes-refresh:r_0100.b", "0"]
    assert post(asgi, api_key, *(navigation(runId=run) for run in widest)).status_code == 202
    assert sorted(str(run) for run in PagePerformance.objects.values_list("run_id", flat=True)) == sorted(
        widest
    )


def test_each_type_is_stored_with_its_run_and_read_back_as_sent(
    daphne: DaphneServer, committed_api_key: str
) -> None:
    """Through daphne, as production serves it: the recent records carry runId back unchanged,
    a null runId comes back left out, and records without one come back with no new key."""
    source = unique_source()
    sent = [
        navigation(scraperSource=source, runId="quotes-refresh:r-0100", httpStatus=200),
        scrape(scraperSource=source, runId="quotes-refresh:r-0100"),
        scheduler_run(schedulerName="quotes-refresh", scraperSource=source, runId="quotes-refresh:r-0100"),
        navigation(scraperSource=source),
        scrape(scraperSource=source, runId=None),
    ]
    auth = {"Authorization": f"Bearer {committed_api_key}"}
    response = httpx.post(f"{daphne.url}/api/metrics/", content=orjson.dumps({"metrics": sent}), headers=auth)
    assert response.status_code == 202

    recent = httpx.get(f"{daphne.url}/api/metrics/recent/", params={"source": source}, headers=auth)
    got = sorted(recent.json()["metrics"], key=lambda r: (r["type"] == "scheduler_run", r["id"]))
    expected = [sent[0], sent[1], sent[3], {k: v for k, v in sent[4].items() if k != "runId"}, sent[2]]
    assert [{k: v for k, v in r.items() if k != "id"} for r in got] == expected
    assert PagePerformance.objects.filter(run_id="quotes-refresh:r-0100").count() == 2
    assert SchedulerMetric.objects.get(scraper_source=source).run_id == "quotes-refresh:r-0100"
