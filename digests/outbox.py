"""The outbox sender: claims owed messages, delivers them through the adapters, records
the platform's message id; throttling is waited out, failures retried, then parked, and
parked messages come back when the platform answers again.

Conversations are sent side by side, each in its own lane at its platform's pace (Slack
about 1 message/s per channel, Teams 7/s per conversation), so a rep with a hundred new
leads does not hold up everyone else's messages.

A claim is a lease (`claimed_until`): a sender that dies mid-send loses its lease and
another picks the message up. A lane takes at most as many messages as it can send well
within the lease, renews each message's lease just before it goes to the platform and,
while the platform has not answered, every third of a lease (each platform call has a
timeout shorter than the lease). Before a send the row records `sending_since`; it is
cleared only once the outcome is known (sent, or refused by the platform). A row that
still carries it when it is sent again (a timeout, a crash, a database too busy to record
the send) may already be on the platform: where the platform can say (Slack: the outbox key
in the message's metadata), the sender looks before it sends, and records what it finds.
Teams cannot be asked, so there the window stays open: a message whose send timed out may
arrive twice. Bookkeeping writes are retried while the database is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar
from weakref import WeakKeyDictionary

import aiohttp
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, func, or_, select

from bot import rendering
from bot.delivery import Deliverer, Parts, Posted
from bot.effects import Notify
from bot.idempotency import OUTBOX_KEY, Probe, Recall
from bot.messages import Card, card_from_dict, report_from_dict
from digests import outbox_alerts
from digests.business_time import Company
from digests.metrics import OutboxMetrics
from storage import queries
from storage.db import Store, busy, unavailable
from storage.models import CardLocation, Member, OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 5  # quick attempts before a message is parked (and the admin told)
MAX_THROTTLED = timedelta(days=1)
RETRY_FOR = timedelta(days=1)  # parked messages are tried again this long after being owed
BACKOFF_CAP = 900.0  # seconds: a parked message is tried again at least every 15 minutes
PROBE_EVERY = timedelta(seconds=30)  # while messages are parked, ask the platforms this often
BUSY_FIRST, BUSY_CAP = 0.05, 2.0  # seconds: backoff of a bookkeeping write on a busy database
THROTTLE_STATUSES = {429, 412, 502, 503, 504}
# Per-conversation pace: Slack about 1 message/s per channel, Teams 7 per second.
MIN_INTERVAL = {"slack": 1.0, "teams": 1 / 7, "console": 0.0}
SLOWEST = max(MIN_INTERVAL.values())
IN_FLIGHT = 8  # requests to the platforms at once, across all lanes
POLL = 1.0  # while lanes run, look for newly due messages this often (seconds)


P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    keys: list[str] = field(default_factory=list)


def backoff(attempts: int, jitter: float) -> float:
    """Seconds before attempt `attempts + 1`: doubling from 10 s, capped at 15 minutes, and
    spread by `jitter` (0..1) over its upper half so parked messages do not return in step."""
    return float(min(5.0 * 2**attempts, BACKOFF_CAP) * (0.5 + jitter / 2))


class RecallError(Exception):
    """Asking the platform whether an earlier attempt posted a message failed: still unknown.
    The platform's answer, if any, stays on `.response` (a 429 is waited out as usual)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"could not check for an earlier send: {type(cause).__name__}: {cause}")
        self.response = getattr(cause, "response", None)


# Failures after which the platform may have taken the message all the same.
MAYBE_SENT = (
    TimeoutError,
    ConnectionError,
    aiohttp.ClientOSError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientPayloadError,
)


def transient(error: BaseException) -> bool:
    """Whether a failure may pass by itself (no answer, a timeout, a 5xx, a 408 or 429), so a
    parked message is worth trying again; a refusal (another 4xx, or Slack's `ok: false` such
    as `channel_not_found`) stays one until someone acts (`liaison outbox retry`)."""
    response: Any = getattr(error, "response", None)
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    if not isinstance(status, int):
        return True
    return status >= 500 or status in (408, 429)


