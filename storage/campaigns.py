"""Campaigns and the marketers who answer for them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import update
from sqlmodel import Session, col, select

from storage.models import (
    Campaign,
)
from storage.sql import insert_or_none


def set_marketer(session: Session, *, name: str, marketer_id: int) -> None:
    """The campaign called `name` (created if new) is answered for by `marketer_id`."""
    ensure_campaign(session, name=name)
    session.execute(
        update(Campaign).where(Campaign.name == name).values(marketer_id=marketer_id)  # type: ignore[arg-type]
    )


def ensure_campaign(session: Session, *, name: str) -> Campaign:
    """The campaign of this name, created if nobody has (concurrent callers get one row)."""
    campaign = session.exec(select(Campaign).where(Campaign.name == name)).first()
    if campaign is None:
        table = Campaign.__table__  # type: ignore[attr-defined]
        new_id = insert_or_none(session, table, {"name": name})
        if new_id is not None:
            campaign = session.get(Campaign, new_id)
        else:
            campaign = session.exec(select(Campaign).where(Campaign.name == name)).first()
        assert campaign is not None, f"campaign {name!r} neither inserted nor found"
    return campaign


def all_campaigns(session: Session) -> Sequence[Campaign]:
    return session.exec(select(Campaign).order_by(col(Campaign.name))).all()
