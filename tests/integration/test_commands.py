"""Management commands: create_api_key and first_run."""

from io import StringIO

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from metrics_app.models import ApiKey
from tests.support.asgi import AsgiClient
from tests.support.records import navigation

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)
def test_create_api_key_prints_the_key_alone_on_the_last_line(asgi: AsgiClient) -> None:
    out = StringIO()
    call_command("create_api_key", "robinhood-scraper", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    assert key.startswith("wm_") and " " not in key
    assert ApiKey.objects.get().name == "robinhood-scraper"
    body = orjson.dumps({"metrics": [navigation()]})
    response = asgi.post(
        "/api/metrics/", body, content_type="application/json", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 202


def test_first_run_creates_a_login_once(settings: object, tmp_path: object) -> None:
    settings.VAR_DIR = tmp_path  # type: ignore[attr-defined]
    out = StringIO()
    call_command("first_run", "--url", "http://127.0.0.1:8000/", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Dashboard: http://127.0.0.1:8000/analytics/"
    username, password = lines[1].split(": ", 1)[1].split("  ")[0].split(" / ")
    assert get_user_model().objects.get(username=username).check_password(password)
    call_command("first_run", stdout=StringIO())
    assert get_user_model().objects.count() == 1


def test_first_run_keeps_one_login_file_per_database(settings: object, tmp_path: object) -> None:
    settings.VAR_DIR = tmp_path  # type: ignore[attr-defined]
    other = tmp_path / "first-login-mysql-db.example-3306-wealthmetrics.txt"  # type: ignore[operator]
    other.write_text("admin from-the-other-database\n")
    out = StringIO()
    call_command("first_run", stdout=out)
    assert "from-the-other-database" not in out.getvalue()
    assert other.read_text() == "admin from-the-other-database\n"
    [mine] = [p for p in tmp_path.iterdir() if p != other]  # type: ignore[attr-defined]
    assert mine.name.startswith(f"first-login-{connection.vendor}-")
    assert mine.read_text().split()[1] in out.getvalue()
