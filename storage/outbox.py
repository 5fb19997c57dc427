"""Reads of the outbox for the people who run Liaison."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from storage.models import OutboxMessage


def recent_messages(
    session: Session, *, status: str | None = None, limit: int = 50
) -> Sequence[OutboxMessage]:
    """The newest `limit` messages (of one status, if given), newest first."""
    query = select(OutboxMessage).order_by(col(OutboxMessage.id).desc()).limit(limit)
    if status:
        query = query.where(OutboxMessage.status == status)
    return session.exec(query).all()
