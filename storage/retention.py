"""Retention: the personal data of leads older than a date removed, the anonymous facts the
digests count kept (state, campaign, owner, verdict and first-touch times, attempts, outcome,
SLA clocks, rejected criteria)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlmodel import Session, col

from storage.db import Store
from storage.models import Lead, LeadEvent, OutboxMessage

REMOVED = "(removed)"  # a purged lead's name: it says what happened, and marks it done
# Free text that events may carry about a lead (asked, answered, noted, commented on).
FREE_TEXT = ("question", "answer", "note", "comment", "owner_email")
DONE = ("sent", "failed")  # outbox rows whose card is history, not something still to send
CHUNK = 500


@dataclass
class Purged:
    """What a purge removed (or, dry, would remove)."""

    leads: int = 0
    events: int = 0
    cards: int = 0


def purge_count(store: Store, *, before: datetime) -> int:
    """How many leads created before `before` still hold personal data."""
    with store.reading() as session:
        query = select(func.count()).select_from(Lead).where(*_old(before))
        return int(session.execute(query).scalar_one())


def purge(
    store: Store,
    *,
    before: datetime,
    dry_run: bool = False,
    progress: Callable[[int], None] = lambda n: None,
) -> Purged:
    """Remove the personal data of leads created before `before`, CHUNK leads a transaction
    (a purge of millions holds no long lock, and one stopped halfway is simply run again)."""
    done = Purged()
    after = 0
    while True:
        with store.session() as session:
            ids = list(
                session.execute(
                    select(col(Lead.id))
                    .where(*_old(before), col(Lead.id) > after)
                    .order_by(col(Lead.id))
                    .limit(CHUNK)
                ).scalars()
            )
            if not ids:
                return done
            after = ids[-1]
            events = _events_with_text(session, ids)
            cards = session.execute(
                select(func.count())
                .select_from(OutboxMessage)
                .where(col(OutboxMessage.lead_id).in_(ids), col(OutboxMessage.status).in_(DONE))
            ).scalar_one()
            if not dry_run:
                _remove(session, ids, events)
            done.leads += len(ids)
            done.events += len(events)
            done.cards += int(cards)
        progress(len(ids))


def _old(before: datetime) -> Sequence[Any]:
    return (col(Lead.created_at) < before, col(Lead.name) != REMOVED)


def _events_with_text(session: Session, ids: list[int]) -> list[tuple[int, dict[str, Any]]]:
    rows = session.execute(
        select(col(LeadEvent.id), col(LeadEvent.data)).where(col(LeadEvent.lead_id).in_(ids))
    )
    return [
        (event_id, {k: v for k, v in data.items() if k not in FREE_TEXT})
        for event_id, data in rows
        if data and any(k in data for k in FREE_TEXT)
    ]


def _remove(session: Session, ids: list[int], events: list[tuple[int, dict[str, Any]]]) -> None:
    session.execute(
        update(Lead)
        .where(col(Lead.id).in_(ids))
        .values(name=REMOVED, company=None, email=None, title=None, owner_email=None, attributes={})
    )
    if events:
        table = LeadEvent.__table__  # type: ignore[attr-defined]
        session.execute(
            update(table).where(table.c.id == bindparam("event_id")).values(data=bindparam("kept")),
            [{"event_id": event_id, "kept": kept} for event_id, kept in events],
        )
    session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.lead_id).in_(ids), col(OutboxMessage.status).in_(DONE))
        .values(card={})
    )
