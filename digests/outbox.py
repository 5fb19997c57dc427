"""The outbox sender: claims owed messages, delivers them through the adapters, records
the platform's message id; throttling is waited out, failures retried, then parked.

A claim is a lease (`claimed_until`): a sender that dies mid-send loses its lease and
another picks the message up. A batch is claimed at once but paced out slowly, so each
message's lease is renewed (if still ours) just before it goes to the platform. The one
window that cannot be closed: the platform accepted a message and the process died before
marking it sent; it is then sent again after the lease expires (at most once more, `LEASE`
later). Marking happens right after each send.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, or_, select

from bot.delivery import Deliverer, Posted
from bot.effects import Notify
from bot.messages import card_from_dict
from storage.db import Store
from storage.models import OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 5
MAX_THROTTLED = timedelta(days=1)
THROTTLE_STATUSES = {429, 412, 502, 503, 504}
# Per-conversation pace: Slack about 1 message/s per channel, Teams 7 per second.
MIN_INTERVAL = {"slack": 1.0, "teams": 1 / 7, "console": 0.0}


@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    keys: list[str] = field(default_factory=list)


def throttle_delay(error: BaseException) -> float | None:
    """Seconds to wait when the platform asked us to slow down (429 and friends)."""
    response: Any = getattr(error, "response", None)
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    if status not in THROTTLE_STATUSES:
        return None
    headers = getattr(response, "headers", None) or {}
    retry_after = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(float(retry_after), 0.0) if retry_after is not None else 2.0
    except (TypeError, ValueError):
        return 2.0


def claim(
    session: Session, *, now: datetime, owner: str, limit: int, lease: timedelta = LEASE
) -> list[OutboxMessage]:
    """Due messages, and messages whose sender's lease ran out, leased to `owner`."""
    rows = session.exec(
        select(OutboxMessage)
        .where(
            or_(
                (col(OutboxMessage.status) == OutboxStatus.pending)
                & (col(OutboxMessage.not_before) <= now),
                (col(OutboxMessage.status) == OutboxStatus.sending)
                & (col(OutboxMessage.claimed_until) < now),
            )
        )
        .order_by(col(OutboxMessage.not_before), col(OutboxMessage.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.status, row.claimed_by = OutboxStatus.sending.value, owner
        row.claimed_until = now + lease
        session.add(row)
    return list(rows)


class Sender:
    """Drains the outbox through a Deliverer (the same adapters the bot replies with)."""

    def __init__(
        self,
        store: Store,
        deliverer: Deliverer,
        owner: str,
        clock: Callable[[], float] = time.monotonic,
        lease: timedelta = LEASE,
    ) -> None:
        self.store = store
        self.lease = lease
        self.deliverer = deliverer
        self.owner = owner
        self.clock = clock
        self.last_sent: dict[str, float] = {}

    async def drain(self, now: datetime, limit: int = 200) -> SendReport:
        report = SendReport()
        started = self.clock()

        def current() -> datetime:
            """`now` moved on by the time this drain has taken (pacing makes it long)."""
            return now + timedelta(seconds=self.clock() - started)

        while True:
            batch = await asyncio.to_thread(self._claim, current(), limit)
            for message in batch:
                await self._send_one(message, now, report, current)
            if len(batch) < limit:
                return report

    def _claim(self, now: datetime, limit: int) -> list[OutboxMessage]:
        with self.store.session() as session:
            return claim(session, now=now, owner=self.owner, limit=limit, lease=self.lease)

    def _renew(self, message: OutboxMessage, now: datetime) -> bool:
        """Renew the lease on `message` just before it goes out; False when it is no longer
        ours (a batch's lease can run out while its messages wait their turn, and another
        sender may then have taken it)."""
        with self.store.session() as session:
            row = session.get(OutboxMessage, message.id, with_for_update=True)
            if row is None or not self._holds(row):
                return False
            row.claimed_until = now + self.lease
            session.add(row)
            return True

    async def _pace(self, key: str, platform_interval: float) -> None:
        last = self.last_sent.get(key)
        if last is not None:
            wait = platform_interval - (self.clock() - last)
            if wait > 0:
                await asyncio.sleep(wait)
        self.last_sent[key] = self.clock()

    def _answered(self, message: OutboxMessage) -> None:
        """The pace counts from the platform's answer, not from before the lease renewal,
        lookups and request: the request reached the platform before its answer came back,
        so two messages to one conversation arrive there at least the interval apart."""
        for platform in self.deliverer.messengers:
            self.last_sent[f"{platform}:{message.member_id or message.target}"] = self.clock()

    async def _send_one(
        self,
        message: OutboxMessage,
        now: datetime,
        report: SendReport,
        current: Callable[[], datetime],
    ) -> None:
        card = card_from_dict(message.card)
        try:
            for platform in self.deliverer.messengers:
                await self._pace(
                    f"{platform}:{message.member_id or message.target}",
                    MIN_INTERVAL.get(platform, 1.0),
                )
            if not await asyncio.to_thread(self._renew, message, current()):
                log.info("outbox %s: lease lost while waiting, left to its new sender", message.key)
                return
            if message.member_id is not None:
                posted = await self.deliverer.notify(
                    Notify(
                        message.member_id, card, lead_id=message.lead_id, purpose=message.purpose
                    )
                )
            else:
                one = await self.deliverer.post(message.target or "", card)
                posted = [one] if one else []
        except Exception as error:  # any platform error is recorded on the message
            self._answered(message)
            await asyncio.to_thread(self._failed, message, error, now, report)
            return
        self._answered(message)
        if not posted:
            await asyncio.to_thread(
                self._park,
                message,
                "recipient is not reachable on any platform (no Slack id, no Teams chat)",
                report,
            )
            return
        await asyncio.to_thread(self._sent, message, posted[0], now, report)

    def _holds(self, row: OutboxMessage) -> bool:
        """Whether this sender still holds `row`: after a send slower than the lease,
        another sender may have taken it over (or sent it), and must not be undone."""
        return row.status == OutboxStatus.sending and row.claimed_by == self.owner

    def _sent(
        self, message: OutboxMessage, where: tuple[str, Posted], now: datetime, report: SendReport
    ) -> None:
        with self.store.session() as session:
            row = session.get(OutboxMessage, message.id)
            if row is None:
                return
            row.status, row.sent_at, row.claimed_until = OutboxStatus.sent.value, now, None
            row.platform, row.message_id = where[0], where[1].message_id
            session.add(row)
        report.sent += 1
        report.keys.append(message.key)

    def _failed(
        self, message: OutboxMessage, error: BaseException, now: datetime, report: SendReport
    ) -> None:
        delay = throttle_delay(error)
        with self.store.session() as session:
            row = session.get(OutboxMessage, message.id)
            if row is None or not self._holds(row):
                return
            row.claimed_until, row.last_error = None, f"{type(error).__name__}: {error}"[:500]
            if delay is None:
                row.attempts += 1
                delay = min(5.0 * 2**row.attempts, 600.0)
            elif now - row.created_at > MAX_THROTTLED:
                # Throttled retries do not count as attempts, but they do not go on forever.
                row.attempts = MAX_ATTEMPTS
                row.last_error = f"still throttled after {MAX_THROTTLED}: {row.last_error}"
            if row.attempts >= MAX_ATTEMPTS:
                row.status = OutboxStatus.failed.value
                report.failed += 1
                log.error("outbox %s failed for good: %s", row.key, row.last_error)
            else:
                row.status = OutboxStatus.pending.value
                row.not_before = now + timedelta(seconds=delay)
                report.retried += 1
                log.warning("outbox %s: retry in %.1fs (%s)", row.key, delay, row.last_error)
            session.add(row)

    def _park(self, message: OutboxMessage, why: str, report: SendReport) -> None:
        with self.store.session() as session:
            row = session.get(OutboxMessage, message.id)
            if row is None or not self._holds(row):
                return
            row.status, row.last_error, row.claimed_until = OutboxStatus.failed.value, why, None
            session.add(row)
        report.failed += 1
        log.error("outbox %s parked: %s", message.key, why)


def retry(session: Session, *, ids: list[int] | None, now: datetime) -> int:
    """Put failed messages (all, or these ids) back in line; returns how many."""
    query = select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.failed)
    if ids:
        query = query.where(col(OutboxMessage.id).in_(ids))
    rows = session.exec(query).all()
    for row in rows:
        row.status, row.attempts, row.not_before = OutboxStatus.pending.value, 0, now
        session.add(row)
    return len(rows)
