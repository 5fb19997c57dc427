"""Liaison's Prometheus metrics, in registries of their own per server (so two servers in
one test process, or a console, never share counts); `GET /metrics` renders them. Counts
that add up across instances carry an `instance` label (host:pid, as outbox leases do)."""

from __future__ import annotations

import os
import socket

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
SLOW_ACK_SECONDS = 2.5  # Slack wants an answer within 3 s; Teams' invokes within 5 s
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def instance_name() -> str:
    """Who this process is, to its outbox leases and its metrics: host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class OutboxMetrics:
    """Sent, retried, throttled, parked, failed and recovered messages, and the outbox's
    depth and the age of its oldest waiting message."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        me = instance_name()

        def counter(name: str, text: str) -> Counter:
            family = Counter(name, text, ["instance"], registry=self.registry)
            child: Counter = family.labels(instance=me)
            return child

        self.sent = counter("liaison_outbox_sent", "Messages delivered to a platform")
        self.retried = counter(
            "liaison_outbox_retried",
            "Sends that failed and were put back in line for another attempt",
        )
        self.throttled = counter(
            "liaison_outbox_throttled",
            "Sends the platform asked to slow down (429 and friends), waited out",
        )
        self.parked = counter(
            "liaison_outbox_parked",
            "Messages parked as failed after their quick attempts (retried slowly after)",
        )
        self.failed = counter(
            "liaison_outbox_failed",
            "Messages failed for good: refused by the platform, or nowhere to send them",
        )
        self.recovered = counter("liaison_outbox_recovered", "Parked messages delivered after all")
        self.depth = Gauge(
            "liaison_outbox_depth",
            "Messages owed and not yet sent, by status",
            ["status"],
            registry=self.registry,
        )
        self.oldest = Gauge(
            "liaison_outbox_oldest_waiting_seconds",
            "How long the oldest message due and not yet sent has waited (0: none)",
            registry=self.registry,
        )

    def set_depth(self, by_status: dict[str, int], oldest_seconds: float = 0.0) -> None:
        for status in ("pending", "sending", "failed"):
            self.depth.labels(status=status).set(by_status.get(status, 0))
        self.oldest.set(oldest_seconds)

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)


class ServiceMetrics:
    """Requests per endpoint and platform, slow acks, the scheduler's ticks, digest builds
    and the SLA clocks open."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.instance = instance_name()
        self.requests = Counter(
            "liaison_http_requests",
            "Requests answered, by endpoint, platform and status",
            ["endpoint", "platform", "status", "instance"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "liaison_http_request_duration_seconds",
            "Time to answer a request, by endpoint and platform",
            ["endpoint", "platform"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.slow_acks = Counter(
            "liaison_slow_acks",
            f"Slack and Teams requests answered after more than {SLOW_ACK_SECONDS} s",
            ["platform", "instance"],
            registry=self.registry,
        )
        for platform in ("slack", "teams"):  # shown at 0 from the start, for alerts
            self.slow_acks.labels(platform, self.instance)
        self.tick = Histogram(
            "liaison_tick_duration_seconds",
            "Time one scheduler tick takes (SLA clocks, reminders, digests, owner lookups)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tick_lag = Gauge(
            "liaison_tick_lag_seconds",
            "How late the last tick started against its schedule",
            registry=self.registry,
        )
        self.digest_build = Histogram(
            "liaison_digest_build_seconds",
            "Time to build one weekly digest",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.clocks = Gauge(
            "liaison_sla_clocks_open",
            "SLA clocks running, by the stage they reached (running, reminded, breached, "
            "escalated)",
            ["stage"],
            registry=self.registry,
        )

    def answered(self, endpoint: str, platform: str, status: int, seconds: float) -> None:
        """One request answered after `seconds`."""
        self.requests.labels(endpoint, platform, str(status), self.instance).inc()
        self.latency.labels(endpoint, platform).observe(seconds)
        if platform in ("slack", "teams") and seconds > SLOW_ACK_SECONDS:
            self.slow_acks.labels(platform, self.instance).inc()

    def set_clocks(self, by_stage: dict[str, int]) -> None:
        for stage in ("running", "reminded", "breached", "escalated"):
            self.clocks.labels(stage=stage).set(by_stage.get(stage, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
