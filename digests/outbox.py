"""The outbox sender: claims owed messages, delivers them through the adapters, records
the platform's message id; throttling is waited out, failures retried, then parked.

Conversations are sent side by side, each in its own lane at its platform's pace (Slack
about 1 message/s per channel, Teams 7/s per conversation), so a rep with a hundred new
leads does not hold up everyone else's messages.

A claim is a lease (`claimed_until`): a sender that dies mid-send loses its lease and
another picks the message up. A lane takes at most as many messages as it can send well
within the lease, and renews each message's lease (if still ours) just before it goes to
the platform. The one window that cannot be closed: the platform accepted a message and
the process died before marking it sent; it is then sent again after the lease expires (at
most once more, `LEASE` later). Marking happens right after each send.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from weakref import WeakKeyDictionary

from sqlmodel import Session, col, func, or_, select

from bot import rendering
from bot.delivery import Deliverer, Parts, Posted
from bot.effects import Notify
from bot.messages import Card, card_from_dict, report_from_dict
from digests.business_time import Company
from storage.db import Store
from storage.models import CardLocation, OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 5
MAX_THROTTLED = timedelta(days=1)
THROTTLE_STATUSES = {429, 412, 502, 503, 504}
# Per-conversation pace: Slack about 1 message/s per channel, Teams 7 per second.
MIN_INTERVAL = {"slack": 1.0, "teams": 1 / 7, "console": 0.0}
SLOWEST = max(MIN_INTERVAL.values())
IN_FLIGHT = 8  # requests to the platforms at once, across all lanes
POLL = 1.0  # while lanes run, look for newly due messages this often (seconds)


@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    keys: list[str] = field(default_factory=list)


def lane_of(message: OutboxMessage) -> str:
    """The conversation a message goes to: a member's DM (or thread), or a channel; an
    update in place has a lane of its own, so a click's card never waits behind new ones."""
    if message.location_id is not None:
        return f"card:{message.location_id}"
    if message.member_id is not None:
        return f"member:{message.member_id}"
    return f"target:{message.target}"


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


def _claimable(now: datetime) -> Any:
    """Due and pending, or leased by a sender whose lease ran out."""
    return or_(
        (col(OutboxMessage.status) == OutboxStatus.pending)
        & (col(OutboxMessage.not_before) <= now),
        (col(OutboxMessage.status) == OutboxStatus.sending)
        & (col(OutboxMessage.claimed_until) < now),
    )


def due_count(session: Session, *, now: datetime) -> int:
    """How many messages a sender could claim at `now`."""
    return session.exec(
        select(func.count()).select_from(OutboxMessage).where(_claimable(now))
    ).one()


def _held(now: datetime) -> Any:
    return (col(OutboxMessage.status) == OutboxStatus.pending) & (
        col(OutboxMessage.not_before) > now
    )


def held_count(session: Session, *, now: datetime) -> int:
    """How many messages wait for their recipients' working hours (or a retry)."""
    return session.exec(select(func.count()).select_from(OutboxMessage).where(_held(now))).one()


def held_since(session: Session, *, now: datetime, after_id: int) -> list[OutboxMessage]:
    """Messages owed after `after_id` that wait beyond `now`, oldest first."""
    return list(
        session.exec(
            select(OutboxMessage)
            .where(_held(now), col(OutboxMessage.id) > after_id)
            .order_by(col(OutboxMessage.id))
        ).all()
    )