def outcome_known(error: BaseException) -> bool:
    """Whether a failed send certainly did not post: the platform answered (an HTTP error on
    `.response`), no connection was made, or the error came before the request. A timeout or
    a dropped connection may have posted the message after all, and a failed check leaves an
    earlier send unknown."""
    if isinstance(error, RecallError):
        return False
    if getattr(error, "response", None) is not None:
        return True
    if isinstance(error, aiohttp.ClientConnectorError):
        return True
    return not isinstance(error, MAYBE_SENT)


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


def held_by_count(session: Session, *, owner: str, now: datetime) -> int:
    """How many messages `owner` holds leased at `now` (being sent, or about to be)."""
    return session.exec(
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            col(OutboxMessage.status) == OutboxStatus.sending,
            col(OutboxMessage.claimed_by) == owner,
            col(OutboxMessage.claimed_until) >= now,
        )
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
        *,
        metrics: OutboxMetrics | None = None,
        admin_channel: str | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.company = company or Company()  # business time on cards rendered when sent
        self.lease = lease
        self.metrics = metrics or OutboxMetrics()
        self.admin_channel = admin_channel
        self.jitter = jitter
        self.probed_at: datetime | None = None
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
        # Set when something was owed while a drain runs, so it claims it at once.
        self._owed: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
            WeakKeyDictionary()
        )
        self.per_lane = max(1, int(lease.total_seconds() / 2 / SLOWEST)) if SLOWEST else None

    def owed(self) -> None:
        """Messages were just owed: a drain that is running claims them now, not at its next
        look (a click's card update must not wait behind another rep's paced lane)."""
        for loop, event in list(self._owed.items()):
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    async def drain(
        self, now: datetime, limit: int = 200, report: SendReport | None = None
    ) -> SendReport:
        """Send everything due at `now` (and what falls due meanwhile), conversations side
        by side; returns once every lane it started has finished. Pass `report` to watch
        progress while it runs."""
        report = report if report is not None else SendReport()
        started = self.clock()
        lanes: set[asyncio.Task[None]] = set()
        await self._look_after_parked(now)

        def current() -> datetime:
            """`now` moved on by the time this drain has taken (pacing makes it long)."""
            return now + timedelta(seconds=self.clock() - started)

        owed = self._owed.setdefault(asyncio.get_running_loop(), asyncio.Event())
        while True:
            owed.clear()
            claimed = await asyncio.to_thread(self._claim, current(), limit)
            for lane, messages in claimed.items():
                lanes.add(asyncio.create_task(self._lane(lane, messages, report, current)))
            if not lanes:
                return report
            more = asyncio.create_task(owed.wait())
            done, _ = await asyncio.wait(
                {*lanes, more}, timeout=POLL, return_when=asyncio.FIRST_COMPLETED
            )
            more.cancel()
            done.discard(more)
            lanes -= done
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("outbox lane ended by an error", exc_info=task.exception())

    async def _look_after_parked(self, now: datetime) -> None:
        """Put parked messages back in line when they are due again or a platform answers
        its health probe, and tell the admin when messages were parked or delivered again."""
        try:
            if await asyncio.to_thread(self._parked_to_revive, now):
                healthy = await self._probe(now)
                revived = await asyncio.to_thread(self._revive, now, healthy)
                if revived:
                    log.info("outbox: %d parked messages back in line", revived)
            await asyncio.to_thread(self._alert, now)
        except OperationalError as error:  # the next drain tries again
            if unavailable(error) and not busy(error):
                raise  # the database is away: the sender's loop backs off and says so once
            log.warning("outbox: could not look after parked messages now: %s", error)

    def _parked_to_revive(self, now: datetime) -> bool:
        with self.store.session() as session:
            return revivable_count(session, now=now) > 0

    async def _probe(self, now: datetime) -> bool:
        """Whether a platform answers its health probe; asked at most every PROBE_EVERY."""
        if self.probed_at is not None and now - self.probed_at < PROBE_EVERY:
            return False
        self.probed_at = now
        for messenger in self.deliverer.messengers.values():
            if isinstance(messenger, Probe) and await messenger.healthy():
                log.info("outbox: %s answers again", messenger.platform)
                return True
        return False

    def _revive(self, now: datetime, healthy: bool) -> int:
        with self.store.session() as session:
            return revive(session, now=now, all_parked=healthy)

    def _alert(self, now: datetime) -> None:
        with self.store.session() as session:
            outbox_alerts.review(
                session, now=now, admin_channel=self.admin_channel, retry_for=RETRY_FOR
            )
            outbox_alerts.review_refused(session, now=now, admin_channel=self.admin_channel)

    def _claim(self, now: datetime, limit: int) -> dict[str, list[OutboxMessage]]:
        """Claim due messages for conversations no lane of this sender is serving yet."""
        with self._claiming:
            rows = self._busy_retry_sync(self._claim_rows, now, limit)
            lanes: dict[str, list[OutboxMessage]] = {}
            for row in rows:
                lanes.setdefault(lane_of(row), []).append(row)
            self.busy.update(lanes)
            return lanes

    def _claim_rows(self, now: datetime, limit: int) -> list[OutboxMessage]:
        with self.store.session() as session:
            return claim(
                session,
                now=now,
                owner=self.owner,
                limit=limit,
                lease=self.lease,
                busy=frozenset(self.busy),
                per_lane=self.per_lane,
            )

    def _busy_retry_sync(self, write: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A short write retried a few times while SQLite is busy (claims run in a thread)."""
        delay = BUSY_FIRST
        for _ in range(5):
            try:
                return write(*args, **kwargs)
            except OperationalError as error:
                if unavailable(error) and not busy(error):
                    raise  # away, not busy: the sender's loop backs off and says so once
                log.warning("outbox: database busy (%s); again in %.2fs", error.orig, delay)
                time.sleep(delay)
                delay = min(delay * 2, BUSY_CAP)
        return write(*args, **kwargs)

    async def _write(self, write: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A bookkeeping write (renew, mark sent, retry, park), retried with backoff while the
        database is busy or away, for up to two leases (the lease is renewed meanwhile by the
        send's heartbeat); then the error propagates and the lane logs it. A row it could
        not mark stays leased with `sending_since`, so it is checked, not resent blindly."""
        delay = BUSY_FIRST
        deadline = self.clock() + 2 * self.lease.total_seconds()
        while True:
            try:
                return await asyncio.to_thread(write, *args, **kwargs)
            except OperationalError as error:
                if self.clock() + delay > deadline:
                    raise
                if unavailable(error) and not busy(error):  # one line per outage
                    self.store.outage.lost(error)
                else:
                    log.warning("outbox: database busy (%s); again in %.2fs", error.orig, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BUSY_CAP)

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
                try:
                    await self._send_one(message, report, current)
                except Exception:  # the lane goes on; the row keeps its marker for a check
                    log.exception("outbox %s: lane %s could not finish it", message.key, lane)
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
        """Renew the lease on `message`; False when it is no longer ours (a lease can run out
        while a message waits its turn, and another sender may then have taken it)."""
        with self.store.session() as session:
            row = session.get(OutboxMessage, message.id, with_for_update=True)
            if row is None or not self._holds(row):
                return False
            row.claimed_until = now + self.lease
            session.add(row)
            return True

    def _begin(self, message: OutboxMessage, now: datetime) -> tuple[bool, datetime | None]:
        """Renew the lease just before the send and mark the send as started; returns whether
        the row is still ours and when an earlier send, whose outcome is unknown, started."""
        with self.store.session() as session:
            row = session.get(OutboxMessage, message.id, with_for_update=True)
            if row is None or not self._holds(row):
                return False, None
            earlier = row.sending_since
            row.claimed_until = now + self.lease
            row.sending_since = earlier or now
            session.add(row)
            return True, earlier

    async def _heartbeat(self, message: OutboxMessage, current: Callable[[], datetime]) -> None:
        """Renew the lease every third of it while the send is in flight."""
        every = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                if not await asyncio.to_thread(self._renew, message, current()):
                    log.warning("outbox %s: lease lost while the send is in flight", message.key)
                    return
            except OperationalError as error:
                if unavailable(error) and not busy(error):
                    self.store.outage.lost(error)
                else:
                    log.warning("outbox %s: lease not renewed (%s)", message.key, error.orig)

    async def _send_one(
        self, message: OutboxMessage, report: SendReport, current: Callable[[], datetime]
    ) -> None:
        parts = self._parts(message)
        loop = asyncio.get_running_loop()
        in_flight = self._in_flight.setdefault(loop, asyncio.Semaphore(IN_FLIGHT))
        ours, earlier = await self._write(self._begin, message, current())
        if not ours:
            log.info("outbox %s: lease lost while waiting, left to its new sender", message.key)
            return
        heartbeat = asyncio.create_task(self._heartbeat(message, current))
        try:
            await self._send_held(message, parts, earlier, in_flight, report, current)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _send_held(
        self,
        message: OutboxMessage,
        parts: Parts,
        earlier: datetime | None,
        in_flight: asyncio.Semaphore,
        report: SendReport,
        current: Callable[[], datetime],
    ) -> None:
        """Send a message whose lease this sender holds (renewed by the heartbeat). A part
        an earlier try may have sent (`earlier`: when it started) is looked for first and,
        when found, counted as done rather than sent again."""
        key = OUTBOX_KEY.set(message.key)
        found: tuple[str, str, Posted] | None = None
        posted: list[tuple[str, Posted]] = []
        try:
            async with in_flight:
                if earlier is not None and message.location_id is None:
                    found = await self._recall(message, earlier)
                if found is not None:
                    log.info("outbox %s: %s went out on an earlier try", message.key, found[0])
                    parts.done.setdefault(found[0], found[2])
                posted = await self._deliver(message, current(), parts)
        except rendering.NothingToRender as gone:
            await self._write(self._park, message, str(gone), report)
            return
        except Exception as error:  # any platform error is recorded on the message
            await self._write(self._failed, message, error, current(), report, part=parts.trying)
            return
        finally:
            OUTBOX_KEY.reset(key)
        if not posted and found is not None:
            posted = [(found[1], found[2])]
        if not posted:
            await self._write(
                self._park,
                message,
                "recipient is not reachable on any platform (no Slack id, no Teams chat)",
                report,
            )
            return
        await self._write(self._sent, message, posted[0], current(), report)

    async def _recall(
        self, message: OutboxMessage, since: datetime
    ) -> tuple[str, str, Posted] | None:
        """Where an earlier send of `message` landed, if a platform can tell (Slack): the
        part's name (as `Deliverer` names it), the platform, and the message."""
        member = await asyncio.to_thread(self._member, message.member_id)
        platform, _, channel = (message.target or "").partition(":")
        threads = await asyncio.to_thread(self._threads, message)
        for messenger in self.deliverer.messengers.values():
            if not isinstance(messenger, Recall):
                continue
            if message.target and messenger.platform != platform:
                continue
            name = messenger.platform
            asks: list[tuple[str, str | None, str | None]] = [
                (f"{name}:thread:{t.id}", t.channel, t.message_id)
                for t in threads
                if t.platform == name
            ] or [(name, channel or None, None)]
            for part, where, thread in asks:
                try:
                    found = await messenger.recall(
                        key=message.key, member=member, channel=where, since=since, thread=thread
                    )
                except Exception as error:  # recorded on the row by the caller, as unknown
                    raise RecallError(error) from error
                if found is not None:
                    return part, name, found
        return None

    def _threads(self, message: OutboxMessage) -> list[CardLocation]:
        """The handoff cards whose thread a thread reply goes to (none for other messages)."""
        if not message.in_thread or message.lead_id is None:
            return []
        with self.store.session() as session:
            found = queries.locations_of(session, lead_id=message.lead_id, purpose="handoff")
            return [t for t in found if t.member_id == message.member_id]

    def _member(self, member_id: int | None) -> Member | None:
        if member_id is None:
            return None
        with self.store.session() as session:
            return session.get(Member, member_id)

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
    ) -> bool:
        """Record the send; True when a newer state was owed meanwhile (due again now)."""
        again = False
        with self.store.session() as session:
            row = session.get(OutboxMessage, message.id, with_for_update=True)
            if row is None:
                return False
            row.status, row.sent_at, row.claimed_until = OutboxStatus.sent.value, now, None
            row.platform, row.message_id = where[0], where[1].message_id
            row.sending_since = None
            recovered = row.parked_at is not None
            if row.revision != message.revision:
                # A newer state of this card was owed while it was in flight: send again.
                row.status, row.not_before = OutboxStatus.pending.value, now
                again = True
            session.add(row)
        report.sent += 1
        report.keys.append(message.key)
        self.metrics.sent.inc()
        if recovered:
            self.metrics.recovered.inc()
        return again

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
            if outcome_known(error):
                row.sending_since = None
            throttled = delay is not None
            if throttled:
                self.metrics.throttled.inc()
            else:
                row.attempts += 1
            wait = delay if delay is not None else backoff(row.attempts, self.jitter())
            if throttled and now - row.created_at > MAX_THROTTLED:
                # Throttled retries do not count as attempts, but they do not go on forever.
                row.last_error = f"still throttled after {MAX_THROTTLED}: {row.last_error}"
                self._park_row(row, now, report)
            elif row.attempts >= MAX_ATTEMPTS and not transient(error):
                row.status = OutboxStatus.failed.value
                report.failed += 1
                self.metrics.failed.inc()
                log.error("outbox %s refused, failed for good: %s", row.key, row.last_error)
            elif row.attempts >= MAX_ATTEMPTS:
                self._park_row(row, now, report)
            else:
                row.status = OutboxStatus.pending.value
                report.retried += 1
                self.metrics.retried.inc()
                log.warning("outbox %s: retry in %.1fs (%s)", row.key, wait, row.last_error)
            row.not_before = now + timedelta(seconds=wait)
            session.add(row)

    def _park_row(self, row: OutboxMessage, now: datetime, report: SendReport) -> None:
        """Parked: no more quick attempts; the admin hears of it, and it is tried again when
        its platform answers or its (long) backoff has passed, for RETRY_FOR after it was owed."""
        row.status = OutboxStatus.failed.value
        first = row.parked_at is None
        row.parked_at = row.parked_at or now
        report.failed += 1
        if first:
            self.metrics.parked.inc()
        if now - row.created_at > RETRY_FOR:
            log.error("outbox %s failed for good: %s", row.key, row.last_error)
        else:
            log.error("outbox %s parked, tried again later: %s", row.key, row.last_error)

    def _park(self, message: OutboxMessage, why: str, report: SendReport) -> None:
        """Failed for good: nowhere to send it (nothing to wait for)."""
        with self.store.session() as session:
            row = session.get(OutboxMessage, message.id)
            if row is None or not self._holds(row):
                return
            row.status, row.last_error, row.claimed_until = OutboxStatus.failed.value, why, None
            row.sending_since = None
            session.add(row)
        report.failed += 1
        self.metrics.failed.inc()
        log.error("outbox %s parked: %s", message.key, why)


