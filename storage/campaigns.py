"""Campaigns and the marketers who answer for them."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session

from storage.models import Campaign
from storage.queries import ensure_campaign


def set_marketer(session: Session, *, name: str, marketer_id: int) -> None:
    """The campaign called `name` (created if new) is answered for by `marketer_id`."""
    ensure_campaign(session, name=name)
    session.execute(
        update(Campaign).where(Campaign.name == name).values(marketer_id=marketer_id)  # type: ignore[arg-type]
    )