def claim(
    session: Session,
    *,
    now: datetime,
    owner: str,
    limit: int,
    lease: timedelta = LEASE,
    busy: frozenset[str] = frozenset(),
    per_lane: int | None = None,
) -> list[OutboxMessage]:
    """Due messages, and messages whose sender's lease ran out, leased to `owner`: none
    for the conversations in `busy` (this sender is already sending to them), and at most
    `per_lane` per conversation, so a lane's last message still goes out within its lease."""
    members = [int(k.partition(":")[2]) for k in busy if k.startswith("member:")]
    targets = [k.partition(":")[2] for k in busy if k.startswith("target:")]
    query = select(OutboxMessage).where(_claimable(now))
    if members:
        member = col(OutboxMessage.member_id)
        query = query.where(or_(member.is_(None), member.not_in(members)))
    if targets:
        target = col(OutboxMessage.target)
        query = query.where(or_(target.is_(None), target.not_in(targets)))
    rows = session.exec(
        query.order_by(col(OutboxMessage.not_before), col(OutboxMessage.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    taken: list[OutboxMessage] = []
    per: dict[str, int] = {}
    for row in rows:
        lane = lane_of(row)
        if per_lane is not None and per.get(lane, 0) >= per_lane:
            continue  # left pending (its lock ends with this transaction)
        per[lane] = per.get(lane, 0) + 1
        row.status, row.claimed_by = OutboxStatus.sending.value, owner
        row.claimed_until = now + lease
        session.add(row)
        taken.append(row)
    return taken


class Sender:
    """Drains the outbox through a Deliverer (the same adapters the bot replies with)."""

    def __init__(
        self,
        store: Store,
        deliverer: Deliverer,
        owner: str,
        clock: Callable[[], float] = time.monotonic,
        lease: timedelta = LEASE,
        company: Company | None = None,
    ) -> None:
        self.store = store
        self.company = company or Company()  # business time on cards rendered when sent
        self.lease = lease
        self.deliverer = deliverer
        self.owner = owner
        self.clock = clock
        self.last_sent: dict[str, float] = {}
        self.busy: set[str] = set()
        self._claiming = threading.Lock()  # drains may run in several threads (console)
        # One limit per event loop (the console drains from a thread's loop too).
        self._in_flight: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            WeakKeyDictionary()
        )
        self.per_lane = max(1, int(lease.total_seconds() / 2 / SLOWEST)) if SLOWEST else None

    async def drain(
        self, now: datetime, limit: int = 200, report: SendReport | None = None
    ) -> SendReport:
        """Send everything due at `now` (and what falls due meanwhile), conversations side
        by side; returns once every lane it started has finished. Pass `report` to watch
        progress while it runs."""
        report = report if report is not None else SendReport()
        started = self.clock()
        lanes: set[asyncio.Task[None]] = set()

        def current() -> datetime:
            """`now` moved on by the time this drain has taken (pacing makes it long)."""
            return now + timedelta(seconds=self.clock() - started)

        while True:
            claimed = await asyncio.to_thread(self._claim, current(), limit)
            for lane, messages in claimed.items():
                lanes.add(asyncio.create_task(self._lane(lane, messages, report, current)))
            if not lanes:
                return report
            _, lanes = await asyncio.wait(lanes, timeout=POLL, return_when=asyncio.FIRST_COMPLETED)

    def _claim(self, now: datetime, limit: int) -> dict[str, list[OutboxMessage]]:
        """Claim due messages for conversations no lane of this sender is serving yet."""
        with self._claiming:
            with self.store.session() as session:
                rows = claim(
                    session,
                    now=now,
                    owner=self.owner,
                    limit=limit,
                    lease=self.lease,
                    busy=frozenset(self.busy),
                    per_lane=self.per_lane,
                )
            lanes: dict[str, list[OutboxMessage]] = {}
            for row in rows:
                lanes.setdefault(lane_of(row), []).append(row)
            self.busy.update(lanes)
            return lanes

    async def _lane(
        self,
        lane: str,
        messages: list[OutboxMessage],
        report: SendReport,
        current: Callable[[], datetime],
    ) -> None:
        """One conversation's messages, in order, at its platform's pace."""
        try:
            for message in messages:
                await self._pace(lane, self._interval(message))
                await self._send_one(message, report, current)
                self.last_sent[lane] = self.clock()
        finally:
            with self._claiming:
                self.busy.discard(lane)

    def _interval(self, message: OutboxMessage) -> float:
        """The strictest pace among the platforms the message may go through (an update in
        place posts nothing new: the platform's own 429s pace it)."""
        if message.location_id is not None:
            return 0.0
        if message.target:
            return MIN_INTERVAL.get(message.target.partition(":")[0], 1.0)
        return max((MIN_INTERVAL.get(p, 1.0) for p in self.deliverer.messengers), default=0.0)

    async def _pace(self, lane: str, interval: float) -> None:
        """Wait until `interval` has passed since the platform answered this lane's last
        message: that request certainly arrived before its answer, so two messages to one
        conversation reach the platform at least the interval apart."""
        last = self.last_sent.get(lane)
        if last is not None:
            wait = interval - (self.clock() - last)
            if wait > 0:
                await asyncio.sleep(wait)

    def _renew(self, message: OutboxMessage, now: datetime) -> bool:
        """Renew the lease on `message` just before it goes out; False when it is no longer
        ours (a lease can run out while a message waits its turn, and another sender may
        then have taken it)."""
        with self.store.session() as session:
            row = session.get(OutboxMessage, message.id, with_for_update=True)
            if row is None or not self._holds(row):
                return False
            row.claimed_until = now + self.lease
            session.add(row)
            return True

    async def _send_one(
        self, message: OutboxMessage, report: SendReport, current: Callable[[], datetime]
    ) -> None:
        parts = self._parts(message)
        loop = asyncio.get_running_loop()
        in_flight = self._in_flight.setdefault(loop, asyncio.Semaphore(IN_FLIGHT))
        try:
            if not await asyncio.to_thread(self._renew, message, current()):
                log.info("outbox %s: lease lost while waiting, left to its new sender", message.key)
                return
            async with in_flight:
                posted = await self._deliver(message, current(), parts)
        except rendering.NothingToRender as gone:
            await asyncio.to_thread(self._park, message, str(gone), report)
            return
        except Exception as error:  # any platform error is recorded on the message
            await asyncio.to_thread(
                self._failed, message, error, current(), report, part=parts.trying
            )
            return
        if not posted:
            await asyncio.to_thread(
                self._park,
                message,
                "recipient is not reachable on any platform (no Slack id, no Teams chat)",
                report,
            )
            return
        await asyncio.to_thread(self._sent, message, posted[0], current(), report)

    async def _card(self, message: OutboxMessage, member_id: int | None, now: datetime) -> Card:
        """The card as it goes out now: rendered from the lead's state, or as stored."""
        if not message.render:
            return card_from_dict(message.card)
        return await asyncio.to_thread(self._render, message, member_id, now)

    def _render(self, message: OutboxMessage, member_id: int | None, now: datetime) -> Card:
        with self.store.session() as session:
            return rendering.card_of(
                session, message, member_id=member_id, now=now, company=self.company
            )

    def _update_of(self, message: OutboxMessage, now: datetime) -> tuple[CardLocation, Card]:
        with self.store.session() as session:
            location = session.get(CardLocation, message.location_id)
            if location is None:
                raise rendering.NothingToRender(f"card location {message.location_id} is gone")
            row = session.get(OutboxMessage, message.id)
            # The state rendered below is at least this new (see `_sent`).
            message.revision = row.revision if row is not None else message.revision
            card = rendering.card_of(
                session, message, member_id=location.member_id, now=now, company=self.company
            )
            return location, card

    async def _update(self, message: OutboxMessage, now: datetime) -> list[tuple[str, Posted]]:
        """Replace a posted card in place with its state now."""
        location, card = await asyncio.to_thread(self._update_of, message, now)
        messenger = self.deliverer.messengers.get(location.platform)
        if messenger is None:
            return []
        await messenger.update(location, card)
        return [(location.platform, Posted(location.channel, location.message_id))]

    def _parts(self, message: OutboxMessage) -> Parts:
        """The parts of `message` a previous try delivered; each new one is recorded on
        its row as soon as the platform has it, so a retry sends only what is left."""
        done = {name: Posted.from_dict(p) for name, p in (message.parts_done or {}).items()}

        async def record(name: str, posted: Posted) -> None:
            await asyncio.to_thread(self._part_done, message, name, posted)

        return Parts(done, record)

    def _part_done(self, message: OutboxMessage, name: str, posted: Posted) -> None:
        """Record a delivered part even if the lease was lost meanwhile: the part went out,
        and whoever holds the row now must not send it again."""
        with self.store.session() as session:
            row = session.get(OutboxMessage, message.id, with_for_update=True)
            if row is None:
                return
            row.parts_done = {**(row.parts_done or {}), name: posted.to_dict()}
            session.add(row)

    async def _deliver(
        self, message: OutboxMessage, now: datetime, parts: Parts
    ) -> list[tuple[str, Posted]]:
        if message.location_id is not None:
            return await self._update(message, now)
        if message.member_id is not None:
            card = await self._card(message, message.member_id, now)
            return await self.deliverer.notify(
                Notify(
                    message.member_id,
                    card,
                    lead_id=message.lead_id,
                    purpose=message.purpose,
                    in_thread=message.in_thread,
                ),
                parts,
            )
        if "report" in message.card:
            report = report_from_dict(message.card["report"])
            one = await self.deliverer.post_report(message.target or "", report, parts)
        else:
            card = await self._card(message, None, now)
            one = await self.deliverer.post(message.target or "", card, parts)
        return [one] if one else []

    def _holds(self, row: OutboxMessage) -> bool:
        """Whether this sender still holds `row`: after a send slower than the lease,
        another sender may have taken it over (or sent it), and must not be undone."""
        return row.status == OutboxStatus.sending and row.claimed_by == self.owner

    def _sent(
        self, message: OutboxMessage, where: tuple[str, Posted], now: datetime, report: SendReport
    ) -> None:
        with self.store.session() as session:
            row = session.get(OutboxMessage, message.id, with_for_update=True)
            if row is None:
                return
            row.status, row.sent_at, row.claimed_until = OutboxStatus.sent.value, now, None
            row.platform, row.message_id = where[0], where[1].message_id
            if row.revision != message.revision:
                # A newer state of this card was owed while it was in flight: send again.
                row.status, row.not_before = OutboxStatus.pending.value, now
            session.add(row)
        report.sent += 1
        report.keys.append(message.key)

    def _failed(
        self,
        message: OutboxMessage,
        error: BaseException,
        now: datetime,
        report: SendReport,
        part: str = "",
    ) -> None:
        """Retry later, or park after the usual attempts; `part`, when the message is sent
        in parts, names the one that failed (the parts done before it stay done)."""
        delay = throttle_delay(error)
        failed = f"{part} part: " if part else ""
        with self.store.session() as session:
            row = session.get(OutboxMessage, message.id)
            if row is None or not self._holds(row):
                return
            row.claimed_until = None
            row.last_error = f"{failed}{type(error).__name__}: {error}"[:500]
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
