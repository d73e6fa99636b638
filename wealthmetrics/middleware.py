"""Django middleware of our own."""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

from metrics_app import counters
from metrics_app.admission.refusals import DATABASE_UNAVAILABLE

log = logging.getLogger(__name__)


class DatabaseOutage:
    """An unreachable database is the server's trouble, not the client's: any view that meets
    it answers 503 with Retry-After (JSON under /api/), never a 500 with a traceback."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        counters.problem("database_unavailable", log, "database unavailable (%s %s): %s",
                         request.method, request.path, exception)  # fmt: skip
        response = DATABASE_UNAVAILABLE.response()
        if not request.path.startswith("/api/"):  # a person's page: words, not JSON
            response = HttpResponse(f"Service unavailable: {DATABASE_UNAVAILABLE.message}.\n",
                                    status=503, content_type="text/plain")  # fmt: skip
            for name, value in DATABASE_UNAVAILABLE.headers:
                response[name] = value
        response._has_been_logged = True  # type: ignore[attr-defined]  # by us: Django would add an ERROR line
        return response


class PrivateAnswers:
    """What a person or a key reads is theirs: no browser or proxy keeps a copy
    (`Cache-Control: no-store`), so a shared computer's back button or a caching proxy shows
    nothing after a logout. Answers to requests without a session or a key stay cacheable."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Judged by what the request carries, not by looking the session up: that needs the
        # database, which may be away while this answer is an error page.
        if settings.SESSION_COOKIE_NAME in request.COOKIES or "Authorization" in request.headers:
            add_never_cache_headers(response)
        return response
