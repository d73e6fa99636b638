"""The page's state in one request (GET /api/metrics/overview/) and the failures view
(GET /api/metrics/failures/): a week with a source that stopped and an hourly scheduler."""

from datetime import datetime
from typing import Any

import pytest

from metrics_app.records import now_ms
from tests.support.asgi import AsgiClient
from tests.support.db import store
from tests.support.records import navigation, scheduler_run, scrape

pytestmark = pytest.mark.django_db(transaction=True)

HOUR = 3_600_000


@pytest.fixture
def week() -> int:
    """Now, in ms; behind it a week of a steady source, one that stopped 3 hours ago, and an
    hourly scheduler."""
    now = now_ms()
    records = []
    for hour in range(1, 7 * 24):
        at = now - hour * HOUR
        records.append(navigation(scraperSource="steady", recordedAt=at, navigationDurationMs=400))
        records.append(scrape(scraperSource="steady", recordedAt=at, itemsExtracted=20, dataSize=5000))
        records.append(
            scheduler_run(schedulerName="hourly-job", recordedAt=at + 60_000, executionDurationMs=900)
        )
        if hour >= 3:
            records.append(navigation(scraperSource="stopped", recordedAt=at, success=hour % 5 != 0,
                                      error=None if hour % 5 else f"HTTP 503 for https://s/q/{hour} after {hour} tries"))  # fmt: skip
    store(*records)
    return now


def get(reader: AsgiClient, path: str, **params: str) -> Any:
    response = reader.get(path, params)
    assert response.status_code == 200, response.content
    return response.json()


def test_a_week_draws_across_the_whole_axis(reader: AsgiClient, week: int) -> None:
    state = get(reader, "/api/metrics/overview/", range="7d")
    assert state["range"] == {
        **state["range"],
        "name": "7d",
        "label": "last 7 days",
        "bucketLabel": "per hour",
    }
    assert len(state["axis"]) == 168
    steady = state["series"]["steady"]["page_navigation"]
    assert sum(bucket is not None for bucket in steady) >= 165  # drawn across the week
    channels = {channel["name"]: channel for channel in state["channels"]}
    assert channels["stopped"]["kind"] == "scraper" and channels["hourly-job"]["kind"] == "scheduler"
    silent_for = week - channels["stopped"]["lastRecordedAt"]
    assert 3 * HOUR - 1000 <= silent_for <= 3 * HOUR + 1000
    job = state["schedulers"]["hourly-job"]
    assert job["period"]["seconds"] == 3600 and len(job["runs"]) >= 166
    assert state["sources"]["steady"]["records"] == 2 * 167
    assert state["sources"]["stopped"]["failures"] == state["sources"]["stopped"]["records"] - state["sources"][
        "stopped"]["successCount"] > 0  # fmt: skip


@pytest.mark.parametrize("range_name", ["7d", "24h", "1h", "live"])
def test_runs_and_failures_are_counted_exactly_however_many(reader: AsgiClient, range_name: str) -> None:
    """A week of a scheduler every 5 minutes read "Runs: many, Failed: –", and its chart plotted
    hourly sums of items under "items processed"."""
    now = now_ms()
    times = [now - n * 300_000 - 1000 for n in range(1900)]  # 6.6 days
    failing = {3, 100, 101, 555, 1200, 1500, 1899}
    store(*[
        scheduler_run(schedulerName="every-5-min", recordedAt=at, itemsProcessed=40 + n % 21,
                      executionDurationMs=1000 + 10 * (n % 200), success=n not in failing,
                      error="upstream timed out" if n in failing else None)
        for n, at in enumerate(times)
    ])  # fmt: skip
    state = get(reader, "/api/metrics/overview/", range=range_name)
    start = datetime.fromisoformat(state["axis"][0]).timestamp() * 1000
    shown = [n for n, at in enumerate(times) if at >= start]
    job = state["schedulers"]["every-5-min"]

    assert job["totals"]["records"] == len(shown)
    assert job["totals"]["failures"] == len(failing & set(shown))
    if job["runs"] is not None:  # few enough: each run
        assert len(job["runs"]) == len(shown) <= 1000 and job["ranges"] is None
        return
    assert range_name == "7d" and len(shown) == 1900
    ranges = job["ranges"]
    assert sum(r["runs"] for r in ranges) == 1900 and sum(r["failed"] for r in ranges) == 7
    # each hour's range of single runs, never their sum (an hour's items summed are some 600)
    assert all(40 <= r["items"][0] <= r["items"][1] <= 60 for r in ranges)
    assert all(1000 <= r["durationMs"][0] <= r["durationMs"][1] <= 2990 for r in ranges)
    assert max(r["runs"] for r in ranges) == 12 and len(ranges) >= 158
    assert sorted(run["recordedAt"] for run in job["failedRuns"]) == sorted(times[n] for n in failing)


def test_the_source_filter_narrows_everything(reader: AsgiClient, week: int) -> None:
    state = get(reader, "/api/metrics/overview/", range="24h", source="stopped")
    assert [channel["name"] for channel in state["channels"]] == ["stopped"]
    assert set(state["series"]) == {"stopped"} and state["schedulers"] == {}
    assert state["totals"]["records"] == state["sources"]["stopped"]["records"] == 21


def test_trends_compare_with_the_range_before(reader: AsgiClient, week: int) -> None:
    state = get(reader, "/api/metrics/overview/", range="24h")
    # The 24 hours before the range: steady's navigation and scrape every hour, stopped every hour.
    steady, stopped = state["sources"]["steady"]["previous"], state["sources"]["stopped"]["previous"]
    assert steady["records"] == 48 and steady["itemsExtracted"] == 24 * 20 and steady["dataSize"] == 24 * 5000
    assert stopped["records"] == 24 and stopped["failures"] == 5  # hours 25 … 48 that are multiples of 5
    assert state["previous"]["records"] == 48 + 24 + 24  # and the scheduler's runs
    assert steady["p95DurationMs"] is not None and stopped["successRate"] == round(100 * 19 / 24, 2)


