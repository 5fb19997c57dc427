"""The weekly digest's figures, each one SQL over a time span (grouping and window
functions), never a loop over leads in Python. Spans are half-open: `start <= t < end`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, case, cast, distinct, func, or_, text
from sqlmodel import Session, col, select

from storage import leads as stored_leads
from storage.models import (
    Campaign,
    Clock,
    ClockKind,
    ClockStage,
    EventKind,
    Lead,
    LeadEvent,
    LeadRejection,
    LeadState,
    SlaPolicy,
)

CONVERTED = stored_leads.CONVERTED
OUTCOMES = stored_leads.DECISIVE
ATTEMPT_CAP = 7  # conversion by attempts groups 7 and more together
# An attempts window ends met (the attempts made), missed (its time ran out) or ended (the
# buyer answered first: a meeting, an opportunity, a win or a no).
FOLLOW_UPS_ENDED = ("met", "missed", "ended")


@dataclass(frozen=True)
class FunnelCounts:
    generated: int
    handed_off: int
    accepted: int
    not_a_fit: int
    waiting: int  # handed off before the end, no verdict by then
    first_touched: int
    attempts: int
    attempted_leads: int
    outcomes: dict[str, int]  # leads with each outcome recorded in the span


@dataclass(frozen=True)
class CampaignCounts:
    campaign: str
    generated: int
    accepted: int
    not_a_fit: int


@dataclass(frozen=True)
class Rejections:
    group: str  # a campaign's name, or "v<N>" of the lead definition
    criterion: str
    count: int


@dataclass(frozen=True)
class ClockFigures:
    """Clocks of one kind closed in the span: met or missed, and their business time."""

    closed: int
    met: int
    median_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True)
class AttemptBucket:
    attempts: int  # 7 means 7 or more
    leads: int
    converted: int


def _between(column: Any, start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(column >= start, column < end)


def _count(session: Session, query: Any) -> int:
    return int(session.execute(query).scalar() or 0)


def funnel(session: Session, *, start: datetime, end: datetime) -> FunnelCounts:
    """The handover points: generated, handed off, verdicts, waiting, touches, outcomes."""
    leads = select(func.count()).select_from(Lead)
    verdicts = session.execute(
        select(col(Lead.state), func.count())
        .where(_between(col(Lead.verdict_at), start, end))
        .group_by(col(Lead.state))
    ).all()
    by_verdict = {str(state): int(n) for state, n in verdicts}
    waiting = leads.where(
        col(Lead.handed_off_at) < end,
        or_(col(Lead.verdict_at).is_(None), col(Lead.verdict_at) >= end),
    )
    attempts = session.execute(
        select(func.count(), func.count(distinct(col(LeadEvent.lead_id)))).where(
            col(LeadEvent.kind) == EventKind.attempt_logged.value,
            _between(col(LeadEvent.at), start, end),
        )
    ).one()
    return FunnelCounts(
        generated=_count(session, leads.where(_between(col(Lead.created_at), start, end))),
        handed_off=_count(session, leads.where(_between(col(Lead.handed_off_at), start, end))),
        accepted=by_verdict.get(LeadState.accepted.value, 0),
        not_a_fit=by_verdict.get(LeadState.not_a_fit.value, 0),
        waiting=_count(session, waiting),
        first_touched=_count(session, leads.where(_between(col(Lead.first_touch_at), start, end))),
        attempts=int(attempts[0]),
        attempted_leads=int(attempts[1]),
        outcomes=outcomes(session, start=start, end=end),
    )


def outcomes(session: Session, *, start: datetime, end: datetime) -> dict[str, int]:
    """Leads with each outcome recorded by an attempt logged in the span."""
    outcome = LeadEvent.__table__.c.data["outcome"].as_string()  # type: ignore[attr-defined]
    rows = session.execute(
        select(outcome, func.count(distinct(col(LeadEvent.lead_id))))
        .where(
            col(LeadEvent.kind) == EventKind.attempt_logged.value,
            _between(col(LeadEvent.at), start, end),
            outcome.in_(OUTCOMES),
        )
        .group_by(outcome)
    ).all()
    found = {str(name): int(n) for name, n in rows}
    return {name: found.get(name, 0) for name in OUTCOMES}


def by_campaign(session: Session, *, start: datetime, end: datetime) -> list[CampaignCounts]:
    """Leads generated and verdicts given in the span, per campaign (largest first)."""
    name = func.coalesce(Campaign.name, "")
    generated = session.execute(
        select(name, func.count())
        .select_from(Lead)
        .outerjoin(Campaign, col(Campaign.id) == Lead.campaign_id)
        .where(_between(col(Lead.created_at), start, end))
        .group_by(name)
    ).all()
    verdicts = session.execute(
        select(
            name,
            func.sum(case((col(Lead.state) == LeadState.accepted.value, 1), else_=0)),
            func.sum(case((col(Lead.state) == LeadState.not_a_fit.value, 1), else_=0)),
        )
        .select_from(Lead)
        .outerjoin(Campaign, col(Campaign.id) == Lead.campaign_id)
        .where(_between(col(Lead.verdict_at), start, end))
        .group_by(name)
    ).all()
    made = {str(n): int(c) for n, c in generated}
    judged = {str(n): (int(a or 0), int(r or 0)) for n, a, r in verdicts}
    rows = [
        CampaignCounts(n, made.get(n, 0), *judged.get(n, (0, 0)))
        for n in sorted(set(made) | set(judged))
    ]
    return sorted(rows, key=lambda r: (-r.generated, -(r.accepted + r.not_a_fit), r.campaign))


def rejections_by_campaign(session: Session, *, start: datetime, end: datetime) -> list[Rejections]:
    """Failed criteria of not-a-fit verdicts in the span, per campaign, most frequent first."""
    name = func.coalesce(Campaign.name, "")
    rows = session.execute(
        select(name, LeadRejection.text, func.count())
        .select_from(LeadRejection)
        .outerjoin(Campaign, col(Campaign.id) == LeadRejection.campaign_id)
        .where(_between(col(LeadRejection.at), start, end))
        .group_by(name, LeadRejection.text)
    ).all()
    return sorted(
        (Rejections(str(n), str(t), int(c)) for n, t, c in rows),
        key=lambda r: (-r.count, r.group, r.criterion),
    )


def rejections_by_version(session: Session, *, start: datetime, end: datetime) -> list[Rejections]:
    """Failed criteria in the span, per lead-definition version, most frequent first."""
    rows = session.execute(
        select(LeadRejection.definition_version, LeadRejection.text, func.count())
        .where(_between(col(LeadRejection.at), start, end))
        .group_by(col(LeadRejection.definition_version), col(LeadRejection.text))
    ).all()
    return sorted(
        (Rejections(f"v{v}", str(t), int(c)) for v, t, c in rows),
        key=lambda r: (-r.count, r.group, r.criterion),
    )


# Nearest-rank percentiles with a window function, the same on SQLite and PostgreSQL:
# the p-th percentile of n values is the value ranked ceil(p * n).
_PERCENTILES = text(
    """
    SELECT rn, n, business_seconds FROM (
        SELECT business_seconds,
               ROW_NUMBER() OVER (ORDER BY business_seconds) AS rn,
               COUNT(*) OVER () AS n
        FROM sla_clocks
        WHERE kind = :kind AND closed_at >= :start AND closed_at < :end
          AND outcome IN ('met', 'missed') AND business_seconds IS NOT NULL
          AND (CAST(:owner AS INTEGER) IS NULL OR owner_id = CAST(:owner AS INTEGER))
    ) ranked
    WHERE rn = (n + 1) / 2 OR rn = (9 * n + 9) / 10
    """
)


def clock_counts(
    session: Session,
    *,
    kind: ClockKind,
    start: datetime,
    end: datetime,
    owner_id: int | None = None,
) -> tuple[int, int]:
    """Clocks of `kind` closed in the span as met or missed: (closed, met)."""
    query = select(
        func.count(),
        func.coalesce(func.sum(case((col(Clock.outcome) == "met", 1), else_=0)), 0),
    ).where(
        col(Clock.kind) == kind.value,
        _between(col(Clock.closed_at), start, end),
        col(Clock.outcome).in_(["met", "missed"]),
    )
    if owner_id is not None:
        query = query.where(col(Clock.owner_id) == owner_id)
    closed, met = session.execute(query).one()
    return int(closed), int(met)


def leads_and_verdicts(session: Session, *, start: datetime, end: datetime) -> tuple[int, int, int]:
    """(leads generated, accepted, not a fit) in the span: the trend's headline counts."""
    generated = _count(
        session,
        select(func.count()).select_from(Lead).where(_between(col(Lead.created_at), start, end)),
    )
    verdicts = dict(
        session.execute(
            select(col(Lead.state), func.count())
            .where(_between(col(Lead.verdict_at), start, end))
            .group_by(col(Lead.state))
        ).all()
    )
    accepted = int(verdicts.get(LeadState.accepted.value, 0))
    return generated, accepted, int(verdicts.get(LeadState.not_a_fit.value, 0))


