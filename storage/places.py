"""Where each card about a lead was posted, so it can be updated in place."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from storage.models import (
    CardLocation,
)
from storage.sql import insert_or_none


def record_location(session: Session, *, location: CardLocation) -> None:
    session.add(location)
    session.flush()


def record_location_once(session: Session, *, location: CardLocation) -> bool:
    """Record where a card was posted unless that message is recorded already (one
    statement: the outbox records many at once); whether it was new."""
    values = location.model_dump(exclude={"id"})
    table = CardLocation.__table__  # type: ignore[attr-defined]
    return insert_or_none(session, table, values) is not None


def record_card_place(
    session: Session,
    *,
    lead_id: int,
    purpose: str,
    member_id: int | None,
    platform: str,
    channel: str,
    message_id: str,
    reference: dict[str, Any] | None,
    at: datetime,
) -> bool:
    """`record_location_once` from the place's parts."""
    location = CardLocation(
        lead_id=lead_id,
        purpose=purpose,
        member_id=member_id,
        platform=platform,
        channel=channel,
        message_id=message_id,
        reference=reference,
        created_at=at,
    )
    return record_location_once(session, location=location)


def locations_of(session: Session, *, lead_id: int, purpose: str) -> Sequence[CardLocation]:
    return session.exec(
        select(CardLocation)
        .where(CardLocation.lead_id == lead_id, CardLocation.purpose == purpose)
        .order_by(col(CardLocation.id))
    ).all()


def location_by_message(
    session: Session, *, platform: str, channel: str, message_id: str
) -> CardLocation | None:
    return session.exec(
        select(CardLocation).where(
            CardLocation.platform == platform,
            CardLocation.channel == channel,
            CardLocation.message_id == message_id,
        )
    ).first()
