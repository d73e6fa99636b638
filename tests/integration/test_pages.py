"""Login and the pages behind it (docs/api.md, "Who may call what")."""

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_login_page_renders(client: Client) -> None:
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b'name="username"' in response.content


def test_analytics_needs_login(client: Client) -> None:
    response = client.get("/analytics/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_logging_in_leads_to_analytics(client: Client, django_user_model: Any) -> None:
    django_user_model.objects.create_user("amy", password="pw-123456!")
    response = client.post("/accounts/login/", {"username": "amy", "password": "pw-123456!"})
    assert response.status_code == 302
    assert response["Location"] == "/analytics/"
    assert client.get("/analytics/").status_code == 200


def test_admin_needs_staff(client: Client, django_user_model: Any) -> None:
    client.force_login(django_user_model.objects.create_user("amy", password="pw-123456!"))
    assert client.get("/admin/").status_code == 302
