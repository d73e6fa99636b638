"""What the server this process runs under provides, as its integration reports it at start.

wealthmetrics.serving fills this in under daphne (wealthmetrics.daphne_internals says what
checked out); under any other server (or in a management command, or a test's in-process
client) everything stays off and the generic paths are used. /api/stats/ and
/api/health/websocket show it, so an operator can see whether the fast paths are in use.
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ServerFeatures:
    name: str = ""  # "daphne", or "" when no integration has reported
    serving: bool = False  # a long-lived event loop runs the application
    request_guard: bool = False  # bodies are checked before the server reads them
    fast_sockets: bool = False  # sockets are written by a server-specific writer
    idle_timeout: bool = False  # idle HTTP connections are closed after METRICS_HTTP_IDLE_TIMEOUT_S
    # Parts whose start-up check failed, running without them as METRICS_ACCEPT_UNCHECKED_SERVER allows
    unchecked: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.name or None,
            "requestGuard": self.request_guard,
            "fastSockets": self.fast_sockets,
            "idleTimeout": self.idle_timeout,
            "uncheckedServerParts": self.unchecked,
        }


features = ServerFeatures()
