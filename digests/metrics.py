"""The outbox's Prometheus counters, one registry per sender (so two servers in one test
process, or a console, never share counts); `GET /metrics` renders it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class OutboxMetrics:
    """Sent, retried, throttled, parked, failed and recovered messages, and the outbox's
    depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.sent = Counter(
            "liaison_outbox_sent", "Messages delivered to a platform", registry=self.registry
        )
        self.retried = Counter(
            "liaison_outbox_retried",
            "Sends that failed and were put back in line for another attempt",
            registry=self.registry,
        )
        self.throttled = Counter(
            "liaison_outbox_throttled",
            "Sends the platform asked to slow down (429 and friends), waited out",
            registry=self.registry,
        )
        self.parked = Counter(
            "liaison_outbox_parked",
            "Messages parked as failed after their quick attempts (retried slowly after)",
            registry=self.registry,
        )
        self.failed = Counter(
            "liaison_outbox_failed",
            "Messages failed for good: refused by the platform, or nowhere to send them",
            registry=self.registry,
        )
        self.recovered = Counter(
            "liaison_outbox_recovered",
            "Parked messages delivered after all",
            registry=self.registry,
        )
        self.depth = Gauge(
            "liaison_outbox_depth",
            "Messages owed and not yet sent, by status",
            ["status"],
            registry=self.registry,
        )

    def set_depth(self, by_status: dict[str, int]) -> None:
        for status in ("pending", "sending", "failed"):
            self.depth.labels(status=status).set(by_status.get(status, 0))

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)
