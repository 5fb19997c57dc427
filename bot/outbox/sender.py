"""The outbox sender: claims owed messages, delivers them through the adapters, records
the platform's message id; throttling is waited out, failures retried, then parked, and
parked messages come back when the platform answers again.

Conversations are sent side by side, each in its own lane at its platform's pace
(`bot.core.pacing`: Slack 1 message/s per conversation after a burst of 3, Teams within its
per-conversation limits), so a rep with a hundred new leads does not hold up everyone
else's messages, and every lane is kept as full as that pace allows: up to IN_FLIGHT
requests are out at once, across lanes. A 429 slows only its lane (chat.postMessage) or
its method app-wide (`bot.slack.client`), and the message goes again, once.

A claim is a lease (`claimed_until`): a sender that dies mid-send loses its lease and
another picks the message up. Outbox rows are locked in one order (`storage.outbox`): a
claim and a lease renewal skip rows others hold, and every other write of the sender locks
its rows first, in id order, so two senders (or two of one sender's transactions) queue for
a row but never deadlock. One statement claims many messages, the first of every
conversation before the second of any, and marks them `sending_since`; the sender renews
all its leases at once every third of a lease, and sends a message only while its lease
outlasts the longest platform call. `sending_since` is cleared only once the outcome is
known (sent, or refused by the platform), or put back as it was on messages given back
unsent. A row that still carries it when it is claimed again (a timeout, a crash, a
database too busy to record the send) may already be on the platform: where the platform
can say (Slack: the outbox key in the message's metadata), the sender looks before it
sends, and records what it finds. Teams cannot be asked, so there the window stays open: a
message whose send timed out may arrive twice.

The bookkeeping (render a card as it goes out, record it sent or to retry, where its
card went) of all lanes is batched: one transaction every few milliseconds, each message
in a savepoint of its own, in the sender's own threads and on its own connections
(`Bookkeeping`); writes are retried while the database is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

import aiohttp
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlmodel import Session

from bot.core import pacing, rendering
from bot.core.business_time import Company
from bot.core.delivery import Deliverer, Parts, Posted, remember_card
from bot.core.effects import Notify
from bot.core.idempotency import OUTBOX_KEY, Probe, Recall
from bot.core.interaction import Person
from bot.core.messages import Card, CardPlace, card_from_dict, report_from_dict
from bot.core.metrics import OutboxMetrics
from bot.outbox import alerts as outbox_alerts
from storage import members as stored_members
from storage import outbox as storage_outbox
from storage import places
from storage.calendars import CALENDARS_READ
from storage.db import Store, busy, unavailable
from storage.models import CardLocation, Member, OutboxMessage, OutboxStatus
from storage.outbox import LEASE, RETRY_FOR, Claimed, claim, revivable_count, revive

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # quick attempts before a message is parked (and the admin told)
MAX_THROTTLED = timedelta(days=1)
BACKOFF_CAP = 900.0  # seconds: a parked message is tried again at least every 15 minutes
PROBE_EVERY = timedelta(seconds=30)  # while messages are parked, ask the platforms this often
BUSY_FIRST, BUSY_CAP = 0.05, 2.0  # seconds: backoff of a bookkeeping write on a busy database
THROTTLE_STATUSES = {429, 412, 502, 503, 504}
# Sustained messages per second per conversation, by platform (see bot.core.pacing).
MIN_INTERVAL = {name: (1 / rule.rate if rule.rate else 0.0) for name, rule in pacing.RULES.items()}
IN_FLIGHT = 64  # requests to the platforms at once, across all lanes
CLAIM = 2000  # messages one claim may lease
PER_LANE = 30  # of them, at most this many to one conversation (half a minute at Slack's pace)
THREADS = 4  # the sender's own threads for its database work
BATCHES = 2  # bookkeeping transactions under way at once (a render need not wait for a mark)
LINGER = 0.005  # seconds a bookkeeping batch waits for more lanes' work before it runs
READ_AHEAD = "outbox.read_ahead"  # session.info: the leads and owners read for a batch
CALENDARS_FOR = 5.0  # seconds a rep's calendar read for a card serves the next ones
# Cards of a claim are drawn from facts read for all of them with the claim (their owners'
# calendars too: read once per claim); before one is drawn, what may have changed about its
# lead is checked (one query for all) if it was last checked more than FRESH_FOR seconds ago.
FRESH_FOR = 1.0
READ_AHEAD_FOR = 2.0  # seconds: a claimed card's facts are read this long before it is due
POLL = 1.0  # while lanes run, look for newly due messages this often (seconds)
# A lane waits out this much of 429s for one message with its claim kept, then gives it back.
HOLD_THROTTLED = timedelta(seconds=10)


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


def _ids(messages: list[Claimed]) -> list[int]:
    return [c.message.id or 0 for c in messages]


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


@dataclass
class Attempt:
    """How a send went, for its lane's pace: when the platform answered (sender clock;
    None: it was not asked), and how long it asked the conversation to wait (a 429 and its
    `Retry-After`), if it did; `kept`: the lane still holds the message, to send again."""

    answered: float | None = None
    throttled: float | None = None
    kept: bool = False


@dataclass
class Facts:
    """What a claimed card is drawn from (its kind's reader read them), when they were read
    and last checked, and when its lane is due to draw it (sender clock seconds)."""

    facts: Any  # None: not read yet
    read: float
    checked: float
    due: float


class Bookkeeping:
    """The sender's writes and reads of many messages, in one transaction each time.

    Lanes ask for their bookkeeping (render a card, mark a message sent, retry it later…)
    and wait for it; whatever was asked within `linger` seconds, or while the previous
    transaction ran, goes in the next one. Should a piece fail, the transaction is rolled
    back and each piece runs again in a transaction of its own, so one piece's failure is
    that piece's alone (pieces touch only the database, so running again is safe). It runs
    in the sender's own threads, on the sender's own connections, so a burst of webhooks or
    clicks does not starve delivery."""

    def __init__(
        self,
        store: Store,
        run: Callable[[Callable[[], Any]], Awaitable[Any]],
        local: threading.local,
        linger: float = LINGER,
        prepare: Callable[[Session], None] | None = None,
    ) -> None:
        self.store = store
        self.prepare = prepare  # reads for all the batch's pieces at once, first
        self.run_in_thread = run
        self.linger = linger
        self._queue: list[tuple[Callable[[], Any], Collection[int], asyncio.Future[Any]]] = []
        self._running = 0  # batches under way (up to BATCHES at once, on their own threads)
        self._tasks: set[asyncio.Task[None]] = set()
        self._local = local  # where a piece finds the batch's session (`Sender._session`)
        self.transactions = 0  # how many it took (benchmarks and tests count them)

    async def run(self, work: Callable[[], T], rows: Collection[int] = ()) -> T:
        """`work()` (which opens `self.session()`) in the next batch, the outbox `rows` it
        writes locked first; its result or error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((work, rows, future))
        if self._running < BATCHES:
            self._running += 1
            task = loop.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _flush(self) -> None:
        try:
            await self._flush_all()
        finally:
            self._running -= 1

    async def _flush_all(self) -> None:
        while self._queue:
            if self.linger:
                await asyncio.sleep(self.linger)
            batch, self._queue = self._queue, []
            if not batch:
                break  # another batch took them
            try:
                works = [(work, rows) for work, rows, _ in batch]
                outcomes = await self.run_in_thread(partial(self._all, works))
            except BaseException as error:  # the transaction as a whole failed
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                if isinstance(error, asyncio.CancelledError):
                    raise
                continue
            for (_, _, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _all(
        self, works: list[tuple[Callable[[], Any], Collection[int]]]
    ) -> list[tuple[bool, Any]]:
        """The pieces in one transaction that first locks every outbox row they write, in
        id order (`storage.outbox.lock_in_order`: two batches, this sender's or another's,
        then queue for a row instead of deadlocking); if that fails, each on its own."""
        if len(works) > 1:
            try:
                with self.store.session() as session:
                    self._local.session = session
                    rows = {id_ for _, ids in works for id_ in ids}
                    storage_outbox.lock_in_order(session, ids=rows)
                    if self.prepare is not None:
                        self.prepare(session)
                    results = [work() for work, _ in works]
                self.transactions += 1
                return [(True, result) for result in results]
            except Exception:  # rolled back; each piece again on its own, below
                log.debug("outbox: a batch failed; its pieces run one by one", exc_info=True)
            finally:
                self._local.session = None
        outcomes: list[tuple[bool, Any]] = []
        for work, ids in works:
            try:
                outcomes.append((True, self._alone(work, ids)))
            except Exception as error:  # that piece's own failure, told to its lane
                outcomes.append((False, error))
            self.transactions += 1
        return outcomes

    def _alone(self, work: Callable[[], T], rows: Collection[int]) -> T:
        """One piece in a transaction of its own, its rows locked first."""
        if not rows:
            return work()  # opens a session of its own
        with self.store.session() as session:
            self._local.session = session
            try:
                storage_outbox.lock_in_order(session, ids=rows)
                return work()
            finally:
                self._local.session = None


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
        threads: int = THREADS,
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
        self.paces: dict[str, pacing.Lane] = {}  # conversation → its platforms' buckets
        self.busy: set[str] = set()
        # Leases this sender holds (message id → until when), renewed all at once.
        self.held: dict[int, datetime] = {}
        self._claiming = threading.Lock()  # drains may run in several threads (console)
        self._batch = threading.local()  # the session of the batch a thread is running
        # Delivery's own threads: the default executor may be full of handlers' work.
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="outbox")
        # One limit and one bookkeeping per event loop (the console drains from a thread's
        # loop too).
        self._in_flight: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            WeakKeyDictionary()
        )
        self._books: WeakKeyDictionary[asyncio.AbstractEventLoop, Bookkeeping] = WeakKeyDictionary()
        # Set when something was owed while a drain runs, so it claims it at once.
        self._owed: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
            WeakKeyDictionary()
        )
        self.per_lane = PER_LANE
        self.hold_throttled = HOLD_THROTTLED
        self._calendars_read: dict[Any, Any] = {}
        # (kind, lead id) → the facts its card is drawn from, when read, when last checked.
        self._facts: dict[tuple[str, int], Facts] = {}  # (kind, lead id) → its card's
        self._asked: set[tuple[str, int]] = set()  # facts a lane waits to have checked
        self._checking_lock = threading.Lock()
        self._facts_lock = threading.Lock()
        self._checks: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[None]] = (
            WeakKeyDictionary()
        )
        self._to_render: set[int] = set()  # leads whose cards the next batch renders
        self._calendars_since = float("-inf")

    def use_store(self, store: Store) -> None:
        """Deliver through `store` from now on (connections of delivery's own, see
        `Scheduler.start`)."""
        self.store = store
        for books in self._books.values():
            books.store = store

    @property
    def books(self) -> Bookkeeping:
        loop = asyncio.get_running_loop()
        books = self._books.get(loop)
        if books is None:
            books = self._books[loop] = Bookkeeping(
                self.store, self._in_thread, self._batch, prepare=self._read_ahead
            )
        return books

    async def _in_thread(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)

    def owed(self) -> None:
        """Messages were just owed: a drain that is running claims them now, not at its next
        look (a click's card update must not wait behind another rep's paced lane)."""
        for loop, event in list(self._owed.items()):
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    async def drain(
        self, now: datetime, limit: int = CLAIM, report: SendReport | None = None
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
        leases = asyncio.create_task(self._keep_leases(current))
        checks = asyncio.create_task(self._keep_facts())
        try:
            while True:
                owed.clear()
                claimed = await self._claim(current(), limit)
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
        finally:
            leases.cancel()
            checks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leases
            with contextlib.suppress(asyncio.CancelledError):
                await checks
            self._forget_quiet_lanes()

    def _forget_quiet_lanes(self) -> None:
        now = self.clock()
        for lane in [k for k, pace in self.paces.items() if k not in self.busy and pace.quiet(now)]:
            del self.paces[lane]

    async def _look_after_parked(self, now: datetime) -> None:
        """Put parked messages back in line when they are due again or a platform answers
        its health probe, and tell the admin when messages were parked or delivered again."""
        try:
            if await self._in_thread(partial(self._parked_to_revive, now)):
                healthy = await self._probe(now)
                revived = await self._in_thread(partial(self._revive, now, healthy))
                if revived:
                    log.info("outbox: %d parked messages back in line", revived)
            await self._in_thread(partial(self._alert, now))
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

    async def _claim(self, now: datetime, limit: int) -> dict[str, list[Claimed]]:
        """Claim due messages for conversations no lane of this sender is serving yet."""
        delay = BUSY_FIRST
        for tries in range(6):
            try:
                lanes = await self._in_thread(partial(self._claim_rows, now, limit))
            except OperationalError as error:
                if (unavailable(error) and not busy(error)) or tries == 5:
                    raise  # away, not busy: the sender's loop backs off and says so once
                log.warning("outbox: database busy (%s); again in %.2fs", error.orig, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BUSY_CAP)
                continue
            claimed = [c for messages in lanes.values() for c in messages]
            try:
                await self._in_thread(partial(self._read_facts, claimed))
            except SQLAlchemyError as error:  # each card is then rendered on its own
                log.warning("outbox: could not read ahead for the cards claimed: %s", error)
            return lanes
        raise AssertionError("unreachable")

    def _claim_rows(self, now: datetime, limit: int) -> dict[str, list[Claimed]]:
        """One claim, in a transaction of its own (drains of other threads' loops, in the
        console, claim one after the other)."""
        with self._claiming, self.store.session() as session:
            rows = claim(
                session,
                now=now,
                owner=self.owner,
                limit=limit,
                lease=self.lease,
                busy=frozenset(self.busy),
                per_lane=self.per_lane,
            )
            ids = {c.message.member_id for c in rows if c.message.member_id is not None}
            members = stored_members.members_by_id(session, ids=ids)
            for member in members.values():
                session.expunge(member)
            lanes: dict[str, list[Claimed]] = {}
            for row in rows:
                row.member = members.get(row.message.member_id or 0)
                lanes.setdefault(lane_of(row.message), []).append(row)
                self.held[row.message.id or 0] = row.message.claimed_until or now
            self.busy.update(lanes)
            return lanes

    def _read_facts(self, rows: list[Claimed]) -> None:
        """Note what the claimed cards (new posts rendered when sent) are drawn from, and
        when each is due to be drawn (about when its lane's pace lets it go); then read the
        facts of those due first (`_check` reads the others as they come due), for many
        cards at once, so drawing each reads nothing (`_drawn`)."""
        now = self.clock()
        due: dict[tuple[str, int], float] = {}
        ahead: dict[str, int] = {}  # cards before it in its lane
        for row in rows:
            message = row.message
            lane = lane_of(message)
            position = ahead[lane] = ahead.get(lane, -1) + 1
            drawable = message.render and message.location_id is None
            if drawable and message.lead_id is not None and rendering.reader_of(message.purpose):
                pace = max((MIN_INTERVAL.get(p, 0.0) for p in self._platforms(message)), default=0)
                due[(rendering.kind_of(message.purpose), message.lead_id)] = now + position * pace
        if not due:
            return
        with self._facts_lock:
            for key in [k for k, f in self._facts.items() if now - f.read > LEASE.total_seconds()]:
                del self._facts[key]  # claimed and never drawn (given back, or the lease lost)
            for key, at in due.items():
                found = self._facts.get(key)
                if found is None:
                    self._facts[key] = Facts(None, now, now, at)
                else:  # claimed again (given back after a 429): checked when due, as any
                    found.due = at
        self._check(only=set(due))

    def _due_from(self, messages: list[Claimed], platforms: list[str], at: float) -> None:
        """A lane held back (a 429): its cards come due from `at` on, one a pace interval
        apart, so their facts are read and checked for then, not again and again while the
        lane waits."""
        pace = max((MIN_INTERVAL.get(p, 0.0) for p in platforms), default=0.0)
        with self._facts_lock:
            for position, claimed in enumerate(messages):
                message = claimed.message
                key = (rendering.kind_of(message.purpose), message.lead_id or 0)
                found = self._facts.get(key)
                if found is not None:
                    found.due = max(found.due, at + position * pace)

    @staticmethod
    def _reader(kind: str) -> rendering.Reader:
        reader = rendering.reader_of(kind)
        assert reader is not None, f"no reader for cards of kind {kind!r}"
        return reader

    async def _drawn(
        self, message: OutboxMessage, member_id: int | None, now: datetime
    ) -> Card | None:
        """The card of `message` drawn from the facts read with its claim (checked and read
        again first if due, see FRESH_FOR); None when none were read."""
        key = (rendering.kind_of(message.purpose), message.lead_id or 0)
        found = self._facts.get(key)
        if found is None:
            return None
        for _ in range(2):  # a check already under way may not include it
            found = self._facts.get(key)
            if found is None or (
                found.facts is not None and self.clock() - found.checked <= FRESH_FOR
            ):
                break
            self._asked.add(key)
            try:
                await asyncio.shield(self._checking())
            except SQLAlchemyError:  # rendered on its own instead, as any card can be
                log.debug("outbox: facts read ahead not checked", exc_info=True)
                return None
        with self._facts_lock:
            drawn = self._facts.pop(key, None)
        if drawn is None or drawn.facts is None or self.clock() - drawn.checked > FRESH_FOR:
            return None  # the lead is gone, or changed and could not be read again
        intent = rendering.Intent(key[1], message.purpose, member_id, now, self.company)
        return rendering.draw(drawn.facts, intent)

    def _checking(self) -> asyncio.Future[None]:
        """The check of the facts read ahead under way in this loop, or a new one."""
        loop = asyncio.get_running_loop()
        check = self._checks.get(loop)
        if check is None or check.done():
            check = self._checks[loop] = asyncio.ensure_future(self._in_thread(self._check))
        return check

    async def _keep_facts(self) -> None:
        """Read and check the facts of the cards coming due (`_check`) every half FRESH_FOR,
        so a lane seldom waits before it draws a card."""
        while True:
            await asyncio.sleep(FRESH_FOR / 2)
            if not self._facts:
                continue
            try:
                await asyncio.shield(self._checking())
            except SQLAlchemyError as error:  # the lanes check (or render) for themselves
                log.debug("outbox: facts read ahead not checked: %s", error)

    def _check(self, only: set[tuple[str, int]] | None = None) -> None:
        """For the cards due soon (or asked for): read the facts of those not read yet (due
        within READ_AHEAD_FOR), and compare what the others' were read from with the
        database now (due within FRESH_FOR), reading again those that changed; in one go
        per kind (`only` these cards, if given: those just claimed). Cards whose lead is gone
        are dropped (rendered on their own, if at all)."""
        with self._checking_lock:
            started = self.clock()
            asked: set[tuple[str, int]] = set()
            if only is None:
                asked, self._asked = self._asked, set()
            with self._facts_lock:
                facts = self._facts
                if only is not None:
                    facts = {k: self._facts[k] for k in only if k in self._facts}
                unread = {
                    k: f
                    for k, f in facts.items()
                    if f.facts is None and (k in asked or f.due <= started + READ_AHEAD_FOR)
                }
                kept = {
                    k: f
                    for k, f in facts.items()
                    if f.facts is not None
                    and (
                        k in asked
                        or (f.due <= started + FRESH_FOR and started - f.checked > FRESH_FOR / 4)
                    )
                }
            kinds = {kind for kind, _ in [*unread, *kept]}
            with self.store.reading() as session:
                for kind in kinds:
                    reader = self._reader(kind)
                    ids = [i for k, i in kept if k == kind]
                    stamps = reader.stamps(session, ids) if ids else {}
                    gone = {i for i in ids if i not in stamps}
                    stale = {
                        i
                        for i in ids
                        if i in stamps and stamps[i] != reader.stamp(kept[(kind, i)].facts)
                    }
                    wanted = stale | {i for k, i in unread if k == kind}
                    read = reader.read(session, wanted, self.company) if wanted else {}
                    self._keep_read(kind, ids, wanted, gone, read, started)

    def _keep_read(
        self,
        kind: str,
        checked: list[int],
        wanted: set[int],
        gone: set[int],
        read: Mapping[int, Any],
        started: float,
    ) -> None:
        with self._facts_lock:
            for lead_id in {*checked, *wanted}:
                key = (kind, lead_id)
                found = self._facts.get(key)
                if found is None:
                    continue  # drawn meanwhile
                if lead_id in gone or (lead_id in wanted and lead_id not in read):
                    del self._facts[key]
                elif lead_id in read:
                    self._facts[key] = Facts(read[lead_id], started, started, found.due)
                else:
                    found.checked = started

    @contextlib.contextmanager
    def books_session(self) -> Iterator[Session]:
        """The session of the bookkeeping batch running in this thread (or a session of its
        own outside a batch). Cards rendered in it share the calendars they read."""
        shared: Session | None = getattr(self._batch, "session", None)
        if shared is not None:
            shared.info[CALENDARS_READ] = self._calendars()
            yield shared
            return
        with self.store.session() as session:
            session.info[CALENDARS_READ] = self._calendars()
            yield session

    def _calendars(self) -> dict[Any, Any]:
        """The reps' calendars read for cards in the last few seconds (a burst of cards to
        200 reps reads each one's calendar once, not once per card): a change of working
        hours, holidays or time away shows on cards rendered CALENDARS_FOR later at most."""
        now = self.clock()
        if now - self._calendars_since > CALENDARS_FOR:
            self._calendars_read, self._calendars_since = {}, now
        return self._calendars_read

    async def _write(self, write: Callable[[], T], rows: Collection[int] = ()) -> T:
        """A bookkeeping write (mark sent, retry, park) of outbox `rows`, batched with the
        other lanes' (their rows locked first, in id order), and retried with backoff while
        the database is busy or away, for up to two leases (the sender renews the lease
        meanwhile); then the error propagates and the lane logs it. A row it could not mark
        stays leased with `sending_since`, so it is checked, not resent blindly."""
        delay = BUSY_FIRST
        deadline = self.clock() + 2 * self.lease.total_seconds()
        while True:
            try:
                return await self.books.run(write, rows)
            except OperationalError as error:
                if self.clock() + delay > deadline:
                    raise
                if unavailable(error) and not busy(error):  # one line per outage
                    self.store.outage.lost(error)
                else:
                    log.warning("outbox: database busy (%s); again in %.2fs", error.orig, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BUSY_CAP)

    async def _keep_leases(self, current: Callable[[], datetime]) -> None:
        """Renew every lease this sender holds, all at once, every third of a lease: while
        messages wait their turn in a lane and while a send is in flight."""
        every = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                await self._renew(list(self.held), current())
            except OperationalError as error:
                if unavailable(error) and not busy(error):
                    self.store.outage.lost(error)
                else:
                    log.warning("outbox: leases not renewed (%s)", error.orig)

    async def _renew(self, ids: list[int], now: datetime) -> None:
        if not ids:
            return
        renewed, skipped = await self.books.run(partial(self._renew_rows, ids, now))
        until = now + self.lease
        for id_ in ids:
            if id_ not in self.held or id_ in skipped:
                continue  # recorded meanwhile, or being recorded (renewed next time)
            if id_ in renewed:
                self.held[id_] = until
            else:
                self.held.pop(id_, None)
                log.info("outbox: message %s is no longer ours to send", id_)

    def _renew_rows(self, ids: list[int], now: datetime) -> tuple[set[int], set[int]]:
        """Renew the leases on `ids` still ours, never waiting for a row another
        transaction holds: the ids renewed, and those skipped that are still ours."""
        with self.books_session() as session:
            return storage_outbox.renew_leases(
                session, ids=ids, owner=self.owner, until=now + self.lease
            )

    async def _still_ours(self, message: OutboxMessage, now: datetime) -> bool:
        """Whether this sender may send `message` now: it holds its lease for long enough
        to see the send through (a platform call takes at most half a lease); renewed
        first if the regular renewal fell behind (a database too busy to answer)."""
        id_ = message.id or 0
        until = self.held.get(id_)
        if until is not None and until - now >= self.lease / 2:
            return True
        if until is not None:
            await self._renew([id_], now)
        until = self.held.get(id_)
        if until is not None and until - now >= self.lease / 2:
            return True
        self.held.pop(id_, None)  # not renewed: left to whoever holds it when it runs out
        return False

    async def _lane(
        self,
        lane: str,
        messages: list[Claimed],
        report: SendReport,
        current: Callable[[], datetime],
    ) -> None:
        """One conversation's messages, in order, at its platforms' pace. A 429 (Slack's
        per-conversation pace) holds back this lane alone: it waits out the platform's
        `Retry-After` with its claim kept and sends the same message again, nothing given
        back or claimed again; only after HOLD_THROTTLED of waits for one message does it
        give the rest back, to be sent once the platform's wait is over, in order."""
        pace = self.paces.setdefault(lane, pacing.Lane())
        left = list(messages)
        waited = 0.0  # seconds the lane has waited out 429s for `left[0]`
        try:
            while left:
                claimed = left[0]
                platforms = self._platforms(claimed.message)
                wait = pace.wait(platforms, self.clock())
                if wait > 0:
                    await asyncio.sleep(wait)
                may_wait = max(self.hold_throttled.total_seconds() - waited, 0.0)
                attempt = Attempt()
                try:
                    attempt = await self._send_one(claimed, report, current, may_wait)
                except Exception:  # the lane goes on; the row keeps its marker for a check
                    log.exception(
                        "outbox %s: lane %s could not finish it", claimed.message.key, lane
                    )
                    self.held.pop(claimed.message.id or 0, None)
                throttled = attempt.throttled
                if throttled is None:  # a 429 posted nothing: it takes no place in the pace
                    answered = attempt.answered
                    pace.answered(platforms, self.clock() if answered is None else answered)
                elif attempt.kept:
                    waited += throttled
                    again = (attempt.answered or self.clock()) + throttled
                    self._due_from(left, platforms, again)
                    await asyncio.sleep(max(again - self.clock(), 0.0))
                    continue  # the same message again, still ours
                left.pop(0)
                waited = 0.0
                if throttled is None:
                    continue
                if left:
                    rest, left = left, []
                    for other in rest:
                        self.held.pop(other.message.id or 0, None)
                    until = current() + timedelta(seconds=throttled)
                    await self._write(partial(self._release, rest, until), _ids(rest))
                # Claimed again the moment the platform's wait is over, not at the next poll.
                loop = asyncio.get_running_loop()
                owed = self._owed.get(loop)
                if owed is not None:
                    loop.call_later(throttled, owed.set)
        finally:
            for claimed in left:
                self.held.pop(claimed.message.id or 0, None)
            with self._claiming:
                self.busy.discard(lane)
            if left:  # cancelled (shutting down): what was not sent goes back in line now
                with contextlib.suppress(Exception):
                    release = partial(self._release, left, current())
                    await asyncio.shield(self._write(release, _ids(left)))

    def _release(self, messages: list[Claimed], not_before: datetime) -> None:
        """Give back messages this sender claimed and did not send, with their marks as
        they were before the claim."""
        with self.books_session() as session:
            storage_outbox.give_back(
                session,
                owner=self.owner,
                marks={c.message.id or 0: c.earlier for c in messages},
                not_before=not_before,
            )

    def _platforms(self, message: OutboxMessage) -> list[str]:
        """The platforms whose per-conversation pace a message keeps: its channel's, or
        every platform a member may be reached on (an update in place posts nothing new:
        its method's 429s pace it)."""
        if message.location_id is not None:
            return []
        if message.target:
            return [message.target.partition(":")[0]]
        return list(self.deliverer.messengers)

    async def _send_one(
        self,
        claimed: Claimed,
        report: SendReport,
        current: Callable[[], datetime],
        may_wait: float = 0.0,
    ) -> Attempt:
        """Send one claimed message and record the outcome; returns when the platform
        answered (the lane's pace counts from then, not from when the outcome was recorded)
        and how long it asked this conversation to wait (a 429), if it did. A wait of up to
        `may_wait` seconds is the lane's to wait out, with the message kept (nothing is
        recorded: the platform took nothing); a longer one is recorded on the message."""
        message = claimed.message
        attempt = Attempt()
        if not await self._still_ours(message, current()):
            log.info("outbox %s: lease lost while waiting, left to its new sender", message.key)
            return attempt
        loop = asyncio.get_running_loop()
        in_flight = self._in_flight.setdefault(loop, asyncio.Semaphore(IN_FLIGHT))
        parts = self._parts(message)
        key = OUTBOX_KEY.set(message.key)
        found: tuple[str, str, Posted] | None = None
        posted: list[tuple[str, Posted]] = []
        cards: list[tuple[str, Posted]] = []  # handoff cards to record where they went
        try:
            if claimed.earlier is not None and message.location_id is None:
                async with in_flight:
                    found = await self._recall(message, claimed.earlier)
            if found is not None:
                log.info("outbox %s: %s went out on an earlier try", message.key, found[0])
                parts.done.setdefault(found[0], found[2])
            posted = await self._deliver(claimed, current(), parts, in_flight, cards)
            attempt.answered = self.clock()
        except rendering.NothingToRender as gone:
            await self._outcome(self._park, message, str(gone), report=report)
            return attempt
        except Exception as error:  # any platform error is recorded on the message
            attempt.answered = self.clock()
            attempt.throttled = delay = throttle_delay(error)
            if delay is not None and delay <= may_wait and not cards:
                log.info("outbox %s: throttled, again in %.1fs", message.key, delay)
                report.retried += 1
                self.metrics.retried.inc()
                self.metrics.throttled.inc()
                attempt.kept = True
                why = f"{parts.trying} part: " if parts.trying else ""
                note = partial(self._note, message, f"{why}{type(error).__name__}: {error}")
                await self._write(note, [message.id or 0])
                return attempt
            counted = await self._outcome(
                self._failed, message, error, current(), parts.trying, cards, report=report
            )
            if delay is not None and counted is not None:
                self.metrics.throttled.inc()
            return attempt
        finally:
            OUTBOX_KEY.reset(key)
        if not posted and found is not None:
            posted = [(found[1], found[2])]
        if not posted:
            await self._outcome(
                self._park,
                message,
                "recipient is not reachable on any platform (no Slack id, no Teams chat)",
                report=report,
            )
            return attempt
        await self._outcome(self._sent, message, posted[0], current(), cards, report=report)
        return attempt

    async def _outcome(
        self, write: Callable[..., str | None], *args: Any, report: SendReport
    ) -> str | None:
        """Record a send's outcome (`write` returns which: sent, recovered, retried, failed,
        parked; None when the row is no longer ours) and count it, once it is committed;
        the lease is then no longer this sender's to keep."""
        message: OutboxMessage = args[0]
        try:
            counted = await self._write(partial(write, *args), [message.id or 0])
        finally:
            self.held.pop(message.id or 0, None)
        if counted in ("sent", "recovered", "again"):
            report.sent += 1
            report.keys.append(message.key)
            self.metrics.sent.inc()
            if counted == "recovered":
                self.metrics.recovered.inc()
        elif counted == "retried":
            report.retried += 1
            self.metrics.retried.inc()
        elif counted == "failed":
            report.failed += 1
            self.metrics.failed.inc()
        elif counted in ("parked", "parked again"):
            report.failed += 1
            if counted == "parked":
                self.metrics.parked.inc()
        return counted

    async def _recall(
        self, message: OutboxMessage, since: datetime
    ) -> tuple[str, str, Posted] | None:
        """Where an earlier send of `message` landed, if a platform can tell (Slack): the
        part's name (as `Deliverer` names it), the platform, and the message."""
        member = await self._in_thread(partial(self._member, message.member_id))
        platform, _, channel = (message.target or "").partition(":")
        threads = await self._in_thread(partial(self._threads, message))
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
            found = places.locations_of(session, lead_id=message.lead_id, purpose="handoff")
            return [t for t in found if t.member_id == message.member_id]

    def _member(self, member_id: int | None) -> Person | None:
        if member_id is None:
            return None
        with self.store.session() as session:
            found = session.get(Member, member_id)
            return Person.of(found) if found is not None else None

    async def _card(self, message: OutboxMessage, member_id: int | None, now: datetime) -> Card:
        """The card as it goes out now: rendered from the lead's state, or as stored."""
        if not message.render:
            return card_from_dict(message.card)
        drawn = await self._drawn(message, member_id, now)
        if drawn is not None:
            return drawn
        if message.lead_id is not None:
            self._to_render.add(message.lead_id)
        return await self._write(partial(self._render, message, member_id, now))

    def _read_ahead(self, session: Session) -> None:
        """The leads the batch renders cards of, and their owners, in two queries, so each
        card's renderer finds them in the session instead of asking one by one."""
        ids, self._to_render = self._to_render, set()
        if not ids:
            return
        # Held for the session's life: its identity map keeps an object only while
        # something refers to it, and `session.get` finds these only if they are kept.
        session.info[READ_AHEAD] = storage_outbox.leads_and_owners(session, lead_ids=ids)

    def _render(self, message: OutboxMessage, member_id: int | None, now: datetime) -> Card:
        with self.books_session() as session:
            return rendering.card_of(
                session, message, member_id=member_id, now=now, company=self.company
            )

    def _update_of(self, message: OutboxMessage, now: datetime) -> tuple[CardPlace, Card]:
        with self.books_session() as session:
            location = session.get(CardLocation, message.location_id)
            if location is None:
                raise rendering.NothingToRender(f"card location {message.location_id} is gone")
            row = session.get(OutboxMessage, message.id)
            # The state rendered below is at least this new (see `_sent`).
            message.revision = row.revision if row is not None else message.revision
            card = rendering.card_of(
                session, message, member_id=location.member_id, now=now, company=self.company
            )
            return CardPlace.of(location), card

    async def _update(
        self, message: OutboxMessage, now: datetime, in_flight: asyncio.Semaphore
    ) -> list[tuple[str, Posted]]:
        """Replace a posted card in place with its state now."""
        location, card = await self._write(partial(self._update_of, message, now))
        messenger = self.deliverer.messengers.get(location.platform)
        if messenger is None:
            return []
        async with in_flight:
            await messenger.update(location, card)
        return [(location.platform, Posted(location.channel, location.message_id))]

    def _parts(self, message: OutboxMessage) -> Parts:
        """The parts of `message` a previous try delivered; each new one is recorded on
        its row as soon as the platform has it, so a retry sends only what is left."""
        done = {name: Posted.from_dict(p) for name, p in (message.parts_done or {}).items()}

        async def record(name: str, posted: Posted) -> None:
            await self._write(partial(self._part_done, message, name, posted), [message.id or 0])
            # Kept on the message too: a lane that sends it again after a 429 starts here.
            message.parts_done = {**(message.parts_done or {}), name: posted.to_dict()}

        return Parts(done, record)

    def _part_done(self, message: OutboxMessage, name: str, posted: Posted) -> None:
        """Record a delivered part even if the lease was lost meanwhile: the part went out,
        and whoever holds the row now must not send it again."""
        with self.books_session() as session:
            row = session.get(OutboxMessage, message.id, with_for_update=True)
            if row is None:
                return
            row.parts_done = {**(row.parts_done or {}), name: posted.to_dict()}

    async def _deliver(
        self,
        claimed: Claimed,
        now: datetime,
        parts: Parts,
        in_flight: asyncio.Semaphore,
        cards: list[tuple[str, Posted]],
    ) -> list[tuple[str, Posted]]:
        message = claimed.message
        if message.location_id is not None:
            return await self._update(message, now, in_flight)
        if message.member_id is not None:
            card = await self._card(message, message.member_id, now)

            async def remember(_: Notify, __: Person, platform: str, posted: Posted) -> None:
                cards.append((platform, posted))  # recorded with the outcome, in its batch

            async with in_flight:
                return await self.deliverer.notify(
                    Notify(
                        message.member_id,
                        card,
                        lead_id=message.lead_id,
                        purpose=message.purpose,
                        in_thread=message.in_thread,
                    ),
                    parts,
                    member=Person.of(claimed.member) if claimed.member is not None else None,
                    record=remember,
                )
        async with in_flight:
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

    def _remember_cards(
        self, session: Session, message: OutboxMessage, cards: list[tuple[str, Posted]]
    ) -> None:
        for platform, posted in cards:
            remember_card(
                session,
                lead_id=message.lead_id or 0,
                purpose=message.purpose,
                member_id=message.member_id,
                platform=platform,
                posted=posted,
                at=datetime.now(UTC),
            )

    def _sent(
        self,
        message: OutboxMessage,
        where: tuple[str, Posted],
        now: datetime,
        cards: list[tuple[str, Posted]] | None = None,
    ) -> str | None:
        """Mark `message` sent (and record where its cards went); "again" when a newer state
        of its card was owed meanwhile (due again now), "recovered" when it had been parked
        before."""
        with self.books_session() as session:
            self._remember_cards(session, message, cards or [])
            parked_at = storage_outbox.mark_sent(
                session,
                message_id=message.id or 0,
                revision=message.revision,
                now=now,
                platform=where[0],
                platform_message_id=where[1].message_id,
            )
        if parked_at is None:
            return None
        if parked_at[1] == OutboxStatus.pending:
            return "again"
        return "recovered" if parked_at[0] is not None else "sent"

    def _failed(
        self,
        message: OutboxMessage,
        error: BaseException,
        now: datetime,
        part: str = "",
        cards: list[tuple[str, Posted]] | None = None,
    ) -> str | None:
        """Retry later, or park after the usual attempts; `part`, when the message is sent
        in parts, names the one that failed (the parts done before it stay done)."""
        delay = throttle_delay(error)
        failed = f"{part} part: " if part else ""
        with self.books_session() as session:
            self._remember_cards(session, message, cards or [])
            row = session.get(OutboxMessage, message.id)
            if row is None or not self._holds(row):
                return None
            row.claimed_until = None
            row.last_error = f"{failed}{type(error).__name__}: {error}"[:500]
            if outcome_known(error) and not isinstance(error, SQLAlchemyError):
                # (A database error came from this side's bookkeeping, not the platform:
                # what was sent before it stays unknown, to be looked for.)
                row.sending_since = None
            throttled = delay is not None
            if not throttled:
                row.attempts += 1
            wait = delay if delay is not None else backoff(row.attempts, self.jitter())
            row.not_before = now + timedelta(seconds=wait)
            if throttled and now - row.created_at > MAX_THROTTLED:
                # Throttled retries do not count as attempts, but they do not go on forever.
                row.last_error = f"still throttled after {MAX_THROTTLED}: {row.last_error}"
                return self._park_row(row, now)
            if row.attempts >= MAX_ATTEMPTS and not transient(error):
                row.status = OutboxStatus.failed.value
                log.error("outbox %s refused, failed for good: %s", row.key, row.last_error)
                return "failed"
            if row.attempts >= MAX_ATTEMPTS:
                return self._park_row(row, now)
            row.status = OutboxStatus.pending.value
            if throttled:
                log.info("outbox %s: throttled, again in %.1fs", row.key, wait)
            else:
                log.warning("outbox %s: retry in %.1fs (%s)", row.key, wait, row.last_error)
            return "retried"

    def _note(self, message: OutboxMessage, error: str) -> None:
        with self.books_session() as session:
            storage_outbox.note_error(
                session, message_id=message.id or 0, owner=self.owner, error=error
            )

    def _park_row(self, row: OutboxMessage, now: datetime) -> str:
        """Parked: no more quick attempts; the admin hears of it, and it is tried again when
        its platform answers or its (long) backoff has passed, for RETRY_FOR after it was owed."""
        row.status = OutboxStatus.failed.value
        first = row.parked_at is None
        row.parked_at = row.parked_at or now
        if now - row.created_at > RETRY_FOR:
            log.error("outbox %s failed for good: %s", row.key, row.last_error)
        else:
            log.error("outbox %s parked, tried again later: %s", row.key, row.last_error)
        return "parked" if first else "parked again"

    def _park(self, message: OutboxMessage, why: str) -> str | None:
        """Failed for good: nowhere to send it (nothing to wait for)."""
        with self.books_session() as session:
            row = session.get(OutboxMessage, message.id)
            if row is None or not self._holds(row):
                return None
            row.status, row.last_error, row.claimed_until = OutboxStatus.failed.value, why, None
            row.sending_since = None
        log.error("outbox %s parked: %s", message.key, why)
        return "failed"
