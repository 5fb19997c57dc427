"""Company holidays and members' time away."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime

from sqlmodel import Session, col, select

from storage.models import (
    Away,
    Holiday,
)


def holidays(session: Session) -> list[date]:
    return [h.day for h in session.exec(select(Holiday).order_by(col(Holiday.day))).all()]


def add_holiday(session: Session, *, day: date, name: str) -> None:
    holiday = session.get(Holiday, day) or Holiday(day=day, name=name)
    holiday.name = name
    session.add(holiday)


def away_spans(session: Session, *, member_id: int) -> list[tuple[datetime, datetime]]:
    return away_spans_of(session, member_ids=[member_id])[member_id]


def away_spans_of(
    session: Session, *, member_ids: Collection[int]
) -> dict[int, list[tuple[datetime, datetime]]]:
    """Each member's time away (an empty list for none), earliest first, in one query."""
    spans: dict[int, list[tuple[datetime, datetime]]] = {m: [] for m in member_ids}
    if not spans:
        return spans
    rows = session.exec(
        select(Away)
        .where(col(Away.member_id).in_(sorted(spans)))
        .order_by(col(Away.member_id), col(Away.starts_at), col(Away.id))
    ).all()
    for row in rows:
        if row.until > row.starts_at:
            spans[row.member_id].append((row.starts_at, row.until))
    return spans


def current_away(session: Session, *, member_id: int, now: datetime) -> Away | None:
    return session.exec(
        select(Away).where(Away.member_id == member_id, Away.starts_at <= now, Away.until > now)
    ).first()


def set_away(session: Session, *, member_id: int, until: datetime, now: datetime) -> Away:
    """Away from now until `until`; replaces a current time away rather than stacking."""
    away = current_away(session, member_id=member_id, now=now) or Away(
        member_id=member_id, starts_at=now, until=until, created_at=now
    )
    away.until = until
    session.add(away)
    session.flush()
    return away


def end_away(session: Session, *, member_id: int, now: datetime) -> bool:
    away = current_away(session, member_id=member_id, now=now)
    if away is None:
        return False
    away.until = now
    session.add(away)
    return True
