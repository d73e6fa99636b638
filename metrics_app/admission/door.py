"""The door: who may make a request, judged from its head alone, before any body is read.

Every HTTP request and every WebSocket handshake is judged here, once, on its normalised
path (percent-escapes decoded, `#…` dropped, `//`, `.` and `..` resolved), and what is
served is that same path: no spelling of a path reaches a route judged under another name.

The checks, in order:
1. **key**: a Bearer token must be an active key (a cookie beside it counts for nothing);
   without one, the session cookie's person, or nobody;
2. **scope**: what the path needs (`Need`): a key that ingests, a reader (a key limited to
   sources must name one of them), a person, staff; and a body needs credentials, but for
   the login forms' few kilobytes;
3. **rate**: the key's rate limit (METRICS_KEY_RATE_LIMIT);
4. **size**: a declared body over the path's limit.

The request guard (wealthmetrics.daphne_internals) runs the same checks on a request's
head before daphne reads its body, but for the rate, whose token is taken once, when the
request is served. The ingest checks that need the body follow in metrics_app.admission.ingest.
"""

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlsplit

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DatabaseError
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host

from metrics_app import counters, db
from metrics_app.admission import refusals
from metrics_app.admission.keys import UNKNOWN, KeyInfo, bearer_token, keys, rates
from metrics_app.admission.people import people
from metrics_app.admission.refusals import Refusal
from metrics_app.records import WILDCARD

log = logging.getLogger(__name__)

INGEST_PATHS: Final = ("/api/metrics/", "/api/metrics")
SOCKET_PATH: Final = "/ws/metrics/"
# An anonymous body is a login form's (username, password, CSRF token): a few hundred bytes.
FORM_BODY_BYTES: Final = 8 * 1024


class Need(enum.Enum):
    """What a path needs of its caller."""

    NOTHING = "anyone; no body without credentials"
    FORM = "anyone; a stranger's body at most FORM_BODY_BYTES (the login and password forms)"
    PAGE = "anyone may look (Django sends strangers to the login); a body needs credentials"
    PERSON = "a logged-in person"
    READER = "a person, or a key that reads: a key limited to sources names one as `source`"
    READER_CUT = "a person, or a key that reads: a limited key's answer is cut to its sources"
    STAFF_OR_READER = "a staff person, or a key that reads (answers cut to its sources)"
    INGEST = "a key that ingests"


# Exact paths first, then prefixes, in order; anything else is a PAGE.
EXACT: Final = {
    **dict.fromkeys(INGEST_PATHS, Need.INGEST),
    "/api/health/websocket": Need.NOTHING,  # readers see which sources are watched, cut to theirs
    "/api/schema/": Need.NOTHING,
    "/api/stats/": Need.READER_CUT,
    "/api/metrics/summary/": Need.READER_CUT,
    "/api/alerts/silences/": Need.PERSON,
    "/metrics": Need.STAFF_OR_READER,
    SOCKET_PATH: Need.READER_CUT,  # the live stream, cut to a key's sources (socket_checked)
    "/admin/login/": Need.FORM,
}
STATIC_PREFIX: Final = f"/{settings.STATIC_URL.strip('/')}/"
PREFIXES: Final = (
    ("/api/", Need.READER),
    ("/accounts/", Need.FORM),
    (STATIC_PREFIX, Need.NOTHING),
)


def need_of(path: str) -> Need:
    if (need := EXACT.get(path)) is not None:
        return need
    return next((need for prefix, need in PREFIXES if path.startswith(prefix)), Need.PAGE)


def normalised(target: bytes) -> str | None:
    """The path a request target names, in one spelling, or None if it names none (bad UTF-8
    in an escape, not a path). Dot segments are removed as RFC 3986 says, and empty segments
    too: `/api/%6detrics//./` is `/api/metrics/`."""
    raw = target.split(b"#", 1)[0].split(b"?", 1)[0]
    if raw.startswith((b"http://", b"https://")):  # the absolute form, as sent to a proxy
        raw = urlsplit(raw).path or b"/"
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.startswith("/") or "\x00" in text:
        return None
    segments: list[str] = []
    parts = text.split("/")[1:]
    for part in parts:
        if part == "..":
            if segments:
                segments.pop()
        elif part not in ("", "."):
            segments.append(part)
    path = "/" + "/".join(segments)
    if segments and parts[-1] in ("", ".", ".."):
        path += "/"
    return path


