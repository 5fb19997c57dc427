"""The clock: APScheduler ticks; the database decides. A pass = the due work + outbox drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.background import BackgroundScheduler

from bot.core.business_time import Company
from bot.core.delivery import Deliverer
from bot.core.metrics import ServiceMetrics, instance_name
from bot.core.settings import Settings
from bot.outbox.sender import Sender, SendReport
from digests import approvals, feedback, sla
from handlers.clocks import TickReport
from storage.db import Outage, Store, unavailable
from storage.outbox import due_count, held_by_count

log = logging.getLogger(__name__)
JOB_ID = "liaison-tick"
# Connections of their own for delivery (its threads, and a lane's bookkeeping batch) and
# for the SLA tick, apart from the pool the handlers and webhooks share.
DELIVERY_CONNECTIONS = 4
CLOCK_CONNECTIONS = 2
BACKOFF_CAP = 60.0  # seconds: the longest a loop waits between tries while the database is away


@dataclass
class PassReport:
    tick: TickReport
    sent: SendReport


class Backoff:
    """One loop's patience while the database is away: the next try `first` seconds after a
    failure, doubling up to `cap`; the store's `Outage` writes the one log line about it."""

    def __init__(
        self,
        outage: Outage,
        first: float,
        cap: float = BACKOFF_CAP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outage = outage
        self.first = first
        self.cap = max(cap, first)
        self.clock = clock
        self.failures = 0
        self.until = 0.0

    def waiting(self) -> bool:
        """Too soon to try again."""
        return self.clock() < self.until

    def failed(self, error: BaseException) -> float:
        """The database did not answer: seconds to wait before the next try."""
        self.outage.lost(error)
        delay = min(self.cap, self.first * 2.0**self.failures)
        self.failures += 1
        self.until = self.clock() + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.until = 0, 0.0
        self.outage.back()


class DueWork(Protocol):
    """One kind of scheduled work: claim what is due at `now`, owe its messages."""

    def __call__(self, store: Store, *, now: datetime, company: Company) -> TickReport: ...


# Every pass runs these, in order: each claims its own due rows in its own transactions.
DUE_WORK: tuple[DueWork, ...] = (sla.tick, feedback.tick, approvals.tick)


class AsyncDueWork(Protocol):
    """Due work that asks the outside world (a directory) on the event loop: retrying the
    owner lookups of `routing` leads (`handlers.ingest.Ingestor.retry_routing`)."""

    async def __call__(self, *, now: datetime) -> TickReport: ...


class Scheduler:
    """Runs passes on demand (`liaison tick --at`) or on a clock (serve, socket, console).

    In a server the due work (SLA clocks, feedback and approval reminders, the weekly
    digest) is an APScheduler job, and delivery is a sender loop of its own
    that drains the outbox when woken (a handler owed messages, a tick wrote some) and every
    `interval` seconds otherwise (retries that fell due), so slow deliveries never delay a tick.
    While the database does not answer, both back off (see `Backoff`) instead of failing on
    every tick.
    """

    def __init__(
        self,
        store: Store,
        deliverer: Deliverer,
        company: Company,
        interval: float = 5.0,
        lease_seconds: float = 60.0,
        work: Sequence[DueWork] = DUE_WORK,
        lookups: Sequence[AsyncDueWork] = (),
        admin_channel: str | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or ServiceMetrics()
        self._next_tick: float | None = None  # when the next tick is due (monotonic)
        self.company = company
        self.work = tuple(work)
        self.lookups = tuple(lookups)
        self.interval = interval
        lease = timedelta(seconds=lease_seconds)
        self.sender = Sender(
            store,
            deliverer,
            instance_name(),
            lease=lease,
            company=company,
            admin_channel=admin_channel,
        )
        self.scheduler: AsyncIOScheduler | BackgroundScheduler | None = None
        self._wanted: asyncio.Event | None = None
        self._sending: asyncio.Task[None] | None = None
        self.tick_backoff = Backoff(store.outage, interval)
        self.send_backoff = Backoff(store.outage, interval)
        # The clock's own thread and, once started, its own connections (as the sender
        # has): a burst of webhooks or clicks filling the default executor and the main
        # pool does not hold up the SLA tick.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="clock")
        self.tick_store = store
        self._shared: list[Store] = []

    async def run_once(self, now: datetime) -> PassReport:
        """One pass as if the clock read `now`: the due work, then delivery."""
        report = await self.tick(now)
        sent = await self.sender.drain(now)
        self._log(now, report, sent)
        return PassReport(report, sent)

    async def tick(self, now: datetime) -> TickReport:
        """The scheduled work due at `now`: SLA clocks, feedback and approval reminders…"""
        total = TickReport()
        loop = asyncio.get_running_loop()
        for work in self.work:
            report = await loop.run_in_executor(
                self.executor,
                partial(work, self.tick_store, now=now, company=self.company),
            )
            total.looked_at += report.looked_at
            total.messages += report.messages
            total.keys += report.keys
        for lookup in self.lookups:
            report = await lookup(now=now)
            total.looked_at += report.looked_at
            total.messages += report.messages
        return total

    @staticmethod
    def _log(now: datetime, report: TickReport, sent: SendReport) -> None:
        if report.messages or sent.sent or sent.failed:
            log.info(
                "pass at %s: %d clocks, %d messages owed, %d sent, %d retried, %d failed",
                now.isoformat(),
                report.looked_at,
                report.messages,
                sent.sent,
                sent.retried,
                sent.failed,
            )

    # ------------------------------------------------------------ in a server's event loop

    def start(self, *, ticks: bool = True) -> None:
        """Start the sender loop in this event loop and, with `ticks`, the SLA tick every
        `interval` seconds (stable job id, no overlap); each on connections of its own."""
        if not self._shared:
            self.sender.use_store(self.store.share(DELIVERY_CONNECTIONS))
            self.tick_store = self.store.share(CLOCK_CONNECTIONS)
            self._shared = [s for s in (self.sender.store, self.tick_store) if s is not self.store]
        self._wanted = asyncio.Event()
        self._sending = asyncio.get_running_loop().create_task(self._send_loop())
        if not ticks:
            return
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self._job,
            "interval",
            seconds=self.interval,
            id=JOB_ID,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        scheduler.start()
        self.scheduler = scheduler

    def wake(self) -> None:
        """Messages were just owed: drain the outbox now rather than at the next tick (a
        drain already running claims them at once)."""
        self.sender.owed()
        if self._wanted is not None:
            self._wanted.set()

    async def _job(self) -> None:
        if self.tick_backoff.waiting():
            return
        started = time.monotonic()
        if self._next_tick is not None:
            self.metrics.tick_lag.set(max(0.0, started - self._next_tick))
        self._next_tick = started + self.interval
        try:
            with self.metrics.tick.time():
                report = await self.tick(datetime.now(UTC))
        except asyncio.CancelledError:
            # The server is shutting down mid-tick. The pass running in its thread commits
            # or rolls back whole; what it did not take, the next tick anywhere takes.
            log.info("tick interrupted by shutdown")
            return
        except Exception as error:
            if not unavailable(error):
                raise  # a fault of ours: APScheduler logs it with its traceback
            self.tick_backoff.failed(error)
            return
        self.tick_backoff.succeeded()
        if report.messages:
            self.wake()

    async def _send_loop(self) -> None:
        assert self._wanted is not None
        wait = self.interval
        while True:
            with contextlib.suppress(TimeoutError):  # no wake-up: look anyway
                await asyncio.wait_for(self._wanted.wait(), timeout=wait)
            self._wanted.clear()
            wait = await self._send_due()

    async def _send_due(self) -> float:
        """Drain what is due now; returns how long to wait before looking again."""
        now = datetime.now(UTC)
        try:
            sent = await self.sender.drain(now)
        except Exception as error:
            if unavailable(error):
                return self.send_backoff.failed(error)
            log.exception("outbox drain failed; retrying in %.0f s", self.interval)
            return self.interval
        self.send_backoff.succeeded()
        self._log(now, TickReport(), sent)
        return self.interval

    async def settled(self) -> None:
        """Wait until nothing is owed that is due now and no lane is sending (tests)."""
        while True:
            await asyncio.sleep(0.02)
            if self._wanted is not None and self._wanted.is_set():
                continue
            if not self.sender.busy and not await asyncio.to_thread(self._anything_due):
                return

    def _anything_due(self) -> bool:
        """Due messages, or messages this sender holds (claimed, its lanes not yet told)."""
        with self.store.session() as session:
            now = datetime.now(UTC)
            return (
                due_count(session, now=now) > 0
                or held_by_count(session, owner=self.sender.owner, now=now) > 0
            )

    # ------------------------------------------------------------ from a thread (console)

    def start_in_background(self) -> None:
        """Tick from a background thread (the console, whose loop waits on the keyboard)."""
        scheduler = BackgroundScheduler(timezone=UTC, daemon=True)
        scheduler.add_job(
            self._thread_job,
            "interval",
            seconds=self.interval,
            id=JOB_ID,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
        )
        scheduler.start()
        self.scheduler = scheduler

    def _thread_job(self) -> None:
        if self.tick_backoff.waiting():
            return
        try:
            asyncio.run(self.run_once(datetime.now(UTC)))
        except Exception as error:
            if not unavailable(error):
                raise
            self.tick_backoff.failed(error)
            return
        self.tick_backoff.succeeded()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        if self._sending is not None:
            self._sending.cancel()
            self._sending = None
        for shared in self._shared:
            shared.engine.dispose()
        self._shared = []
        self.sender.use_store(self.store)
        self.tick_store = self.store


def for_settings(
    settings: Settings,
    store: Store,
    deliverer: Deliverer,
    lookups: Sequence[AsyncDueWork] = (),
) -> Scheduler:
    """The scheduler of a running Liaison: every due work, the weekly digest included,
    and `lookups` (the owner lookups of routing leads) where ingestion runs."""
    from bot.core.business_time import Schedule
    from digests.weekly import Digests

    schedule = Schedule.parse(settings.digest_at, settings.timezone)
    metrics = ServiceMetrics()
    digests = Digests(schedule, settings.default_channel("digest"), metrics.digest_build.observe)
    return Scheduler(
        store,
        deliverer,
        settings.company,
        settings.tick_seconds,
        settings.outbox_lease_seconds,
        work=(*DUE_WORK, digests),
        lookups=lookups,
        admin_channel=settings.default_channel("admin"),
        metrics=metrics,
    )