def clock_figures(
    session: Session,
    *,
    kind: ClockKind,
    start: datetime,
    end: datetime,
    owner_id: int | None = None,
) -> ClockFigures:
    """Clocks of `kind` closed in the span (one member's, with `owner_id`): how many, how
    many in time, their median and 90th-percentile business time."""
    closed, met = clock_counts(session, kind=kind, start=start, end=end, owner_id=owner_id)
    params = {"kind": kind.value, "start": start, "end": end, "owner": owner_id}
    ranks = session.execute(_PERCENTILES, params).all()
    median = p90 = None
    for rank, n, seconds in ranks:
        if rank == (n + 1) // 2:
            median = float(seconds)
        if rank == (9 * n + 9) // 10:
            p90 = float(seconds)
    return ClockFigures(int(closed), int(met), median, p90)


def overdue_now(session: Session, *, kind: ClockKind) -> int:
    """Open clocks of `kind` past their window (the tick has stepped them to a breach)."""
    return _count(
        session,
        select(func.count())
        .select_from(Clock)
        .where(
            col(Clock.kind) == kind.value,
            col(Clock.closed_at).is_(None),
            col(Clock.stage) >= ClockStage.breached.value,
        ),
    )


def attempts_of_closed_windows(session: Session, *, start: datetime, end: datetime) -> float | None:
    """Mean attempts on the leads whose attempts window closed in the span."""
    value = session.execute(
        select(func.avg(Lead.attempts))
        .select_from(Clock)
        .join(Lead, col(Lead.id) == Clock.lead_id)
        .where(
            col(Clock.kind) == ClockKind.attempts.value,
            _between(col(Clock.closed_at), start, end),
            col(Clock.outcome).in_(FOLLOW_UPS_ENDED),
        )
    ).scalar()
    return float(value) if value is not None else None


