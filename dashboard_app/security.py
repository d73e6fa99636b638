"""Who may open /ws/metrics/: browsers from our own origin, and machines with a key."""

from typing import Any

from channels.security.websocket import AllowedHostsOriginValidator


class BrowserOriginValidator:
    """Channels' AllowedHostsOriginValidator refuses a handshake without an Origin header.
    Browsers always send one, so a missing Origin means a non-browser client: let it through
    when it carries `Authorization: Bearer …` (the consumer checks the key). A foreign Origin
    is refused whatever credentials come with it, so a logged-in session cannot be borrowed
    by another site."""

    def __init__(self, application: Any) -> None:
        self.application = application
        self.validated = AllowedHostsOriginValidator(application)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers", []))
        if b"origin" not in headers and headers.get(b"authorization", b"").lower().startswith(b"bearer "):
            return await self.application(scope, receive, send)
        return await self.validated(scope, receive, send)
