"""Runs (docs/api.md, "Runs"): each run's numbers from the run rollups, written in the ingest
transaction and kept past the detail's retention; GET /api/runs/ and /api/runs/<runId>/ with
each finished run against its scheduler's last ten, and the run_degraded rule."""

from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from django.core.management import call_command
from django.test import override_settings

from metrics_app.models import ApiKey, PagePerformance, RunEntity, RunSource
from metrics_app.records import now_ms
from tests.support.asgi import AsgiClient
from tests.support.records import navigation, scheduler_run, scrape
from tests.support.runs import crawl
from tests.support.servers import DaphneServer
from tests.support.waiting import wait_for
from tests.support.ws import unique_source

pytestmark = pytest.mark.django_db(transaction=True)

MINUTE = 60_000


def send(client: AsgiClient, key: str, metrics: list[dict[str, Any]], **headers: str) -> Any:
    return client.post("/api/metrics/", data={"metrics": metrics},
                       headers={"Authorization": f"Bearer {key}", **headers})  # fmt: skip


def run_of(client: AsgiClient, key: str, run_id: str, **params: str) -> Any:
    return client.get(f"/api/runs/{run_id}/", params, headers={"Authorization": f"Bearer {key}"})


def test_a_runs_numbers_through_daphne(daphne: DaphneServer, committed_api_key: str) -> None:
    """As production serves it: a run's records, sent in several batches over real sockets,
    summed into its numbers; the scheduler run ends it."""
    source, start = unique_source(), now_ms() - 10 * MINUTE
    records = crawl("qr-0001", source, start, pages=8, items=100, failed=2, took_ms=120_000)
    scrapes = [record for record in records if record["type"] == "page_scrape"]
    for n, record in enumerate(scrapes):  # AAPL on every page, and one more symbol each
        record["entities"] = ["AAPL", f"T{n}"]
    auth = {"Authorization": f"Bearer {committed_api_key}"}
    for at in range(0, len(records), 5):
        body = orjson.dumps({"metrics": records[at : at + 5]})
        assert httpx.post(f"{daphne.url}/api/metrics/", content=body, headers=auth).status_code == 202

    def read() -> Any:
        return httpx.get(f"{daphne.url}/api/runs/qr-0001/", headers=auth).json()

    # the entities are written behind, within METRICS_ENTITY_FLUSH_S
    assert wait_for(lambda: read()["entities"] == 1 + len(scrapes), timeout=15, interval=0.2)
    answer = read()
    assert answer == {
        "runId": "qr-0001", "schedulerName": "quotes-refresh", "sources": [source],
        "startedAt": answer["startedAt"], "endedAt": answer["endedAt"], "state": "finished",
        "success": True, "durationMs": 120_000, "pages": 8, "failedPages": 2, "items": 100,
        "bytes": 6000, "statuses": {"200": 6, "503": 2},
        "fields": {"price": {"items": 100, "filled": 100, "invalid": 0}},
        "entities": 7, "verdict": None, "summary": None, "outside": [], "comparison": {"runs": 0},
    }  # fmt: skip
    assert answer["startedAt"] == iso_ms(start)
    assert answer["endedAt"] == iso_ms(start + 120_000)


