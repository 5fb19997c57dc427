"""Approvals (blocking sign-offs of new lead-definition and SLA versions): who the approvers
are, the requests, their sign-offs, reminders due, and the week's numbers for the digest.

Only the approval tables are read and written here; field feedback lives elsewhere and
never shares a table or a query with approvals. Keyword-only, session first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, delete, select

from storage.models import (
    ApprovalRequest,
    ApprovalSignoff,
    ApprovalStatus,
    ApprovalSubject,
    Approver,
    LeadDefinition,
    Member,
    SlaPolicy,
)

SIDES = ("sales", "marketing")

# ---------------------------------------------------------------- approvers


def approvers(session: Session) -> list[tuple[str, Member]]:
    """Every (side, member) named as an approver, sales first, then by name."""
    rows = session.exec(
        select(Approver.side, Member)
        .join(Member, col(Member.id) == Approver.member_id)
        .order_by(col(Approver.side).desc(), col(Member.name))
    ).all()
    return [(side, member) for side, member in rows]


def approver_names(session: Session) -> dict[str, list[str]]:
    """The names of each side's approvers."""
    named = approvers(session)
    return {side: [m.name for s, m in named if s == side] for side in SIDES}


def set_approvers(session: Session, *, side: str, member_ids: Sequence[int]) -> None:
    """Replace the approvers of one side."""
    session.exec(delete(Approver).where(col(Approver.side) == side))
    for member_id in dict.fromkeys(member_ids):
        session.add(Approver(member_id=member_id, side=side))
    session.flush()


# ---------------------------------------------------------------- requests


def lock_subject(session: Session, *, subject: str) -> None:
    """Lock the version in force of `subject` for this transaction, so two proposals of
    the same subject are checked and stored one after the other (PostgreSQL)."""
    model: type[LeadDefinition] | type[SlaPolicy] = (
        LeadDefinition if subject == ApprovalSubject.leaddef else SlaPolicy
    )
    session.exec(
        select(model.id).order_by(col(model.version).desc()).limit(1).with_for_update()
    ).first()


def pending_for(session: Session, *, subject: str) -> ApprovalRequest | None:
    """The request of this subject still waiting for sign-off, if any."""
    return session.exec(
        select(ApprovalRequest)
        .where(
            ApprovalRequest.subject == subject,
            ApprovalRequest.status == ApprovalStatus.pending.value,
        )
        .order_by(col(ApprovalRequest.id))
    ).first()


def create_request(
    session: Session,
    *,
    subject: str,
    proposed_by: int,
    proposer_label: str,
    payload: dict[str, Any],
    note: str,
    signoffs: Sequence[tuple[int, str]],
    remind_at: datetime | None,
    now: datetime,
) -> ApprovalRequest:
    """A pending request with one sign-off row per approver (member id, side), as the
    approvers were named at this moment."""
    request = ApprovalRequest(
        subject=subject,
        proposed_by=proposed_by,
        proposer_label=proposer_label,
        payload=payload,
        note=note,
        status=ApprovalStatus.pending.value,
        created_at=now,
        remind_at=remind_at,
    )
    session.add(request)
    session.flush()
    for member_id, side in signoffs:
        session.add(ApprovalSignoff(request_id=request.id or 0, member_id=member_id, side=side))
    session.flush()
    return request


def record_bootstrap(
    session: Session,
    *,
    subject: str,
    label: str,
    payload: dict[str, Any],
    note: str,
    version: int,
    now: datetime,
) -> ApprovalRequest:
    """A version an admin set from the CLI, kept in the history as set without sign-off."""
    request = ApprovalRequest(
        subject=subject,
        proposer_label=label,
        payload=payload,
        note=note,
        status=ApprovalStatus.bootstrap.value,
        version=version,
        created_at=now,
        decided_at=now,
    )
    session.add(request)
    session.flush()
    return request


