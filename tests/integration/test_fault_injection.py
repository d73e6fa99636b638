"""simulate_scrapers --faults: the demo's injected faults go through the real ingest path and
the evaluator of a running daphne names them."""

import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from django.db.models import Sum

from metrics_app.data_models import FieldMinute, StatusMinute
from metrics_app.management.commands.simulate_scrapers import FAULTS, parse_faults
from tests.support.servers import ROOT, DaphneServer
from tests.support.waiting import wait_for


def test_the_demo_schedule_runs_every_fault_in_turn_with_a_gap() -> None:
    faults = parse_faults("demo", ["robinhood", "cnbc"])
    assert [fault.kind for fault in faults] == list(FAULTS)
    assert faults[0].start == 60 and faults[0].source == "robinhood" and faults[1].source == "cnbc"
    assert all(b.start > a.start + a.duration for a, b in itertools.pairwise(faults))


@pytest.mark.django_db(transaction=True)
def test_an_injected_outage_fires_site_down(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str, live_server_env: dict[str, str]
) -> None:
    server = start_daphne(
        METRICS_ALERT_EVALUATOR="1", METRICS_ALERT_EVAL_INTERVAL_S="1", METRICS_ALERT_WINDOW_S="10"
    )
    simulator = subprocess.Popen(
        [sys.executable, "manage.py", "simulate_scrapers", "--url", f"{server.url}/", "--api-key", committed_api_key,
         "--sources", "alpha,beta", "--rate", "40", "--duration", "40", "--seed", "3",
         "--faults", "site_down:alpha:1:40"],
        cwd=ROOT, env={**live_server_env, **os.environ.copy(), "DATABASE_URL": live_server_env["DATABASE_URL"]},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {committed_api_key}"}

    def firing() -> list[dict[str, str]]:
        alerts: list[dict[str, str]] = httpx.get(f"{server.url}/api/alerts/", headers=headers).json()[
            "alerts"
        ]
        return alerts

    try:
        assert wait_for(lambda: bool(firing()), timeout=35, interval=0.5)
    finally:
        simulator.terminate()
        output = simulator.communicate(timeout=20)[0]
    assert [(a["verdict"], a["scraperSource"]) for a in firing()] == [("site_down", "alpha")]
    assert "fault: site_down on alpha" in output


@pytest.mark.django_db(transaction=True)
def test_the_demo_sends_fields_and_statuses_and_breaks_a_field(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str, live_server_env: dict[str, str]
) -> None:
    """Its pages carry their statuses and their fields' counts; `field_broken` empties one
    source's price while its other fields, and the other source, stay as usual."""
    server = start_daphne()
    subprocess.run(
        [sys.executable, "manage.py", "simulate_scrapers", "--url", f"{server.url}/", "--api-key", committed_api_key,
         "--sources", "alpha,beta", "--rate", "60", "--duration", "8", "--seed", "5",
         "--faults", "field_broken:alpha:0:60"],
        cwd=ROOT, env={**live_server_env, **os.environ.copy(), "DATABASE_URL": live_server_env["DATABASE_URL"]},
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip

    def filled_share(source: str, field: str) -> float:
        sums = FieldMinute.objects.filter(scraper_source=source, field=field).aggregate(
            items=Sum("items"), filled=Sum("filled")
        )
        return float(sums["filled"]) / float(sums["items"])

    assert filled_share("alpha", "price") < 0.3  # broken
    assert filled_share("beta", "price") > 0.95
    assert filled_share("alpha", "symbol") > 0.95 and filled_share("alpha", "volume") > 0.8
    statuses = set(StatusMinute.objects.values_list("http_status", flat=True))
    assert 200 in statuses


@pytest.mark.django_db(transaction=True)
def test_the_demo_runs_its_scheduler_as_runs_and_degrades_one(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str, live_server_env: dict[str, str]
) -> None:
    """Each scheduler run ends a run whose pages carry its id; the `run_degraded` fault makes
    the next run skip most of its pages, which its run's verdict says."""
    server = start_daphne()
    subprocess.run(
        [sys.executable, "manage.py", "simulate_scrapers", "--url", f"{server.url}/", "--api-key", committed_api_key,
         "--sources", "alpha,beta", "--rate", "80", "--duration", "13", "--seed", "7",
         "--scheduler-period", "1.5", "--faults", "run_degraded:alpha:8:1.5"],
        cwd=ROOT, env={**live_server_env, **os.environ.copy(), "DATABASE_URL": live_server_env["DATABASE_URL"]},
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    runs = httpx.get(f"{server.url}/api/runs/", params={"scheduler": "quotes-refresh"},
                     headers={"Authorization": f"Bearer {committed_api_key}"}).json()["runs"]  # fmt: skip
    assert len(runs) >= 6
    assert all(run["state"] == "finished" and run["sources"] == ["alpha", "beta"] for run in runs)
    degraded = [run for run in runs if run["verdict"]]
    assert len(degraded) == 1, [(run["runId"], run["items"], run["comparison"].get("items")) for run in runs]
    (run,) = degraded
    assert "outside" in run and "items" in run["outside"]
    assert run["items"] < run["comparison"]["items"]["min"] / 2


@pytest.mark.django_db(transaction=True)
def test_the_demo_stops_refreshing_a_tenth_of_a_sources_symbols_and_stale_entities_fires(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str, live_server_env: dict[str, str]
) -> None:
    server = start_daphne(
        METRICS_ALERT_EVALUATOR="1", METRICS_ALERT_EVAL_INTERVAL_S="1", METRICS_ALERT_WINDOW_S="10",
        METRICS_ENTITY_FLUSH_S="1", METRICS_ENTITY_STALE_S="10",
    )  # fmt: skip
    simulator = subprocess.Popen(
        [sys.executable, "manage.py", "simulate_scrapers", "--url", f"{server.url}/", "--api-key", committed_api_key,
         "--sources", "alpha,beta", "--rate", "60", "--duration", "50", "--seed", "4",
         "--faults", "stale_entities:alpha:12:40"],
        cwd=ROOT, env={**live_server_env, **os.environ.copy(), "DATABASE_URL": live_server_env["DATABASE_URL"]},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {committed_api_key}"}

    def stale_alerts() -> list[dict[str, Any]]:
        alerts = httpx.get(f"{server.url}/api/alerts/", headers=headers).json()["alerts"]
        return [alert for alert in alerts if alert["verdict"] == "stale_entities"]

    try:
        assert wait_for(
            lambda: any(a["scraperSource"] == "alpha" for a in stale_alerts()), timeout=45, interval=0.5
        )
    finally:
        simulator.terminate()
        simulator.communicate(timeout=20)
    (alert,) = [alert for alert in stale_alerts() if alert["scraperSource"] == "alpha"]
    # the three stopped ones are the stalest (a healthy symbol, picked at random about every
    # 2 s, is now and then stale too: one wait in 150 is over 10 s)
    assert " of 30 entities not refreshed for 10 s or more" in alert["summary"]
    named = alert["summary"].split("stalest: ")[1].split(", ")
    assert {name.split(" ")[0] for name in named} == {"TSLA", "NFLX", "KO"}