def iso_ms(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def send_runs(asgi: AsgiClient, key: str, source: str, runs: list[dict[str, Any]]) -> None:
    """Runs an hour apart, oldest first, each given as crawl()'s options."""
    start = now_ms() - (len(runs) + 1) * 60 * MINUTE
    for n, options in enumerate(runs):
        records = crawl(f"qr-{n:04}", source, start + n * 60 * MINUTE, **options)
        assert send(asgi, key, records).status_code == 202


HEALTHY = [{"items": 480 + 4 * n, "pages": 40, "failed": n % 2, "took_ms": 60_000 + 3_000 * (n % 4)}
           for n in range(10)]  # fmt: skip


@pytest.mark.parametrize(
    ("degraded", "summary"),
    [
        ({"items": 120, "pages": 40}, "quotes-refresh run qr-0010: 120 items, its last 10 runs 480–516"),
        ({"items": 500, "pages": 40, "failed": 14},
         "quotes-refresh run qr-0010: 14 of 40 pages failed, usually 0–1"),
        ({"items": 500, "pages": 40, "took_ms": 12_000},
         "quotes-refresh run qr-0010: took 12 s, too fast: usually 60 s–69 s"),
        ({"items": 500, "pages": 40, "price_filled": 0.25},
         "quotes-refresh run qr-0010: price filled on 24 % of items, usually 100 %"),
        ({"items": 130, "pages": 40, "failed": 14},
         "quotes-refresh run qr-0010: 130 items, its last 10 runs 480–516; 14 of 40 pages failed, usually 0–1"),
    ],
)  # fmt: skip
def test_a_run_far_outside_its_last_ten_is_degraded_with_its_numbers(
    asgi: AsgiClient, api_key: str, degraded: dict[str, Any], summary: str
) -> None:
    send_runs(asgi, api_key, "cnbc", [*HEALTHY, degraded])
    answer = run_of(asgi, api_key, "qr-0010").json()
    assert (answer["verdict"], answer["summary"]) == ("run_degraded", summary)
    comparison = answer["comparison"]
    assert comparison["runs"] == 10
    assert comparison["items"] == {"min": 480, "max": 516}
    assert comparison["failedPages"] == {"min": 0, "max": 1}
    assert comparison["durationMs"] == {"min": 60_000, "max": 69_000}
    assert comparison["fields"] == {"price": {"filledRatio": {"min": 1.0, "max": 1.0}}}


def test_healthy_noise_is_not_degraded_and_a_later_run_back_in_range_is_not(
    asgi: AsgiClient, api_key: str
) -> None:
    noisy = [{"items": 500 + (-50 if n % 3 else 45), "pages": 40, "took_ms": 60_000 + (-6_000 if n % 2 else 6_000)}
             for n in range(12)]  # fmt: skip
    send_runs(asgi, api_key, "cnbc", [*noisy, {"items": 100, "pages": 40}, {"items": 490, "pages": 40}])
    listed = asgi.get("/api/runs/", {"scheduler": "quotes-refresh", "limit": "14"},
                      headers={"Authorization": f"Bearer {api_key}"}).json()["runs"]  # fmt: skip
    assert [run["runId"] for run in listed] == [f"qr-{n:04}" for n in range(13, -1, -1)]
    verdicts = {run["runId"]: run["verdict"] for run in listed}
    assert verdicts.pop("qr-0012") == "run_degraded"
    assert set(verdicts.values()) == {None}
    # the first runs had fewer than three before them: not judged
    assert [run["comparison"]["runs"] for run in listed[-4:]] == [3, 2, 1, 0]


@pytest.mark.parametrize(("failed", "verdict"), [(7, None), (20, "run_degraded")])
def test_a_few_more_failures_than_usual_are_bad_luck_and_ten_times_as_many_are_not(
    asgi: AsgiClient, api_key: str, failed: int, verdict: str | None
) -> None:
    """100 pages a run, 1-3 of them failing (1.7 %): 7 is over twice the upper quartile plus 2,
    but such a run comes by chance; 20 does not."""
    usual = [{"items": 500, "pages": 100, "failed": n} for n in (1, 2, 1, 2, 3, 2, 1, 2, 2, 1)]
    send_runs(asgi, api_key, "cnbc", [*usual, {"items": 500, "pages": 100, "failed": failed}])
    assert run_of(asgi, api_key, "qr-0010").json()["verdict"] == verdict


def test_a_run_is_running_then_unfinished_when_idle(asgi: AsgiClient, api_key: str) -> None:
    source = unique_source()
    records = crawl(
        "crawl-a", source, now_ms() - 2 * MINUTE, pages=3, items=30, took_ms=60_000, scheduler=None
    )
    assert send(asgi, api_key, records).status_code == 202
    answer = run_of(asgi, api_key, "crawl-a").json()
    assert (answer["state"], answer["endedAt"], answer["success"], answer["schedulerName"]) == (
        "running",
        None,
        None,
        None,
    )
    assert (answer["pages"], answer["items"]) == (3, 30)
    with override_settings(METRICS_RUN_IDLE_S=30):
        answer = run_of(asgi, api_key, "crawl-a").json()
    assert answer["state"] == "unfinished"
    assert answer["endedAt"] == iso_ms(max(r["recordedAt"] for r in records))


def test_listing_filters_and_limits(asgi: AsgiClient, api_key: str) -> None:
    start = now_ms() - 60 * MINUTE
    batches = [
        crawl("a-1", "cnbc", start, scheduler="quotes"),
        crawl("b-1", "webull", start + MINUTE, scheduler="news"),
        crawl("c-1", "cnbc", start + 2 * MINUTE, scheduler=None),  # still running, no scheduler yet
        [scheduler_run(schedulerName="nightly", runId="d-1", recordedAt=start + 3 * MINUTE)],
    ]
    for records in batches:
        assert send(asgi, api_key, records).status_code == 202
    auth = {"Authorization": f"Bearer {api_key}"}

    def ids(**params: str) -> list[str]:
        return [run["runId"] for run in asgi.get("/api/runs/", params, headers=auth).json()["runs"]]

    assert ids() == ["d-1", "c-1", "b-1", "a-1"]
    assert ids(limit="2") == ["d-1", "c-1"]
    assert ids(source="cnbc") == ["c-1", "a-1"]
    assert ids(scheduler="quotes") == ["a-1"]
    assert ids(scheduler="quotes", source="webull") == []
    only_end = asgi.get("/api/runs/d-1/", headers=auth).json()
    assert (only_end["sources"], only_end["pages"], only_end["items"], only_end["durationMs"]) == (
        [],
        0,
        120,
        5300,
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"), ({"limit": "x"}, "limit"),
     ({"source": "Bad Name"}, "source"), ({"scheduler": "../x"}, "scheduler")],
)  # fmt: skip
def test_bad_listing_parameters_are_refused_naming_them(
    asgi: AsgiClient, api_key: str, params: dict[str, str], field: str
) -> None:
    response = asgi.get("/api/runs/", params, headers={"Authorization": f"Bearer {api_key}"})
    assert (response.status_code, response.json()["field"]) == (400, field)


