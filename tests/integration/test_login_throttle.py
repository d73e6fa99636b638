"""Failed logins are throttled per username and per address, before any password is hashed."""

from typing import Any

import pytest
from django.contrib.auth.base_user import AbstractBaseUser
from django.test import Client

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords checked against a stored hash (each check costs a PBKDF2 hash)."""
    checked: list[str] = []
    original = AbstractBaseUser.check_password

    def spy(user: AbstractBaseUser, raw_password: str | None) -> bool:
        checked.append(raw_password or "")
        return original(user, raw_password or "")

    monkeypatch.setattr(AbstractBaseUser, "check_password", spy)
    return checked


def attempt(client: Client, username: str, password: str, address: str = "10.0.0.1") -> Any:
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_the_right_password_is_refused_after_too_many_wrong_ones(
    client: Client, django_user_model: Any, hashed: list[str], settings: Any
) -> None:
    django_user_model.objects.create_user("operator", password="right-horse-battery")
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(client, "operator", f"wrong-{n}").status_code == 200  # the form again
    assert attempt(client, "operator", "wrong-again").status_code == 429  # the last one allowed
    hashed.clear()
    locked = attempt(client, "operator", "right-horse-battery")
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    text = locked.content.decode()
    assert "Too many failed logins" in text and "15 minutes" in text and "operator" in text
    assert hashed == []  # refused before hashing: a locked login costs no PBKDF2


def test_one_address_trying_many_usernames_is_throttled(
    client: Client, django_user_model: Any, settings: Any
) -> None:
    django_user_model.objects.create_user("someone", password="right-horse-battery")
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, f"guess-{n}", "wrong", address="10.0.0.2")
    assert attempt(client, "someone", "right-horse-battery", address="10.0.0.2").status_code == 429
    # another address, and a username nobody attacked, may still log in
    assert attempt(client, "someone", "right-horse-battery", address="10.0.0.3").status_code == 302


def test_a_good_login_clears_the_count(client: Client, django_user_model: Any, settings: Any) -> None:
    django_user_model.objects.create_user("careless", password="right-horse-battery")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(client, "careless", "typo")
    assert attempt(client, "careless", "right-horse-battery").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(client, "careless", "typo")
    assert attempt(client, "careless", "right-horse-battery").status_code == 302
