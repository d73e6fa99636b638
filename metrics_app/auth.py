"""Who may call the API: machines with a bearer key, people with a logged-in session."""

import functools
from collections.abc import Callable
from datetime import timedelta

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from metrics_app.models import ApiKey, hash_key

View = Callable[..., HttpResponse]

# last_used_at is a courtesy for the admin; writing it on every request would double the
# writes of a busy scraper, so it is refreshed at most once a minute.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def find_api_key(token: str | None) -> ApiKey | None:
    """The active key matching a plain token, or None."""
    if not token:
        return None
    api_key = ApiKey.objects.active().filter(key_hash=hash_key(token)).first()
    if api_key is None:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > _LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key


def unauthorized(message: str) -> JsonResponse:
    response = JsonResponse({"error": "unauthorized", "message": message}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="wealthmetrics"'
    return response


def require_api_key(view: View) -> View:
    """Machines only: a valid `Authorization: Bearer <key>`."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if find_api_key(bearer_token(request.headers.get("Authorization"))) is None:
            return unauthorized("send a valid API key as 'Authorization: Bearer <key>'")
        return view(request, *args, **kwargs)

    return wrapper


def is_reader(request: HttpRequest) -> bool:
    """People (logged-in, active) or machines (a valid key) may read."""
    user = request.user
    if user.is_authenticated and user.is_active:
        return True
    return find_api_key(bearer_token(request.headers.get("Authorization"))) is not None


def require_reader(view: View) -> View:
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not is_reader(request):
            return unauthorized("log in or send a valid API key")
        return view(request, *args, **kwargs)

    return wrapper