def test_an_unknown_run_is_404_and_a_malformed_id_400(asgi: AsgiClient, api_key: str) -> None:
    assert run_of(asgi, api_key, "never-sent").status_code == 404
    response = run_of(asgi, api_key, "-bad")
    assert (response.status_code, response.json()["field"]) == (400, "runId")


def test_strangers_are_refused_and_a_limited_key_sees_only_its_sources(
    asgi: AsgiClient, api_key: str
) -> None:
    assert send(asgi, api_key, crawl("a-1", "cnbc", now_ms() - 5 * MINUTE)).status_code == 202
    assert asgi.get("/api/runs/").status_code == 401
    assert asgi.get("/api/runs/a-1/").status_code == 401
    limited = {
        "Authorization": f"Bearer {ApiKey.issue('webull reader', scope='read', sources=['webull'])[1]}"
    }
    assert asgi.get("/api/runs/", headers=limited).status_code == 403
    assert asgi.get("/api/runs/", {"source": "webull"}, headers=limited).json() == {"runs": []}
    assert asgi.get("/api/runs/", {"source": "cnbc"}, headers=limited).status_code == 403
    assert asgi.get("/api/runs/a-1/", {"source": "webull"}, headers=limited).status_code == 404
    assert asgi.get("/api/runs/a-1/", {"source": "cnbc"}, headers=limited).status_code == 403


