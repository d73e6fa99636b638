from django.urls import URLPattern, URLResolver, path

from dashboard_app.consumers import MetricsConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("ws/metrics/", MetricsConsumer.as_asgi()),
]