def conversion_by_attempts(
    session: Session, *, start: datetime, end: datetime
) -> list[AttemptBucket]:
    """Of the leads whose follow-up ended in the span, how many reached a meeting or
    better, by the number of attempts made (7 and more together)."""
    bucket = case((col(Lead.attempts) >= ATTEMPT_CAP, ATTEMPT_CAP), else_=Lead.attempts)
    rows = session.execute(
        select(
            cast(bucket, Integer),
            func.count(),
            func.sum(case((col(Lead.outcome).in_(CONVERTED), 1), else_=0)),
        )
        .select_from(Clock)
        .join(Lead, col(Lead.id) == Clock.lead_id)
        .where(
            col(Clock.kind) == ClockKind.attempts.value,
            _between(col(Clock.closed_at), start, end),
            col(Clock.outcome).in_(FOLLOW_UPS_ENDED),
        )
        .group_by(cast(bucket, Integer))
        .order_by(cast(bucket, Integer))
    ).all()
    return [AttemptBucket(int(a), int(n), int(c or 0)) for a, n, c in rows]


def policy_at(session: Session, *, at: datetime) -> SlaPolicy | None:
    """The SLA version in force at `at` (the newest created before it)."""
    return session.exec(
        select(SlaPolicy)
        .where(col(SlaPolicy.created_at) <= at)
        .order_by(col(SlaPolicy.version).desc())
        .limit(1)
    ).first()


@dataclass(frozen=True)
class MemberWeek:
    """One member's own week, for their private "your week" note."""

    handed_off: int
    accepted: int
    not_a_fit: int
    attempts: int
    first_touch: ClockFigures
    answers: ClockFigures  # reps' questions answered (marketers)


def member_week(session: Session, *, member_id: int, start: datetime, end: datetime) -> MemberWeek:
    leads = select(func.count()).select_from(Lead).where(col(Lead.owner_id) == member_id)
    verdicts = dict(
        session.execute(
            select(col(Lead.state), func.count())
            .where(col(Lead.owner_id) == member_id, _between(col(Lead.verdict_at), start, end))
            .group_by(col(Lead.state))
        ).all()
    )
    attempts = select(func.count()).where(
        col(LeadEvent.kind) == EventKind.attempt_logged.value,
        col(LeadEvent.member_id) == member_id,
        _between(col(LeadEvent.at), start, end),
    )
    return MemberWeek(
        handed_off=_count(session, leads.where(_between(col(Lead.handed_off_at), start, end))),
        accepted=int(verdicts.get(LeadState.accepted.value, 0)),
        not_a_fit=int(verdicts.get(LeadState.not_a_fit.value, 0)),
        attempts=_count(session, attempts),
        first_touch=clock_figures(
            session, kind=ClockKind.first_touch, start=start, end=end, owner_id=member_id
        ),
        answers=clock_figures(
            session, kind=ClockKind.info_answer, start=start, end=end, owner_id=member_id
        ),
    )
