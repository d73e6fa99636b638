"""wealthmetrics settings, read from the environment (see README "Configuration").

With no DATABASE_URL the service runs on SQLite under var/; with no REDIS_URL it uses an
in-process channel layer. Both defaults need no running service.
"""

from datetime import timedelta
from pathlib import Path

import dj_database_url

from wealthmetrics.env import BadSetting, env_bool, env_int, env_list, env_str, stored_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
# Where the embedded SQLite database and first-run login live.
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if env_bool("REQUIRE_SECRET_KEY", False):
        raise BadSetting("SECRET_KEY must be set")
    # Never a key shared between installations: one made for this one, kept under VAR_DIR
    # (mode 0600) so sessions survive restarts. Several machines need SECRET_KEY set alike.
    SECRET_KEY = stored_secret_key(VAR_DIR / "secret_key")

# Django's security settings, from variables of their own names (README "Running behind a
# proxy"): with them set for HTTPS, `manage.py check --deploy` reports nothing.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
_PROXY_SSL_HEADER = env_list("SECURE_PROXY_SSL_HEADER", [])
if _PROXY_SSL_HEADER and len(_PROXY_SSL_HEADER) != 2:
    raise BadSetting("SECURE_PROXY_SSL_HEADER must be HEADER,value, e.g. HTTP_X_FORWARDED_PROTO,https")
SECURE_PROXY_SSL_HEADER = (_PROXY_SSL_HEADER[0], _PROXY_SSL_HEADER[1]) if _PROXY_SSL_HEADER else None

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_beat",
    "axes",
    "metrics_app",
    "dashboard_app",
]

MIDDLEWARE = [
    "wealthmetrics.middleware.DatabaseOutage",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "wealthmetrics.middleware.PrivateAnswers",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
]

# Messages live in the session (the database), not in a cookie: the admin shows a new API key
# once through one, and a signed cookie is readable by whoever holds it.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# A strict Content-Security-Policy on every page (django-csp): scripts, styles and
# connections from this origin only ('self' covers its ws:/wss:), nothing inline, no frames.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "wealthmetrics.urls"
ASGI_APPLICATION = "wealthmetrics.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
_DEFAULT_SQLITE = f"sqlite:///{VAR_DIR / 'wealthmetrics.sqlite3'}"
_DATABASE_URL = env_str("DATABASE_URL", _DEFAULT_SQLITE)
if _DATABASE_URL.partition("://")[0] not in ("mysql", "mysql2", "sqlite"):
    raise BadSetting(
        f"DATABASE_URL must be mysql://user:password@host:3306/name (MySQL or MariaDB) or "
        f"sqlite:///path, got {_DATABASE_URL.partition('://')[0]}://…"
    )
try:
    DATABASES = {"default": dj_database_url.parse(_DATABASE_URL)}
except ValueError as exc:
    raise BadSetting(f"DATABASE_URL is not a valid database URL: {exc}") from None
# Under daphne every request runs in a thread of its own, so a connection kept after the
# request would be left behind with its thread: close each at the end of its request. The
# number open at once is bounded instead (METRICS_DB_CONNECTIONS, wealthmetrics.limits).
DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASE_ENGINE = DATABASES["default"]["ENGINE"]
if DATABASE_ENGINE.endswith("mysql"):
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "charset": "utf8mb4",
            # Fail fast when the server is unreachable: the API answers 503 rather than hanging.
            # Maintenance (commands, Celery tasks) gets longer timeouts: metrics_app.db.long_queries.
            "connect_timeout": 3,
            "read_timeout": env_int("METRICS_DB_TIMEOUT_S", 30, minimum=1, maximum=3600),
            "write_timeout": env_int("METRICS_DB_TIMEOUT_S", 30, minimum=1, maximum=3600),
            "init_command": "SET SESSION sql_mode='STRICT_TRANS_TABLES'",
        }
    )
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
elif DATABASE_ENGINE.endswith("sqlite3"):
    VAR_DIR.mkdir(exist_ok=True)
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # WAL lets the dashboard read while a scraper writes; the timeout rides out the
            # short write locks of concurrent processes (daphne, celery, the simulator).
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
        }
    )
    # A file, not :memory:, so a daphne started by the tests shares the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_wealthmetrics.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer --------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "max_connections": 1000}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = env_str("TIME_ZONE", "UTC")

