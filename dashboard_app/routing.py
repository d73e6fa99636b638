"""WebSocket routes. The /ws/metrics/ consumer is added by the streaming work (issue 3)."""

from django.urls import URLPattern, URLResolver

websocket_urlpatterns: list[URLPattern | URLResolver] = []