def test_a_trend_is_a_percentage_only_against_comparable_data(reader: AsgiClient, week: int) -> None:
    # A source that sent 40 records in two hours of yesterday and 40 today: not comparable.
    store(*(navigation(scraperSource="bursty", recordedAt=week - (30 + n % 2) * HOUR) for n in range(40)))
    store(*(navigation(scraperSource="bursty", recordedAt=week - 2 * HOUR) for _ in range(40)))
    day = get(reader, "/api/metrics/overview/", range="24h")["sources"]
    steady, stopped, bursty = day["steady"], day["stopped"], day["bursty"]
    # Yesterday held steady's records in every hour: a percentage, from the records themselves.
    expected = round(
        100 * (steady["records"] - steady["previous"]["records"]) / steady["previous"]["records"], 1
    )
    assert steady["trend"] == {"direction": "stable" if abs(expected) < 5 else "down", "change": expected,
                               "comparable": True}  # fmt: skip
    assert stopped["trend"]["comparable"] and stopped["trend"]["change"] == round(100 * (21 - 24) / 24, 1)
    assert bursty["previous"]["records"] == 40
    assert bursty["trend"] == {"direction": "stable", "change": None, "comparable": False}
    # The week before the week holds nothing: every trend over 7 days is new.
    week_sources = get(reader, "/api/metrics/overview/", range="7d")["sources"]
    assert not any(source["trend"]["comparable"] for source in week_sources.values())
    assert week_sources["steady"]["trend"] == {"direction": "up", "change": None, "comparable": False}


def test_the_live_range_compares_with_the_half_hour_before(reader: AsgiClient) -> None:
    now = now_ms()
    store(navigation(recordedAt=now - 60_000), *(navigation(recordedAt=now - 40 * 60_000) for _ in range(3)))
    state = get(reader, "/api/metrics/overview/", range="live")
    source = state["channels"][0]["name"]
    assert state["sources"][source]["records"] == 1 and state["sources"][source]["previous"]["records"] == 3
    assert state["previous"]["records"] == 3


def test_the_live_range_is_thirty_minutes(reader: AsgiClient) -> None:
    store(navigation(recordedAt=now_ms() - 60_000))
    state = get(reader, "/api/metrics/overview/", range="live")
    assert len(state["axis"]) == 30 and state["range"]["bucket"] == "minute"
    assert state["totals"]["records"] == 1


def test_failures_are_grouped_searchable_and_paged(reader: AsgiClient, week: int) -> None:
    found = get(reader, "/api/metrics/failures/", range="7d")
    assert found["total"] == 33  # every fifth hour of the 165 the stopped source ran
    [group] = found["groups"]
    assert group["message"] == "HTTP <n> for <url> after <n> tries" and group["count"] == 33
    assert found["failures"][0]["recordedAt"] > found["failures"][-1]["recordedAt"]
    assert get(reader, "/api/metrics/failures/", range="7d", q="https://s/q/100")["total"] == 1
    assert get(reader, "/api/metrics/failures/", range="7d", q="nothing like it")["total"] == 0


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/metrics/overview/", {"range": "2w"}, "range"),
        ("/api/metrics/overview/", {"source": "Not A Source"}, "source"),
        ("/api/metrics/failures/", {"page": "zero"}, "page"),
    ],
)
def test_bad_parameters_are_named(reader: AsgiClient, path: str, params: dict[str, str], field: str) -> None:
    response = reader.get(path, params)
    assert response.status_code == 400 and response.json()["field"] == field


def test_strangers_are_refused(asgi: AsgiClient) -> None:
    assert asgi.get("/api/metrics/overview/").status_code == 401
    assert asgi.get("/api/metrics/failures/").status_code == 401


def test_the_busiest_are_shown_one_by_one_and_the_rest_summed(reader: AsgiClient, monkeypatch: Any) -> None:
    """However many sources report, the answer carries the SHOWN busiest's figures and series;
    the rest come summed per kind, so that "others" still adds up to everything."""
    from metrics_app.history import overview

    monkeypatch.setattr(overview, "SHOWN", 3)
    counts = {"s-a": 6, "s-b": 5, "s-c": 4, "s-d": 3, "s-e": 2, "s-f": 1}
    store(*(navigation(scraperSource=name, url=f"u{i}") for name, n in counts.items() for i in range(n)))
    store(scheduler_run(schedulerName="nightly"))  # a bare scheduler: 1 record
    answer = reader.get("/api/metrics/overview/", {"range": "live"}).json()
    assert {c["name"] for c in answer["channels"]} == {*counts, "nightly"}  # every one, for the filter
    assert set(answer["sources"]) == set(answer["series"]) == {"s-a", "s-b", "s-c"}
    rest = answer["rest"]
    assert (rest["scraper"]["channels"], rest["scraper"]["totals"]["records"]) == (3, 3 + 2 + 1)
    assert (rest["scheduler"]["channels"], rest["scheduler"]["totals"]["records"]) == (1, 1)
    assert sum(b["count"] for b in rest["scraper"]["series"]["all"] if b) == 6
    assert answer["totals"]["records"] == sum(counts.values()) + 1
    shown = {c["name"]: c["lastRecordedAt"] for c in answer["channels"]}
    assert shown["s-a"] is not None and shown["s-f"] is None  # when it last reported: the shown ones