def test_a_refused_batch_adds_nothing_and_a_retried_one_adds_once(asgi: AsgiClient, api_key: str) -> None:
    records = crawl("r-1", "cnbc", now_ms() - 5 * MINUTE, pages=2, items=10, scheduler=None)
    bad = [*records, navigation(runId="r-1", navigationDurationMs=-1)]
    assert send(asgi, api_key, bad).status_code == 400
    assert not RunSource.objects.exists()
    for _ in range(2):
        assert send(asgi, api_key, records, **{"Idempotency-Key": "batch-1"}).status_code == 202
    answer = run_of(asgi, api_key, "r-1").json()
    assert (answer["pages"], answer["items"]) == (2, 10)


def test_a_runs_numbers_outlive_its_records(asgi: AsgiClient, api_key: str) -> None:
    old = now_ms() - 9 * 24 * 60 * MINUTE
    records = crawl("old-1", "cnbc", old, pages=4, items=40)
    for n, record in enumerate(r for r in records if r["type"] == "page_scrape"):
        record["entities"] = ["AAPL", "MSFT"] if n % 2 else ["AAPL", "KO"]
    # the same symbols from another source are that source's
    records.append(scrape(scraperSource="yahoo", runId="old-1", recordedAt=old, entities=["AAPL"]))
    assert send(asgi, api_key, records).status_code == 202
    recent = crawl("new-1", "cnbc", now_ms() - 5 * MINUTE, pages=2, items=4)
    recent[1]["entities"] = ["AAPL"]
    assert send(asgi, api_key, recent).status_code == 202
    before = run_of(asgi, api_key, "old-1").json()
    assert before["entities"] == 4
    call_command("cleanup_metrics", days=7, verbosity=0)
    assert not PagePerformance.objects.filter(run_id="old-1").exists()
    assert run_of(asgi, api_key, "old-1").json() == before
    # the old run's entities are a count now; the recent run's are still rows
    assert list(RunEntity.objects.values_list("run_id", "entity")) == [("new-1", "AAPL")]
    assert run_of(asgi, api_key, "new-1").json()["entities"] == 1
    assert before["startedAt"] == iso_ms(old)
    assert timedelta(milliseconds=before["durationMs"]) == timedelta(minutes=1)


def test_a_scheduler_that_stays_broken_stays_degraded(asgi: AsgiClient, api_key: str) -> None:
    """Bad runs among the last ten do not make the next bad run look usual (quartiles, not the
    least and most)."""
    broken = {"items": 120, "pages": 40, "failed": 14}
    send_runs(asgi, api_key, "cnbc", [*HEALTHY, broken, broken, broken])
    for run_id in ("qr-0010", "qr-0011", "qr-0012"):
        assert run_of(asgi, api_key, run_id).json()["outside"] == ["items", "failedPages"]


def test_a_limited_key_sees_no_run_with_records_of_other_sources(asgi: AsgiClient, api_key: str) -> None:
    start = now_ms() - 10 * MINUTE
    both = crawl("both-1", "cnbc", start, scheduler=None) + crawl("both-1", "webull", start, scheduler=None)
    assert (
        send(asgi, api_key, [*both, *crawl("own-1", "cnbc", start + MINUTE, scheduler=None)]).status_code
        == 202
    )
    limited = {"Authorization": f"Bearer {ApiKey.issue('cnbc reader', scope='read', sources=['cnbc'])[1]}"}
    listed = asgi.get("/api/runs/", {"source": "cnbc"}, headers=limited).json()["runs"]
    assert [run["runId"] for run in listed] == ["own-1"]
    assert asgi.get("/api/runs/both-1/", {"source": "cnbc"}, headers=limited).status_code == 404
    everyone = run_of(asgi, api_key, "both-1").json()
    assert (everyone["sources"], everyone["pages"]) == (["cnbc", "webull"], 20)
