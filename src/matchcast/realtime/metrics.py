"""Prometheus metrics, one registry per app (two apps in one test process do not clash)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _ConnectionsCollector(Collector):
    """Counts open connections by room kind and role at scrape time, so the hot path counts nothing."""

    def __init__(self, count: Callable[[], Iterable[tuple[str, str, int, int]]]) -> None:
        self._count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        connections = GaugeMetricFamily(
            "matchcast_connections", "Open WebSocket connections", labels=["room_kind", "role"]
        )
        depth = GaugeMetricFamily(
            "matchcast_outbound_queue_depth", "Frames queued for sending, all connections", labels=["room_kind"]
        )
        totals: dict[str, int] = {}
        for kind, role, count, pending in self._count():
            connections.add_metric([kind, role], count)
            totals[kind] = totals.get(kind, 0) + pending
        for kind, pending in totals.items():
            depth.add_metric([kind], pending)
        yield connections
        yield depth


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_in = Counter("matchcast_frames_in", "Frames received from clients", registry=r)
        self.frames_out = Counter("matchcast_frames_out", "Frames queued to clients", registry=r)
        self.errors = Counter("matchcast_errors", "Error frames sent, by code", ["code"], registry=r)
        self.closes = Counter("matchcast_closes", "Connections closed, by close code", ["code"], registry=r)
        self.joins = Counter(
            "matchcast_joins", "Sockets welcomed into a room, by room kind and role", ["room_kind", "role"], registry=r
        )
        self.publish_latency = Histogram(
            "matchcast_publish_to_send_seconds",
            "From publishing an event to handing it to every local socket of its room",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.broker_reconnects = Counter(
            "matchcast_broker_reconnects", "Times the broadcast subscription was re-established", registry=r
        )

    def watch_connections(self, count: Callable[[], Iterable[tuple[str, str, int, int]]]) -> None:
        self.registry.register(_ConnectionsCollector(count))

    def render(self) -> bytes:
        return generate_latest(self.registry)
