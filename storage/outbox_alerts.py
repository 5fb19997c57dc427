"""The rows behind the admin's notices of parked and refused outbox messages: the episode's
state (one company setting, created once and locked for the transaction that changes it),
and the counts of parked, delivered-again and refused messages (never the notices' own)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from storage.models import CompanySetting, OutboxMessage, OutboxStatus

STATE_KEY = "outbox_alert"
KEY_PREFIX = "outbox-alert:"  # the notices' own outbox keys start so


def locked_state(session: Session) -> CompanySetting:
    """The episode state, created once and locked for this transaction."""
    if session.get(CompanySetting, STATE_KEY) is None:
        try:
            with session.begin_nested():
                session.add(CompanySetting(key=STATE_KEY, value=json.dumps({"episode": 0})))
        except IntegrityError:
            pass  # another sender created it first
    row = session.get(CompanySetting, STATE_KEY, with_for_update=True, populate_existing=True)
    assert row is not None
    return row


def save_state(session: Session, *, state: CompanySetting, value: dict[str, Any]) -> None:
    """Write the episode state (locked by `locked_state`)."""
    state.value = json.dumps(value)
    session.add(state)


def _not_alerts() -> Any:
    return ~col(OutboxMessage.key).startswith(KEY_PREFIX)


def outstanding(
    session: Session, *, now: datetime, retry_for: timedelta
) -> tuple[int, datetime | None]:
    """How many parked messages are not delivered yet and still being tried, and when the
    first of them was parked."""
    expired = (col(OutboxMessage.status) == OutboxStatus.failed) & (
        col(OutboxMessage.created_at) <= now - retry_for
    )
    count, first = session.exec(
        select(func.count(), func.min(OutboxMessage.parked_at)).where(
            col(OutboxMessage.parked_at).is_not(None),
            col(OutboxMessage.status) != OutboxStatus.sent,
            ~expired,
            _not_alerts(),
        )
    ).one()
    return int(count), first


def delivered_since(session: Session, *, since: datetime) -> int:
    """How many messages parked since `since` have been delivered."""
    return session.exec(
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            col(OutboxMessage.parked_at) >= since,
            col(OutboxMessage.status) == OutboxStatus.sent,
            _not_alerts(),
        )
    ).one()


def refused_after(session: Session, *, after: int) -> list[OutboxMessage]:
    """Messages failed for good (not parked to be tried again) with an id above `after`."""
    return list(
        session.exec(
            select(OutboxMessage)
            .where(
                col(OutboxMessage.status) == OutboxStatus.failed,
                col(OutboxMessage.parked_at).is_(None),
                col(OutboxMessage.id) > after,
                _not_alerts(),
            )
            .order_by(col(OutboxMessage.id))
        ).all()
    )