# --- Auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Failed logins are throttled per username and per client address, before the password is
# hashed (django-axes' backend comes first): LOGIN_FAILURE_LIMIT failures lock both out for
# LOGIN_LOCKOUT_MINUTES, and each further try during the lock starts it again.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1, maximum=1000)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1, maximum=24 * 60))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "dashboard_app.views.locked_out"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/analytics/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS: list[Path | tuple[str, Path]] = [BASE_DIR / "static"]
# Chart.js comes from the npm registry (package.json); `make run` and `make test` install it.
if (BASE_DIR / "node_modules" / "chart.js" / "dist").is_dir():
    STATICFILES_DIRS.append(("vendor/chart.js", BASE_DIR / "node_modules" / "chart.js" / "dist"))
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- wealthmetrics knobs (README, "Configuration") --------------------------------------------
METRICS_BATCH_INTERVAL_MS = env_int("METRICS_BATCH_INTERVAL_MS", 1000, minimum=100, maximum=5000)
METRICS_MAX_BATCH_SIZE = env_int("METRICS_MAX_BATCH_SIZE", 100, minimum=1, maximum=10_000)
METRICS_MAX_CLIENTS = env_int("METRICS_MAX_CLIENTS", 1000, minimum=1, maximum=100_000)
# Sockets one key or one person may hold per process: a share, so that one credential cannot
# fill METRICS_MAX_CLIENTS and lock the others (the admin's own page) out.
METRICS_MAX_CLIENTS_PER_CREDENTIAL = env_int(
    "METRICS_MAX_CLIENTS_PER_CREDENTIAL", max(10, METRICS_MAX_CLIENTS // 10), minimum=1, maximum=100_000
)
# A socket whose unsent data passes this is a client that stopped reading: it is
# disconnected and counted (clients_dropped_slow) rather than allowed to hold memory.
METRICS_CLIENT_BUFFER_BYTES = env_int("METRICS_CLIENT_BUFFER_BYTES", 4 * 1024 * 1024, minimum=64 * 1024)
# And all sockets together at most this: each may hold METRICS_CLIENT_BUFFER_TOTAL_BYTES /
# METRICS_MAX_CLIENTS for 2 s if that is less (metrics_app.stream.sockets.buffer_bytes), and
# past this total those holding most that read nothing are dropped (wealthmetrics.daphne_internals.Held),
# so that a few hundred slow sockets cannot hold gigabytes.
METRICS_CLIENT_BUFFER_TOTAL_BYTES = env_int(
    "METRICS_CLIENT_BUFFER_TOTAL_BYTES", 64 * 1024 * 1024, minimum=1024 * 1024, maximum=2**40
)
METRICS_MAX_SUBSCRIPTIONS = env_int("METRICS_MAX_SUBSCRIPTIONS", 50, minimum=1, maximum=10_000)
# Names (sources and schedulers) an installation may hold, and that one API key may add in an
# hour: a record that would pass either is refused (metrics_app.admission.sources).
METRICS_MAX_SOURCES = env_int("METRICS_MAX_SOURCES", 10_000, minimum=1, maximum=1_000_000)
METRICS_NEW_SOURCES_PER_KEY = env_int("METRICS_NEW_SOURCES_PER_KEY", 1000, minimum=1, maximum=1_000_000)
# Field names one source may report (over the retention window): a record that would add one
# more is refused (metrics_app.admission.field_names).
METRICS_MAX_FIELDS_PER_SOURCE = env_int("METRICS_MAX_FIELDS_PER_SOURCE", 200, minimum=1, maximum=100_000)
# Records one resync ask brings at most, across its sources; a key's or a person's resyncs
# together bring at most this many every 10 s (metrics_app.stream.catchup). Past it: `truncated`.
METRICS_RESYNC_MAX_RECORDS = env_int("METRICS_RESYNC_MAX_RECORDS", 20_000, minimum=100, maximum=1_000_000)
METRICS_HEARTBEAT_INTERVAL_MS = env_int(
    "METRICS_HEARTBEAT_INTERVAL_MS", 30_000, minimum=1000, maximum=300_000
)
METRICS_FLUSH_INTERVAL_MS = env_int("METRICS_FLUSH_INTERVAL_MS", 5000, minimum=10, maximum=600_000)
METRICS_FLUSH_BATCH_SIZE = env_int("METRICS_FLUSH_BATCH_SIZE", 100, minimum=1, maximum=10_000)
METRICS_RETENTION_DAYS = env_int("METRICS_RETENTION_DAYS", 7, minimum=1, maximum=3650)
# A run with no record for this long ended unfinished (docs/api.md, "Runs").
METRICS_RUN_IDLE_S = env_int("METRICS_RUN_IDLE_S", 1800, minimum=10, maximum=7 * 86_400)
# Entity freshness (docs/api.md, "Entities"): written behind at most this late, and an entity is
# stale when not refreshed for 3 times its source's usual interval and at least METRICS_ENTITY_STALE_S.
METRICS_ENTITY_FLUSH_S = env_int("METRICS_ENTITY_FLUSH_S", 5, minimum=1, maximum=300)
METRICS_ENTITY_STALE_S = env_int("METRICS_ENTITY_STALE_S", 900, minimum=1, maximum=7 * 86_400)
METRICS_MAX_BODY_BYTES = env_int(
    "METRICS_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024, maximum=256 * 1024 * 1024
)
# Requests served at once per process, each with its own database connection; up to
# METRICS_MAX_WAITING_REQUESTS more wait their turn, beyond that the answer is 503 at once.
# With the live stream's and the collector's, a process holds at most this + 3 connections.
METRICS_DB_CONNECTIONS = env_int("METRICS_DB_CONNECTIONS", 8, minimum=1, maximum=1000)
# Group commit's writer threads per process (metrics_app.ingest.writer), each with its own
# database connection: the ingest API's whole share of connections, whatever the senders.
# Two, measured (README, "Watching the data"): one stores while the other builds its rows;
# with four, 32 senders' groups were a third the size and the writers waited on each other's
# rollup rows (fleet shape 23 % slower, big batches no faster).
METRICS_DB_WRITERS = env_int("METRICS_DB_WRITERS", 2, minimum=1, maximum=64)
METRICS_MAX_WAITING_REQUESTS = env_int("METRICS_MAX_WAITING_REQUESTS", 1000, minimum=0, maximum=100_000)
# How long an ingest request's records may wait for a writer before the answer is 503
# overloaded with Retry-After (and they are not stored): an overloaded process answers at once.
METRICS_INGEST_QUEUE_MS = env_int("METRICS_INGEST_QUEUE_MS", 500, minimum=10, maximum=60_000)
# How late the event loop may run before new ingest requests are refused (503 overloaded):
# past it, every request already waits that long before any of its own work.
METRICS_MAX_LOOP_LAG_MS = env_int("METRICS_MAX_LOOP_LAG_MS", 200, minimum=10, maximum=60_000)
# Read and write timeout of the maintenance connections (daily aggregation, rollup repairs,
# retention): a repair of a 10-million-record day runs for tens of seconds.
METRICS_MAINTENANCE_TIMEOUT_S = env_int("METRICS_MAINTENANCE_TIMEOUT_S", 3600, minimum=1, maximum=86_400)
# Slow clients (wealthmetrics.daphne_internals): a connection silent this long is closed, and a
# request's body must arrive within the read timeout once its headers are in (else 408).
METRICS_HTTP_IDLE_TIMEOUT_S = env_int("METRICS_HTTP_IDLE_TIMEOUT_S", 60, minimum=1, maximum=86_400)
METRICS_HTTP_READ_TIMEOUT_S = env_int("METRICS_HTTP_READ_TIMEOUT_S", 30, minimum=1, maximum=3600)
# The server integration (wealthmetrics.daphne_internals) checks daphne, Twisted, autobahn and
# Channels at start, and a process whose versions fail a check refuses to start. Set to 1 to run
# anyway without the parts that failed (the request guard, the fast socket writer, the idle
# timeout): /api/stats/ and /api/health/websocket then list them.
METRICS_ACCEPT_UNCHECKED_SERVER = env_bool("METRICS_ACCEPT_UNCHECKED_SERVER", False)
# Per-key request rates (requests a second per key and process, with a burst): off at 0.
METRICS_KEY_RATE_LIMIT = env_int("METRICS_KEY_RATE_LIMIT", 0, minimum=0, maximum=1_000_000)
METRICS_KEY_RATE_BURST = env_int("METRICS_KEY_RATE_BURST", 0, minimum=0, maximum=1_000_000)
# How long a process trusts its copy of the API keys: the bound on a revocation's delay.
METRICS_KEY_CACHE_SECONDS = env_int("METRICS_KEY_CACHE_SECONDS", 2, minimum=1, maximum=300)
# Records the in-process collector holds per record type while the database is away; beyond
# this the oldest are dropped and counted (collector.stats()["dropped"]).
METRICS_COLLECTOR_MAX_QUEUE = env_int("METRICS_COLLECTOR_MAX_QUEUE", 10_000, minimum=1)

# Alerts (docs/alerts.md): how often the one evaluator runs, the window a condition is measured
# over (it must hold for half of it to fire, and be gone for half of it to resolve), the silence
# after which a reporting source is no_data, and who is told.
# Whether this process takes part in the election (every daphne does, unless set to 0).
METRICS_ALERT_EVALUATOR = env_bool("METRICS_ALERT_EVALUATOR", True)
# Whether daphne runs Celery beat itself (wealthmetrics.serving, "What runs where"): by default
# only without REDIS_URL, where there is no broker for a separate beat and worker.
METRICS_EMBEDDED_BEAT = env_bool("METRICS_EMBEDDED_BEAT", not REDIS_URL)
METRICS_ALERT_EVAL_INTERVAL_S = env_int("METRICS_ALERT_EVAL_INTERVAL_S", 15, minimum=1, maximum=300)
METRICS_ALERT_WINDOW_S = env_int("METRICS_ALERT_WINDOW_S", 300, minimum=10, maximum=86_400)
METRICS_ALERT_NO_DATA_S = env_int("METRICS_ALERT_NO_DATA_S", 600, minimum=10, maximum=7 * 86_400)
METRICS_ALERT_WEBHOOK_URLS = env_list("METRICS_ALERT_WEBHOOK_URLS", [])
for _url in METRICS_ALERT_WEBHOOK_URLS:
    if not _url.startswith(("http://", "https://")) or len(_url) > 500:
        raise BadSetting(
            f"METRICS_ALERT_WEBHOOK_URLS must be http(s) URLs (at most 500 characters), got {_url!r}"
        )
METRICS_ALERT_EMAILS = env_list("METRICS_ALERT_EMAILS", [])
for _address in METRICS_ALERT_EMAILS:
    if "@" not in _address:
        raise BadSetting(f"METRICS_ALERT_EMAILS must be email addresses, got {_address!r}")
# Where people open the page: the `link` of a notification.
METRICS_PUBLIC_URL = env_str(
    "METRICS_PUBLIC_URL", f"http://{env_str('HOST', '127.0.0.1')}:{env_str('PORT', '8000')}"
).rstrip("/")

# The ingest API reads the body itself and answers 413 past METRICS_MAX_BODY_BYTES.
DATA_UPLOAD_MAX_MEMORY_SIZE = METRICS_MAX_BODY_BYTES

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "metrics_app": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO"), "propagate": False},
        "dashboard_app": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO"), "propagate": False},
        # The login throttle writes four INFO lines a login, with the whole user agent, burying
        # the useful lines; its lockouts are warnings, and stay.
        "axes": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
