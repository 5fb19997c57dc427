"""Reads and repairs of the outbox for the people who run Liaison."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from storage.models import Member, OutboxMessage


def recent_messages(
    session: Session, *, status: str | None = None, limit: int = 50
) -> Sequence[tuple[OutboxMessage, str | None]]:
    """The newest `limit` messages (of one status, if given), newest first, each with the
    name of the member it is for (None for a channel)."""
    query = (
        select(OutboxMessage, Member.name)
        .join(Member, col(Member.id) == col(OutboxMessage.member_id), isouter=True)
        .order_by(col(OutboxMessage.id).desc())
        .limit(limit)
    )
    if status:
        query = query.where(OutboxMessage.status == status)
    return session.exec(query).all()


def statuses(session: Session, *, ids: Collection[int]) -> dict[int, str]:
    """The status of each of these messages that exists."""
    query = select(OutboxMessage.id, OutboxMessage.status).where(col(OutboxMessage.id).in_(ids))
    return {message_id or 0: status for message_id, status in session.exec(query).all()}


def oldest_due(session: Session, *, now: datetime) -> datetime | None:
    """When the longest-waiting message that is due and not sent became due."""
    query = select(func.min(OutboxMessage.not_before)).where(
        col(OutboxMessage.status).in_(("pending", "sending")), col(OutboxMessage.not_before) <= now
    )
    found: datetime | None = session.exec(query).one()
    return found
