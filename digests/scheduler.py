"""The clock: APScheduler ticks; the database decides. One pass = SLA tick + outbox drain."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.background import BackgroundScheduler

from bot.delivery import Deliverer
from digests import sla
from digests.business_time import Company
from digests.outbox import Sender, SendReport
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


class Clockwork:
    """Runs passes on demand (`liaison tick --at`) or every few seconds (serve, socket)."""

    def __init__(
        self,
        store: Store,
        deliverer: Deliverer,
        company: Company,
        interval: float = 5.0,
        lease_seconds: float = 60.0,
    ) -> None:
        self.store = store
        self.company = company
        self.interval = interval
        lease = timedelta(seconds=lease_seconds)
        self.sender = Sender(store, deliverer, instance_name(), lease=lease)
        self.scheduler: AsyncIOScheduler | BackgroundScheduler | None = None

    async def run_once(self, now: datetime) -> Pass:
        """One pass as if the clock read `now`."""
        report = await asyncio.to_thread(sla.tick, self.store, now=now, company=self.company)
        sent = await self.sender.drain(now)
        if report.messages or sent.sent or sent.failed:
            log.info(
                "tick at %s: %d clocks, %d messages owed, %d sent, %d retried, %d failed",
                now.isoformat(),
                report.looked_at,
                report.messages,
                sent.sent,
                sent.retried,
                sent.failed,
            )
        return Pass(report, sent)

    async def _job(self) -> None:
        await self.run_once(datetime.now(UTC))

    def start(self) -> None:
        """Tick every `interval` seconds in this event loop (stable job id, no overlap)."""
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
