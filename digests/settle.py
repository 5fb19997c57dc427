"""Bring the SLA clocks of a made-up or imported past up to now without sending its news."""

from __future__ import annotations

from datetime import datetime

from bot.core.business_time import Company
from digests import sla
from storage import outbox
from storage.db import Store


def settle_history(store: Store, *, now: datetime, company: Company) -> int:
    """Bring the clocks up to `now`: the reminders and escalations of the invented past are
    recorded as delivered then, so only what happens from now on is sent."""
    report = sla.tick(store, now=now, company=company)
    with store.session() as session:
        return outbox.mark_history_delivered(session, now=now, keys=report.keys)