@dataclass(frozen=True)
class Head:
    """What the door may look at: the request line and the headers, never the body."""

    kind: str  # "http" or "websocket"
    method: str
    path: str | None  # normalised; None when the target names no path
    query: str
    headers: Mapping[bytes, bytes]  # lower-case names, the first value of each
    scheme: str = "http"

    @classmethod
    def of(
        cls, kind: str, method: str, target: bytes, headers: Mapping[bytes, bytes], scheme: str = "http"
    ) -> "Head":
        query = target.split(b"?", 1)[1].split(b"#", 1)[0] if b"?" in target else b""
        return cls(kind, method.upper(), normalised(target), query.decode("latin-1"), headers, scheme)

    @classmethod
    def of_scope(cls, scope: Mapping[str, Any]) -> "Head":
        # As the client sent it; without raw_path, the decoded path escaped again (decoding it a
        # second time would read "%2541" as "A").
        target = scope.get("raw_path") or quote(scope["path"], safe="/").encode()
        headers: dict[bytes, bytes] = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(name.lower(), value)
        kind = scope["type"]
        method = scope.get("method", "GET")
        head = cls.of(kind, method, target, headers, scope.get("scheme", "http"))
        query = scope.get("query_string", b"")
        return cls(kind, head.method, head.path, query.decode("latin-1"), headers, head.scheme)

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return value.decode("latin-1") if value is not None else None

    @property
    def need(self) -> Need:
        return need_of(self.path or "")

    @property
    def length(self) -> int | None:
        """The declared Content-Length (None: none declared, or not a number)."""
        declared = self.header(b"content-length")
        return int(declared) if declared is not None and declared.isascii() and declared.isdigit() else None

    @property
    def has_body(self) -> bool:
        chunked = "chunked" in (self.header(b"transfer-encoding") or "").lower()
        return chunked or bool(self.length)

    def param(self, name: str) -> str | None:
        """A query parameter's last value, as Django's QueryDict.get reads it."""
        values = [value for key, value in parse_qsl(self.query, keep_blank_values=True) if key == name]
        return values[-1] if values else None

    @property
    def session_key(self) -> str | None:
        cookie = self.header(b"cookie")
        return parse_cookie(cookie).get(settings.SESSION_COOKIE_NAME) if cookie else None


@dataclass(frozen=True)
class Caller:
    """Who makes a request: a key, a person (by session), or nobody."""

    key: KeyInfo | None = None
    user: AbstractBaseUser | None = None
    session_key: str | None = None

    @property
    def known(self) -> bool:
        return self.key is not None or self.user is not None

    @property
    def reads(self) -> bool:
        return self.user is not None or (self.key is not None and self.key.reads)

    @property
    def sources(self) -> frozenset[str] | None:
        """The sources it is limited to; None: every one (people, unlimited keys)."""
        return self.key.sources if self.key is not None else None

    def covers(self, name: str | None) -> bool:
        """May it see (or write for) this source or scheduler? None: every one."""
        return self.key is None or self.key.covers(name)

    @property
    def client(self) -> str:
        """Who, for per-client bounds: the person, the key, or nobody."""
        if self.user is not None:
            return f"user:{self.user.pk}"
        return f"key:{self.key.id}" if self.key is not None else "nobody"


NOBODY: Final = Caller()


# --- 1. key ---------------------------------------------------------------------------------------


def identify_now(head: Head) -> Caller | Refusal | None:
    """The caller if the process's copies can tell without the database, else None."""
    token = bearer_token(head.header(b"authorization"))
    if token is not None:
        key = keys.peek(token)
        return Caller(key=key) if key is not UNKNOWN else None
    session_key = head.session_key
    if not session_key or not _asks_who(head):
        return NOBODY
    user = people.peek(session_key)
    if user is UNKNOWN:
        return None
    return Caller(user=user, session_key=session_key) if user is not None else NOBODY


async def identify(head: Head) -> Caller | Refusal:
    """The caller, from the copies or the database; a refusal for a key that is not one, or
    when the database cannot say."""
    known = identify_now(head)
    if known is not None:
        return known
    try:
        token = bearer_token(head.header(b"authorization"))
        if token is not None:
            key = await db.run(keys.lookup, token)
            return Caller(key=key) if key is not None else refusals.INVALID_KEY
        session_key = head.session_key or ""
        user = await people.lookup(session_key)
    except DatabaseError as exc:
        counters.problem("database_unavailable", log, "database unavailable (the door): %s", exc)
        return refusals.DATABASE_UNAVAILABLE
    return Caller(user=user, session_key=session_key) if user is not None else NOBODY


def _asks_who(head: Head) -> bool:
    """Whether the person behind a session cookie matters here: not for a page or a form
    without a body (Django's own authentication serves those), nor for static files, so
    made-up cookies sent there cost no lookup."""
    if head.has_body or head.kind == "websocket":
        return True
    return head.need not in (Need.PAGE, Need.FORM) and not (head.path or "").startswith(STATIC_PREFIX)


# --- 2. scope, 3. rate, 4. size -------------------------------------------------------------------


