"""The outbox's retry policy: throttling is waited out without counting as a failure, but
not for ever; errors back off (doubling, capped, with jitter) and end parked as failed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from bot.core.delivery import Deliverer, Posted
from bot.core.messages import Card, card_to_dict
from bot.outbox.sender import (
    MAX_ATTEMPTS,
    RecallError,
    Sender,
    backoff,
    outcome_known,
    throttle_delay,
    transient,
)
from storage import members
from storage import outbox as stored_outbox
from storage.db import Store
from storage.models import CardLocation, Member, OutboxMessage
from tests.support import about

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


class PlatformError(Exception):
    """Shaped like slack_sdk's and msrest's errors: the HTTP answer is on `.response`."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.response = Answer(status, headers or {})


class RefusingMessenger:
    """A platform that answers every send with the given error (a test double at the edge)."""

    platform = "console"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def reaches(self, member: Member) -> bool:
        return True

    async def send(self, member: Member, card: Card) -> Posted:
        raise self.error

    async def post(self, channel: str, card: Card) -> Posted:
        raise self.error

    async def update(self, location: CardLocation, card: Card) -> None:
        raise self.error

    async def reply_in_thread(self, location: CardLocation, card: Card) -> Posted:
        raise self.error


def write_to_outbox(store: Store, created: datetime) -> None:
    with store.session() as s:
        member = members.upsert_member(s, now=created, email="a@x.com", name="A")
        stored_outbox.enqueue(
            s,
            message=OutboxMessage(
                key="k1",
                member_id=member.id,
                card=card_to_dict(Card(title="Hi")),
                not_before=created,
                created_at=created,
            ),
        )


def row(store: Store) -> OutboxMessage:
    with store.session() as s:
        return s.exec(select(OutboxMessage)).one()


def test_throttle_delay_reads_retry_after() -> None:
    assert throttle_delay(PlatformError(429, {"Retry-After": "7"})) == 7.0
    assert throttle_delay(PlatformError(502)) == 2.0
    assert throttle_delay(PlatformError(403)) is None
    assert throttle_delay(ValueError("no response")) is None


async def test_throttling_is_retried_without_counting_then_given_up_after_a_day(
    sqlite_store: Store,
) -> None:
    write_to_outbox(sqlite_store, NOW)
    sender = Sender(
        sqlite_store,
        # Longer than a lane waits with its claim kept (HOLD_THROTTLED): given back.
        Deliverer(sqlite_store, [RefusingMessenger(PlatformError(429, {"Retry-After": "30"}))]),
        "test",
    )
    report = await sender.drain(NOW)
    assert (report.retried, row(sqlite_store).attempts) == (1, 0)
    assert about(row(sqlite_store).not_before, NOW + timedelta(seconds=30))
    later = NOW + timedelta(days=1, seconds=10)
    report = await sender.drain(later)
    assert report.failed == 1
    assert row(sqlite_store).status == "failed"
    assert "still throttled" in (row(sqlite_store).last_error or "")


async def test_errors_back_off_then_park(sqlite_store: Store) -> None:
    write_to_outbox(sqlite_store, NOW)
    sender = Sender(
        sqlite_store,
        Deliverer(sqlite_store, [RefusingMessenger(PlatformError(500))]),
        "test",
        jitter=lambda: 1.0,  # the top of the jitter range: the plain doubling
    )
    at = NOW
    for attempt in range(1, MAX_ATTEMPTS + 1):
        await sender.drain(at)
        message = row(sqlite_store)
        assert message.attempts == attempt
        assert about(message.not_before, at + timedelta(seconds=min(5 * 2**attempt, 900)))
        if attempt < MAX_ATTEMPTS:
            assert message.status == "pending"
            at = message.not_before
    assert row(sqlite_store).status == "failed"
    assert row(sqlite_store).parked_at is not None  # parked, tried again later


def test_backoff_doubles_to_a_quarter_hour_spread_by_jitter() -> None:
    assert [backoff(n, 1.0) for n in (1, 2, 7, 8, 30)] == [10, 20, 640, 900, 900]
    assert backoff(8, 0.0) == 450  # jitter spreads over the upper half


def test_a_send_may_have_landed_after_a_timeout_or_a_dropped_connection() -> None:
    assert not outcome_known(TimeoutError())
    assert not outcome_known(ConnectionResetError())
    assert not outcome_known(RecallError(PlatformError(500)))  # the check failed: unknown
    assert outcome_known(PlatformError(500))  # the platform answered: not posted
    assert outcome_known(LookupError("no Teams conversation"))  # nothing left the process


class SlowMessenger(RefusingMessenger):
    """A platform that takes `seconds` to accept each message (a test double at the edge)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(RuntimeError("unused"))
        self.seconds = seconds
        self.sent: list[str] = []

    async def send(self, member: Member, card: Card) -> Posted:
        await asyncio.sleep(self.seconds)
        self.sent.append(card.title)
        return Posted(channel="c", message_id=str(len(self.sent)))


async def test_the_lease_is_renewed_while_a_slow_send_is_in_flight(sqlite_store: Store) -> None:
    write_to_outbox(sqlite_store, NOW)
    slow = SlowMessenger(4.0)
    lease = timedelta(seconds=3)
    first = Sender(sqlite_store, Deliverer(sqlite_store, [slow]), "first", lease=lease)
    second = Sender(sqlite_store, Deliverer(sqlite_store, [slow]), "second", lease=lease)

    async def later() -> None:
        await asyncio.sleep(3.5)  # past the first lease: only a renewed one keeps it
        await second.drain(NOW + timedelta(seconds=3.5))

    await asyncio.gather(first.drain(NOW), later())
    assert slow.sent == ["Hi"]
    assert (row(sqlite_store).status, row(sqlite_store).claimed_by) == ("sent", "first")


def test_only_failures_that_may_pass_are_tried_again_after_parking() -> None:
    assert transient(TimeoutError())
    assert transient(PlatformError(503))
    assert transient(PlatformError(429))
    assert not transient(PlatformError(403))  # Teams: the app was removed
    assert not transient(PlatformError(200))  # Slack's ok: false, e.g. channel_not_found
