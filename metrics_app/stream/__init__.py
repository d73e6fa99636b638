"""Pushing stored records to browsers: the one helper every sender calls after storing.

`store_metrics(...)` then `broadcast_metrics(...)`: HTTP ingest and the in-process collector
both end here, so a record reaches the live page the same way whichever path stored it. The
batch is serialised once here and published once (metrics_app.stream.bus); each process's hub
(metrics_app.stream.hub) fans it out to its own sockets.
"""

import logging
from collections import Counter
from collections.abc import Sequence

from metrics_app import counters
from metrics_app.records import Metric, channel_of
from metrics_app.stream.bus import batch_payload, get_bus

log = logging.getLogger(__name__)


def broadcast_metrics(records: Sequence[Metric], ids: Sequence[int]) -> None:
    """Publish stored records. Never raises: they are stored, and a broadcast failure (Redis
    away) must not turn a stored batch into an error. Browsers resync from the database when
    they see the gap in sequence numbers this leaves."""
    if not records:
        return
    counts = Counter(channel_of(record) for record in records)
    try:
        get_bus().publish(dict(counts), batch_payload(records, ids))
    except Exception:
        counters.incr("broadcast_failures")
        log.exception("broadcast of %d stored records failed", len(records))
