"""The HTTP API over real sockets against a running daphne."""

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from metrics_app.models import PagePerformance
from tests.support.records import navigation, scrape
from tests.support.servers import ROOT, DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def test_ingest_stores_then_answers(daphne: DaphneServer, committed_api_key: str) -> None:
    body = orjson.dumps({"metrics": [navigation(scraperSource="live", url=f"u{i}") for i in range(1000)]})
    response = httpx.post(f"{daphne.url}/api/metrics/", content=body, headers=auth(committed_api_key))
    assert response.status_code == 202
    assert response.json() == {"accepted": 1000}
    assert PagePerformance.objects.filter(scraper_source="live").count() == 1000
    # served in front of Django (metrics_app.api.ingest_route), stored by the group writer
    assert daphne.stats(committed_api_key)["counters"]["group_commits"] >= 1


def test_concurrent_small_batches_share_transactions(daphne: DaphneServer, committed_api_key: str) -> None:
    async def send_all() -> list[int]:
        async with httpx.AsyncClient(base_url=daphne.url, timeout=30) as client:
            bodies = [orjson.dumps({"metrics": [navigation(scraperSource="fleet", url=f"u{n}-{i}") for i in range(5)]})
                      for n in range(64)]  # fmt: skip
            answers = await asyncio.gather(*(client.post("/api/metrics/", content=body, headers=auth(committed_api_key))
                                             for body in bodies))  # fmt: skip
            return [answer.status_code for answer in answers]

    before = daphne.stats(committed_api_key)["counters"].get("group_commits", 0)
    assert asyncio.run(send_all()) == [202] * 64
    commits = daphne.stats(committed_api_key)["counters"]["group_commits"] - before
    assert PagePerformance.objects.filter(scraper_source="fleet").count() == 320
    assert commits < 64  # requests that arrived together were stored together


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"\x00\x01\x02", 400),
        (b'{"metrics": [', 400),
        (orjson.dumps({"metrics": [scrape(itemsExtracted="many")]}), 400),
        (orjson.dumps({"metrics": [scrape()] * 1001}), 413),
        (b"[" + b" " * (5 * 1024 * 1024) + b"]", 413),
    ],
)
def test_malformed_input_is_a_4xx_with_a_message(
    daphne: DaphneServer, committed_api_key: str, body: bytes, status: int
) -> None:
    response = httpx.post(
        f"{daphne.url}/api/metrics/", content=body, headers=auth(committed_api_key), timeout=30
    )
    assert response.status_code == status
    assert response.json()["message"]
    assert PagePerformance.objects.count() == 0


def test_oversized_chunked_body_is_413(daphne: DaphneServer, committed_api_key: str) -> None:
    def chunks():  # no Content-Length: the server must count as it reads
        for _ in range(80):
            yield b" " * 65536

    response = httpx.post(f"{daphne.url}/api/metrics/", content=chunks(), headers=auth(committed_api_key))
    assert response.status_code == 413


def test_embedded_default_needs_no_service(tmp_path: Path, live_server_env: dict[str, str]) -> None:
    """What `make run` serves with no DATABASE_URL and no REDIS_URL: SQLite under VAR_DIR."""
    env = {k: v for k, v in live_server_env.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["VAR_DIR"] = str(tmp_path)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    first_run = subprocess.run(
        [*manage, "first_run"], cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=60
    ).stdout
    username, password = first_run.split("Log in as: ", 1)[1].split("  ")[0].split(" / ")
    key = (
        subprocess.run(
            [*manage, "create_api_key", "demo"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert (tmp_path / "wealthmetrics.sqlite3").exists()

    server = DaphneServer(env)
    server.start()
    try:
        body = orjson.dumps({"metrics": [navigation(scraperSource="embedded")]})
        assert httpx.post(f"{server.url}/api/metrics/", content=body, headers=auth(key)).status_code == 202
        with httpx.Client(base_url=server.url) as browser:
            browser.get("/accounts/login/")
            login = browser.post(
                "/accounts/login/",
                data={
                    "username": username,
                    "password": password,
                    "csrfmiddlewaretoken": browser.cookies["csrftoken"],
                },
            )
            assert login.status_code == 302
            assert browser.get("/analytics/").status_code == 200
            assert "embedded" in browser.get("/api/metrics/summary/").json()["sources"]
    finally:
        server.stop()


def test_daphne_serves_static_files(daphne: DaphneServer) -> None:
    for path in ("/static/css/site.css", "/static/admin/css/base.css"):
        assert httpx.get(f"{daphne.url}{path}").status_code == 200


def test_the_icon_is_there_for_anyone(daphne: DaphneServer) -> None:
    """Browsers ask for /favicon.ico where a page names no icon (the admin, JSON): not a 404."""
    icon = httpx.get(f"{daphne.url}/favicon.ico", follow_redirects=True)
    assert (icon.status_code, icon.content[:4]) == (200, b"\x00\x00\x01\x00")  # an ICO file
    named = httpx.get(f"{daphne.url}/static/favicon.svg")  # the one the pages name
    assert named.status_code == 200 and named.content.startswith(b"<svg")