def scope(head: Head, caller: Caller) -> Refusal | None:
    need = head.need
    key, user = caller.key, caller.user
    if need is Need.INGEST:
        if key is None:
            return refusals.NEEDS_KEY
        if not key.ingests:
            return refusals.READ_ONLY_KEY
    elif need in (Need.READER, Need.READER_CUT, Need.STAFF_OR_READER):
        if not caller.known:
            return refusals.NEEDS_STAFF_OR_KEY if need is Need.STAFF_OR_READER else refusals.NEEDS_READER
        if key is not None and not key.reads:
            return refusals.INGEST_ONLY_KEY
        if need is Need.STAFF_OR_READER and user is not None and not getattr(user, "is_staff", False):
            return refusals.NOT_STAFF
        if need is Need.READER and key is not None and key.sources is not None:
            source = head.param("source") or None
            if not key.covers(None if source == WILDCARD else source):
                return refusals.outside_sources(key.sources)
    elif need is Need.PERSON and user is None:
        return refusals.NEEDS_PERSON
    if head.has_body and not caller.known and need is not Need.FORM:
        return refusals.NEEDS_CREDENTIALS_FOR_BODY
    return None


def rate(head: Head, caller: Caller) -> Refusal | None:
    if caller.key is not None and (wait := rates.wait(caller.key.id)):
        return refusals.rate_limited(wait)
    return None


def body_limit(head: Head, caller: Caller) -> int:
    """The most body bytes this caller may send to this path."""
    if head.need is Need.FORM and not caller.known:
        return FORM_BODY_BYTES
    return int(settings.METRICS_MAX_BODY_BYTES)


def size(head: Head, caller: Caller) -> Refusal | None:
    length, limit = head.length, body_limit(head, caller)
    if length is not None and length > limit:
        return refusals.too_large(f"body is {length} bytes; the limit is {limit}")
    return None


Check = Callable[[Head, Caller], Refusal | None]
CHECKS: Final[tuple[Check, ...]] = (scope, rate, size)
# Before daphne reads a body: the same, but for the rate (its token is taken when the request is served).
BEFORE_BODY: Final[tuple[Check, ...]] = (scope, size)


def checked(head: Head, caller: Caller | Refusal, checks: tuple[Check, ...] = CHECKS) -> Caller | Refusal:
    if isinstance(caller, Refusal):
        return caller
    if head.path is None:
        return refusals.invalid_request("the request target is not a path", "path")
    for check in checks:
        if (refusal := check(head, caller)) is not None:
            return refusal
    return caller


async def judge(head: Head) -> Caller | Refusal:
    """The door's verdict on a request: its caller, or the refusal to answer."""
    if head.kind == "websocket":
        return socket_checked(head, await identify(head))
    return checked(head, await identify(head))


# --- sockets --------------------------------------------------------------------------------------


def socket_checked(head: Head, caller: Caller | Refusal, take_rate: bool = True) -> Caller | Refusal:
    """A handshake to /ws/metrics/: without an Origin header it is not from a browser and must
    carry a key that reads; with one it is, and the Origin must be this site's own (scheme,
    host and port, as the browser reached us) or in CSRF_TRUSTED_ORIGINS, and the caller a
    person (or a key that reads)."""
    if isinstance(caller, Refusal):
        return caller
    if head.path != SOCKET_PATH:
        return refusals.NOT_FOUND
    origin = head.header(b"origin")
    if origin is None and caller.key is None:
        return refusals.NEEDS_KEY
    if origin is not None and not is_own_origin(origin, head):
        return refusals.FOREIGN_ORIGIN
    if not caller.reads:
        return refusals.INGEST_ONLY_KEY if caller.key is not None else refusals.NEEDS_READER
    return (rate(head, caller) if take_rate else None) or caller


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _proxied_tls(head: Head) -> bool:
    """SECURE_PROXY_SSL_HEADER (("HTTP_X_FORWARDED_PROTO", "https")) names a header the
    proxy in front sets to say the client reached it over TLS."""
    if not settings.SECURE_PROXY_SSL_HEADER:
        return False
    meta_name, expected = settings.SECURE_PROXY_SSL_HEADER
    name = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode()
    return (head.header(name) or "").split(",")[0].strip() == expected


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, with the scheme's default port filled in."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname.lower(), port


def is_own_origin(origin: str, head: Head) -> bool:
    """The page that opens the socket was served by us: same scheme, host and port as the
    handshake reached (Host header; ws → http, wss → https, or https as a TLS proxy says in
    SECURE_PROXY_SSL_HEADER, as Django's CSRF check reads it), or a trusted origin."""
    claimed = _origin(origin)
    if claimed is None:
        return False
    if any(_origin(trusted) == claimed for trusted in settings.CSRF_TRUSTED_ORIGINS):
        return True
    scheme = "https" if head.scheme in ("wss", "https") or _proxied_tls(head) else "http"
    host = head.header(b"host") or ""
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    return claimed == _origin(f"{scheme}://{host}")
