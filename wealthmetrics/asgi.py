"""ASGI entry point: every request and socket through the door, then HTTP through Django and
WebSocket through Channels.

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
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from dashboard_app.routing import websocket_urlpatterns
from metrics_app.admission.asgi import Door
from metrics_app.api.ingest_route import IngestRoute
from wealthmetrics import serving
from wealthmetrics.limits import RequestLimit

# The one way in (metrics_app.admission): who may make each request, and with how much body,
# judged from its head; under daphne, before its body is read (wealthmetrics.daphne_internals).
application = Door(
    ProtocolTypeRouter(
        {
            # daphne serves static files itself (the admin's, the dashboard's, Chart.js), so one
            # process is the whole web tier; put a CDN or nginx in front if you like.
            # POST /api/metrics/ is served in front of Django (metrics_app.api.ingest_route): the
            # machine endpoint does only what it needs.
            "http": ASGIStaticFilesHandler(IngestRoute(RequestLimit(django_asgi_app))),  # type: ignore[arg-type]
            "websocket": URLRouter(websocket_urlpatterns),
        }
    )
)

with bad_settings_in_one_line():
    serving.start()  # under daphne: check and switch on the server integration, periodic work, shutdown
