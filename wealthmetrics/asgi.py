"""ASGI entry point: HTTP through Django, WebSocket through Channels.

get_asgi_application() comes first so the app registry is ready before the routing imports
models (the order the Channels docs give).
"""

import os

from django.core.asgi import get_asgi_application

from wealthmetrics.env import bad_settings_in_one_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wealthmetrics.settings")
with bad_settings_in_one_line():
    django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.sessions import SessionMiddlewareStack
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from dashboard_app.routing import websocket_urlpatterns
from dashboard_app.security import IdentifiedSockets
from metrics_app.api.ingest_route import IngestRoute
from wealthmetrics import daphne_internals
from wealthmetrics.limits import RequestLimit

# Bodies are checked (size, key) before daphne reads them: wealthmetrics.daphne_internals.
daphne_internals.install()

application = ProtocolTypeRouter(
    {
        # daphne serves static files itself (the admin's, the dashboard's, Chart.js), so one
        # process is the whole web tier; put a CDN or nginx in front if you like.
        # POST /api/metrics/ is served in front of Django (metrics_app.api.ingest_route): the
        # machine endpoint does only what it needs.
        "http": ASGIStaticFilesHandler(IngestRoute(RequestLimit(django_asgi_app))),  # type: ignore[arg-type]
        # Origin, key and session are checked together, before the consumer: see
        # dashboard_app.security (Channels' validator ignores scheme and port).
        "websocket": SessionMiddlewareStack(IdentifiedSockets(URLRouter(websocket_urlpatterns))),
    }
)
