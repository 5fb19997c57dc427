"""Buyer insights from the field: stored, claimed and closed by marketing; who is on duty;
what waits for whom; the week's numbers for the digest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, or_, update
from sqlmodel import Session, col, func, select

from storage.models import CompanySetting, Insight, InsightStatus

DUTY_KEY = "insights_duty"
_OPEN = [InsightStatus.open.value, InsightStatus.claimed.value]


def add(
    session: Session,
    *,
    author_id: int,
    kind: str,
    text: str,
    lead_id: int | None,
    campaign_id: int | None,
    tags: Sequence[str],
    marketer_id: int | None,
    now: datetime,
) -> Insight:
    """A new open insight; `marketer_id` is who it was routed to (None: all marketers)."""
    insight = Insight(
        author_id=author_id,
        kind=kind,
        text=text,
        lead_id=lead_id,
        campaign_id=campaign_id,
        tags=list(tags),
        marketer_id=marketer_id,
        created_at=now,
    )
    session.add(insight)
    session.flush()
    return insight


def get(session: Session, *, insight_id: int) -> Insight | None:
    return session.get(Insight, insight_id)


def claim(session: Session, *, insight: Insight, marketer_id: int, now: datetime) -> bool:
    """Claim an open insight for `marketer_id`, atomically: False when someone claimed or
    closed it first (the row is refreshed either way)."""
    result = session.execute(
        update(Insight)
        .where(col(Insight.id) == insight.id, col(Insight.status) == InsightStatus.open.value)
        .values(status=InsightStatus.claimed.value, marketer_id=marketer_id, claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(insight)
    return getattr(result, "rowcount", 0) == 1


def close(
    session: Session,
    *,
    insight: Insight,
    marketer_id: int,
    answer: str,
    content_id: int | None,
    now: datetime,
    override: bool = False,
) -> bool:
    """Close an insight with the answer (and content), atomically: only while it is open, or
    claimed by `marketer_id` (or by anyone, with `override` for admins). False otherwise."""
    mine = or_(
        col(Insight.status) == InsightStatus.open.value,
        col(Insight.marketer_id) == marketer_id,
    )
    still_open = col(Insight.status).in_(_OPEN)
    result = session.execute(
        update(Insight)
        .where(col(Insight.id) == insight.id, still_open if override else and_(still_open, mine))
        .values(
            status=InsightStatus.closed.value,
            marketer_id=marketer_id,
            answer=answer,
            content_id=content_id,
            claimed_at=func.coalesce(col(Insight.claimed_at), now),
            closed_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    session.refresh(insight)
    return getattr(result, "rowcount", 0) == 1


def open_of(session: Session, *, member_id: int) -> Sequence[Insight]:
    """A member's open insights: those they raised, and those assigned to them (routed to
    them or claimed by them), oldest first."""
    return session.exec(
        select(Insight)
        .where(
            col(Insight.status).in_(_OPEN),
            or_(col(Insight.author_id) == member_id, col(Insight.marketer_id) == member_id),
        )
        .order_by(col(Insight.created_at), col(Insight.id))
    ).all()


def waiting_for_marketing(
    session: Session, *, member_id: int, limit: int = 20
) -> Sequence[Insight]:
    """What a marketer sees: every insight nobody has claimed yet, those claimed by them,
    and those they raised themselves, oldest first."""
    return session.exec(
        select(Insight)
        .where(
            col(Insight.status).in_(_OPEN),
            or_(
                col(Insight.status) == InsightStatus.open.value,
                col(Insight.marketer_id) == member_id,
                col(Insight.author_id) == member_id,
            ),
        )
        .order_by(col(Insight.created_at), col(Insight.id))
        .limit(limit)
    ).all()


@dataclass(frozen=True)
class InsightWeek:
    """The insights loop over one period, for the weekly digest."""

    raised: int
    closed: int
    closed_with_content: int


def week_stats(session: Session, *, start: datetime, end: datetime) -> InsightWeek:
    """Insights raised, closed, and closed with linked content in [start, end), in one query."""
    raised_in = and_(col(Insight.created_at) >= start, col(Insight.created_at) < end)
    raised = case((raised_in, 1), else_=0)
    closed_in = and_(col(Insight.closed_at) >= start, col(Insight.closed_at) < end)
    closed = case((closed_in, 1), else_=0)
    with_content = case((and_(closed_in, col(Insight.content_id).is_not(None)), 1), else_=0)
    row = session.exec(
        select(
            func.coalesce(func.sum(raised), 0),
            func.coalesce(func.sum(closed), 0),
            func.coalesce(func.sum(with_content), 0),
        ).where(or_(raised_in, closed_in))
    ).one()
    return InsightWeek(int(row[0]), int(row[1]), int(row[2]))


# ---------------------------------------------------------------- insights duty


def duty_member_id(session: Session) -> int | None:
    """The marketer on insights duty (company setting `insights_duty`), if any."""
    setting = session.get(CompanySetting, DUTY_KEY)
    return int(setting.value) if setting is not None and setting.value.isdigit() else None


def set_duty(session: Session, *, member_id: int | None) -> None:
    """Put a member on insights duty, or nobody (None)."""
    setting = session.get(CompanySetting, DUTY_KEY)
    if member_id is None:
        if setting is not None:
            session.delete(setting)
        return
    setting = setting or CompanySetting(key=DUTY_KEY, value="")
    setting.value = str(member_id)
    session.add(setting)
