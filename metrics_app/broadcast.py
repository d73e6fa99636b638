"""Pushing stored records to browsers: the one helper every sender calls after storing.

`store_metrics(...)` then `broadcast_metrics(...)`: HTTP ingest and the in-process collector
both end here, so a record reaches the live page the same way whichever path stored it.
"""

import logging
from collections.abc import Sequence

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from metrics_app import counters
from metrics_app.schema import Metric, to_wire

log = logging.getLogger(__name__)

GROUP = "metrics"


def broadcast_metrics(records: Sequence[Metric]) -> None:
    """Publish stored records once to every process. Never raises: the records are stored,
    and a broadcast failure (Redis away) must not turn a stored batch into an error."""
    layer = get_channel_layer()
    if layer is None or not records:
        return
    message = {"type": "metrics.stored", "metrics": [to_wire(r) for r in records]}
    try:
        async_to_sync(layer.group_send)(GROUP, message)
    except Exception:
        counters.incr("broadcast_failures")
        log.exception("broadcast of %d stored records failed", len(records))
    else:
        counters.incr("records_broadcast", len(records))