def get_request(session: Session, *, request_id: int, lock: bool = False) -> ApprovalRequest | None:
    """One request; with `lock`, locked for this transaction and re-read from the database
    (deciding takes this lock, so the last of several simultaneous approvals is seen)."""
    query = select(ApprovalRequest).where(ApprovalRequest.id == request_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.exec(query).first()


def signoffs_of(session: Session, *, request_id: int) -> list[tuple[ApprovalSignoff, Member]]:
    """The request's sign-offs with their approvers, sales first, then by name."""
    rows = session.exec(
        select(ApprovalSignoff, Member)
        .join(Member, col(Member.id) == ApprovalSignoff.member_id)
        .where(ApprovalSignoff.request_id == request_id)
        .order_by(col(ApprovalSignoff.side).desc(), col(Member.name))
    ).all()
    return [(signoff, member) for signoff, member in rows]


def signoff_of(session: Session, *, request_id: int, member_id: int) -> ApprovalSignoff | None:
    return session.exec(
        select(ApprovalSignoff)
        .where(ApprovalSignoff.request_id == request_id, ApprovalSignoff.member_id == member_id)
        .execution_options(populate_existing=True)
    ).first()


def decide(
    session: Session, *, signoff: ApprovalSignoff, decision: str, comment: str, now: datetime
) -> None:
    signoff.decision, signoff.comment, signoff.decided_at = decision, comment, now
    session.add(signoff)
    session.flush()


def undecided_count(session: Session, *, request_id: int) -> int:
    return session.exec(
        select(func.count())
        .select_from(ApprovalSignoff)
        .where(
            ApprovalSignoff.request_id == request_id,
            col(ApprovalSignoff.decision).is_(None),
        )
    ).one()


def close(
    session: Session,
    *,
    request: ApprovalRequest,
    status: str,
    now: datetime,
    version: int | None = None,
) -> None:
    """Close a request as approved (with the version it created) or rejected; no more
    reminders."""
    request.status, request.decided_at, request.remind_at = status, now, None
    request.version = version
    session.add(request)
    session.flush()


def waiting_for(session: Session, *, member_id: int) -> list[ApprovalRequest]:
    """Pending requests on which this member's sign-off is still missing, oldest first."""
    return list(
        session.exec(
            select(ApprovalRequest)
            .join(ApprovalSignoff, col(ApprovalSignoff.request_id) == ApprovalRequest.id)
            .where(
                ApprovalSignoff.member_id == member_id,
                col(ApprovalSignoff.decision).is_(None),
                ApprovalRequest.status == ApprovalStatus.pending.value,
            )
            .order_by(col(ApprovalRequest.created_at), col(ApprovalRequest.id))
        ).all()
    )


def proposed_by(session: Session, *, member_id: int, limit: int = 10) -> list[ApprovalRequest]:
    """What this member proposed, newest first."""
    return list(
        session.exec(
            select(ApprovalRequest)
            .where(ApprovalRequest.proposed_by == member_id)
            .order_by(col(ApprovalRequest.id).desc())
            .limit(limit)
        ).all()
    )


# ---------------------------------------------------------------- reminders


def due_reminders(session: Session, *, now: datetime, limit: int) -> list[ApprovalRequest]:
    """Pending requests whose reminder is due, locked for this transaction; on PostgreSQL
    `FOR UPDATE SKIP LOCKED` lets several instances tick at once, each taking other rows."""
    return list(
        session.exec(
            select(ApprovalRequest)
            .where(
                col(ApprovalRequest.remind_at) <= now,
                ApprovalRequest.status == ApprovalStatus.pending.value,
            )
            .order_by(col(ApprovalRequest.remind_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
    )


def remind_again(session: Session, *, request: ApprovalRequest, at: datetime | None) -> None:
    """The request's next reminder is due `at` (None: it has had its last one)."""
    request.remind_at = at
    session.add(request)


def undecided(session: Session, *, request_id: int) -> list[Member]:
    """The approvers of a request who have not decided yet, sales first, then by name."""
    return list(
        session.exec(
            select(Member)
            .join(ApprovalSignoff, col(ApprovalSignoff.member_id) == Member.id)
            .where(
                ApprovalSignoff.request_id == request_id,
                col(ApprovalSignoff.decision).is_(None),
            )
            .order_by(col(ApprovalSignoff.side).desc(), col(Member.name))
        ).all()
    )


# ---------------------------------------------------------------- the weekly digest


@dataclass(frozen=True)
class WeekStats:
    """Approvals in a span: proposed in it, still waiting at its end, approved or rejected
    in it, and versions set without sign-off (CLI bootstrap) in it."""

    proposed: int = 0
    waiting: int = 0
    approved: int = 0
    rejected: int = 0
    bootstrap: int = 0


def week_stats(session: Session, *, start: datetime, end: datetime) -> WeekStats:
    """The numbers of [start, end), in one aggregate query."""
    status = col(ApprovalRequest.status)
    created, decided = col(ApprovalRequest.created_at), col(ApprovalRequest.decided_at)
    signed = status != ApprovalStatus.bootstrap.value
    decided_in_span = and_(decided >= start, decided < end)

    def count_of(*conditions: Any) -> Any:
        return func.coalesce(func.sum(case((and_(*conditions), 1), else_=0)), 0)

    row = session.execute(
        sa_select(
            count_of(signed, created >= start),
            count_of(signed, or_(decided.is_(None), decided >= end)),
            count_of(status == ApprovalStatus.approved.value, decided_in_span),
            count_of(status == ApprovalStatus.rejected.value, decided_in_span),
            count_of(status == ApprovalStatus.bootstrap.value, created >= start),
        ).where(created < end)
    ).one()
    return WeekStats(*(int(n) for n in row))
