"""Wins shared by reps, crediting the campaign's marketer; the leads a rep may name in one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from storage.models import Campaign, Lead, LeadState, Member, Win


def add(
    session: Session,
    *,
    author_id: int,
    story: str,
    lead_id: int | None,
    campaign_id: int | None,
    marketer_id: int | None,
    now: datetime,
) -> Win:
    win = Win(
        author_id=author_id,
        story=story,
        lead_id=lead_id,
        campaign_id=campaign_id,
        marketer_id=marketer_id,
        created_at=now,
    )
    session.add(win)
    session.flush()
    return win


def accepted_leads_of(session: Session, *, member_id: int, limit: int = 100) -> Sequence[Lead]:
    """The member's accepted leads, most recently handed off first (a form's choices)."""
    return session.exec(
        select(Lead)
        .where(Lead.owner_id == member_id, Lead.state == LeadState.accepted.value)
        .order_by(col(Lead.handed_off_at).desc(), col(Lead.id).desc())
        .limit(limit)
    ).all()


@dataclass(frozen=True)
class WinRow:
    """A win as the digest shows it: who, with which lead and campaign, credited to whom."""

    id: int
    at: datetime
    story: str
    author: str
    marketer: str | None
    campaign: str | None
    lead: str | None
    company: str | None


def wins_between(session: Session, *, start: datetime, end: datetime) -> list[WinRow]:
    """The wins shared in [start, end), oldest first, with names joined in one query."""
    author, marketer = aliased(Member), aliased(Member)
    rows = session.execute(
        sa_select(
            col(Win.id),
            col(Win.created_at),
            col(Win.story),
            col(author.name),
            col(marketer.name),
            col(Campaign.name),
            col(Lead.name),
            col(Lead.company),
        )
        .join(author, col(author.id) == Win.author_id)
        .outerjoin(marketer, col(marketer.id) == Win.marketer_id)
        .outerjoin(Campaign, col(Campaign.id) == Win.campaign_id)
        .outerjoin(Lead, col(Lead.id) == Win.lead_id)
        .where(col(Win.created_at) >= start, col(Win.created_at) < end)
        .order_by(col(Win.created_at), col(Win.id))
    ).all()
    return [
        WinRow(
            id=row[0] or 0,
            at=row[1],
            story=row[2],
            author=row[3],
            marketer=row[4],
            campaign=row[5],
            lead=row[6],
            company=row[7],
        )
        for row in rows
    ]
