"""ASGI entry point: HTTP through Django, WebSocket through Channels.

get_asgi_application() comes first so the app registry is ready before the routing imports
models (the order the Channels docs give).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wealthmetrics.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from dashboard_app.routing import websocket_urlpatterns  # noqa: E402
from dashboard_app.security import BrowserOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        # daphne serves static files itself (the admin's, the dashboard's, Chart.js), so one
        # process is the whole web tier; put a CDN or nginx in front if you like.
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": BrowserOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