def _revivable(now: datetime, *, all_parked: bool) -> Any:
    """Parked by platform failures, owed less than RETRY_FOR ago, and (unless the platform
    answers again) past its backoff."""
    condition = (
        (col(OutboxMessage.status) == OutboxStatus.failed)
        & col(OutboxMessage.parked_at).is_not(None)
        & (col(OutboxMessage.created_at) > now - RETRY_FOR)
    )
    if not all_parked:
        condition = condition & (col(OutboxMessage.not_before) <= now)
    return condition


def revivable_count(session: Session, *, now: datetime) -> int:
    """How many parked messages could go back in line (now, or once a platform answers)."""
    return session.exec(
        select(func.count()).select_from(OutboxMessage).where(_revivable(now, all_parked=True))
    ).one()


def revive(session: Session, *, now: datetime, all_parked: bool) -> int:
    """Put parked messages back in line: all of them when a platform answers again, else
    those whose backoff has passed. Each gets one attempt; failing, it is parked again."""
    rows = session.exec(
        select(OutboxMessage)
        .where(_revivable(now, all_parked=all_parked))
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.status, row.not_before = OutboxStatus.pending.value, now
        session.add(row)
    return len(rows)


def depth(session: Session) -> dict[str, int]:
    """Messages not yet sent, by status (for the outbox-depth gauge)."""
    found = session.exec(
        select(OutboxMessage.status, func.count())
        .where(col(OutboxMessage.status) != OutboxStatus.sent)
        .group_by(col(OutboxMessage.status))
    ).all()
    return {str(status): int(count) for status, count in found}


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
