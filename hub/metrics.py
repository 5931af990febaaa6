"""What ``GET /metrics`` reports: one hub's counters in Prometheus' text format.

The socket layer (:mod:`hub.server`) bumps plain integers on its hot paths
(a frame read, a frame queued) and prometheus_client turns them into the
exposition format only when scraped, so serving costs no metric locks. Each
hub has its own :class:`~prometheus_client.CollectorRegistry`: several hubs
in one process (tests, an embedding client) never share or clash.

Metrics (``fer_hub_`` prefix):

=====================================  =====================================================
``connections``                        gauge: open WebSocket connections
``rooms``                              gauge: rooms this hub holds (with ``--redis``: rooms
                                       with members on this hub)
``frames_received_total``              client frames read
``frames_sent_total``                  frames queued to clients, one per recipient
``refusals_total{code}``               error frames sent, by protocol error code
``http_refusals_total{reason}``        handshakes refused with 429/503, by reason
``slow_consumer_evictions_total``      clients closed for reading too slowly
``redis_round_trip_seconds``           histogram: one pipelined call batch to Redis and
                                       back (``--redis`` only)
=====================================  =====================================================
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "HubMetrics", "error_code"]

#: ``Content-Type`` of the ``/metrics`` answer: the text format generate_latest writes.
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4

#: Redis round trips run from well under a millisecond (local) to seconds (outage).
_ROUND_TRIP_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

# protocol.error_frame writes its keys in this order, and codes are plain
# identifiers (protocol.ErrorCode), so the code is found without parsing JSON.
_ERROR_PREFIX: Final = '{"type":"error","code":"'


def error_code(frame: str) -> str | None:
    """The code of an encoded error frame, or None if ``frame`` is another frame."""
    if not frame.startswith(_ERROR_PREFIX):
        return None
    start = len(_ERROR_PREFIX)
    return frame[start : frame.index('"', start)]


class HubMetrics(Collector):
    """Counters of one hub and their Prometheus exposition.

    ``connections`` and ``rooms`` are read when scraped, from callables the
    socket layer passes in. ``redis`` adds the round-trip histogram.
    """

    def __init__(
        self,
        connections: Callable[[], int],
        rooms: Callable[[], int],
        redis: bool = False,
    ) -> None:
        self._connections = connections
        self._rooms = rooms
        self.frames_received = 0
        self.frames_sent = 0
        self.slow_consumer_evictions = 0
        self.refusals: Counter[str] = Counter()
        self.http_refusals: Counter[str] = Counter()
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self.redis_round_trip: Histogram | None = None
        if redis:
            self.redis_round_trip = Histogram(
                "fer_hub_redis_round_trip_seconds",
                "One pipelined batch of calls to Redis and back, in seconds.",
                buckets=_ROUND_TRIP_BUCKETS,
                registry=self.registry,
            )

    def count_frame(self, frame: str, recipients: int) -> None:
        """Count ``frame`` sent to ``recipients`` clients as a refusal if it is an error."""
        code = error_code(frame)
        if code is not None:
            self.refusals[code] += recipients

    def observe_redis(self, seconds: float) -> None:
        if self.redis_round_trip is not None:
            self.redis_round_trip.observe(seconds)

    def exposition(self) -> bytes:
        """Everything in Prometheus' text format."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "fer_hub_connections", "Open WebSocket connections.", value=self._connections()
        )
        yield GaugeMetricFamily("fer_hub_rooms", "Rooms this hub holds.", value=self._rooms())
        yield CounterMetricFamily(
            "fer_hub_frames_received", "Frames read from clients.", value=self.frames_received
        )
        yield CounterMetricFamily(
            "fer_hub_frames_sent",
            "Frames queued to clients, one per recipient.",
            value=self.frames_sent,
        )
        yield _labelled(
            "fer_hub_refusals", "Error frames sent to clients, by code.", "code", self.refusals
        )
        yield _labelled(
            "fer_hub_http_refusals",
            "Handshakes refused with HTTP 429 or 503, by reason.",
            "reason",
            self.http_refusals,
        )
        yield CounterMetricFamily(
            "fer_hub_slow_consumer_evictions",
            "Clients closed because they read too slowly.",
            value=self.slow_consumer_evictions,
        )


def _labelled(name: str, documentation: str, label: str, counts: Counter[str]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family
