"""The clock: APScheduler ticks; the database decides. A pass = the due work + outbox drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.background import BackgroundScheduler

from bot.delivery import Deliverer
from bot.settings import Settings
from digests import approvals, feedback, sla
from digests.business_time import Company
from digests.outbox import Sender, SendReport, due_count, held_by_count
from storage.db import Store

log = logging.getLogger(__name__)
JOB_ID = "liaison-tick"


def instance_name() -> str:
    """Who holds an outbox lease: host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Pass:
    tick: sla.TickReport
    sent: SendReport


class DueWork(Protocol):
    """One kind of scheduled work: claim what is due at `now`, owe its messages."""

    def __call__(self, store: Store, *, now: datetime, company: Company) -> sla.TickReport: ...


# Every pass runs these, in order: each claims its own due rows in its own transactions.
DUE_WORK: tuple[DueWork, ...] = (sla.tick, feedback.tick, approvals.tick)


class Clockwork:
    """Runs passes on demand (`liaison tick --at`) or on a clock (serve, socket, console).

    In a server the due work (SLA clocks, feedback and approval reminders, the weekly
    digest) is an APScheduler job, and delivery is a sender loop of its own
    that drains the outbox when woken (a handler owed messages, a tick wrote some) and every
    `interval` seconds otherwise (retries that fell due), so slow deliveries never delay a tick.
    """

    def __init__(
        self,
        store: Store,
        deliverer: Deliverer,
        company: Company,
        interval: float = 5.0,
        lease_seconds: float = 60.0,
        work: Sequence[DueWork] = DUE_WORK,
        admin_channel: str | None = None,
    ) -> None:
        self.store = store
        self.company = company
        self.work = tuple(work)
        self.interval = interval
        lease = timedelta(seconds=lease_seconds)
        self.sender = Sender(
            store, deliverer, instance_name(), lease=lease, admin_channel=admin_channel
        )
        self.scheduler: AsyncIOScheduler | BackgroundScheduler | None = None
        self._wanted: asyncio.Event | None = None
        self._sending: asyncio.Task[None] | None = None

    async def run_once(self, now: datetime) -> Pass:
        """One pass as if the clock read `now`: the due work, then delivery."""
        report = await self.tick(now)
        sent = await self.sender.drain(now)
        self._log(now, report, sent)
        return Pass(report, sent)

    async def tick(self, now: datetime) -> sla.TickReport:
        """The scheduled work due at `now`: SLA clocks, feedback and approval reminders…"""
        total = sla.TickReport()
        for work in self.work:
            report = await asyncio.to_thread(work, self.store, now=now, company=self.company)
            total.looked_at += report.looked_at
            total.messages += report.messages
            total.keys += report.keys
        return total

    @staticmethod
    def _log(now: datetime, report: sla.TickReport, sent: SendReport) -> None:
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
        `interval` seconds (stable job id, no overlap)."""
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
        """Messages were just owed: drain the outbox now rather than at the next tick."""
        if self._wanted is not None:
            self._wanted.set()

    async def _job(self) -> None:
        try:
            report = await self.tick(datetime.now(UTC))
        except asyncio.CancelledError:
            # The server is shutting down mid-tick. The pass running in its thread commits
            # or rolls back whole; what it did not take, the next tick anywhere takes.
            log.info("tick interrupted by shutdown")
            return
        if report.messages:
            self.wake()

    async def _send_loop(self) -> None:
        assert self._wanted is not None
        while True:
            with contextlib.suppress(TimeoutError):  # no wake-up: look anyway
                await asyncio.wait_for(self._wanted.wait(), timeout=self.interval)
            self._wanted.clear()
            now = datetime.now(UTC)
            try:
                self._log(now, sla.TickReport(), await self.sender.drain(now))
            except Exception:  # the database is away for a moment: try again later
                log.exception("outbox drain failed; retrying in %.0f s", self.interval)

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
        asyncio.run(self.run_once(datetime.now(UTC)))

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        if self._sending is not None:
            self._sending.cancel()
            self._sending = None


def for_settings(settings: Settings, store: Store, deliverer: Deliverer) -> Clockwork:
    """The clockwork of a running Liaison: every due work, the weekly digest included."""
    from digests.business_time import Schedule
    from digests.weekly import Digests

    schedule = Schedule.parse(settings.digest_at, settings.timezone)
    return Clockwork(
        store,
        deliverer,
        settings.company,
        settings.tick_seconds,
        settings.outbox_lease_seconds,
        work=(*DUE_WORK, Digests(schedule, settings.default_channel("digest"))),
        admin_channel=settings.default_channel("admin"),
    )
