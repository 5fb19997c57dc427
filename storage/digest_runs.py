"""The weekly digest's bookkeeping: one `digest_runs` row per week, planned once however
many instances tick, claimed with FOR UPDATE SKIP LOCKED and marked posted; and the
members who asked for their own "your week" note (`/digest me on|off`)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.models import DigestRun, Member

log = logging.getLogger(__name__)


def plan_run(session: Session, *, week: str, due: datetime, now: datetime) -> None:
    """The row for `week`'s digest, once (a concurrent instance may write it first)."""
    if session.get(DigestRun, week) is not None:
        return
    try:
        with session.begin_nested():
            session.add(DigestRun(week=week, due_at=due, created_at=now))
    except IntegrityError:
        log.info("digest run %s was planned by another instance", week)


def claim_due_runs(session: Session, *, now: datetime) -> list[DigestRun]:
    """The pending runs due at `now`, locked for this transaction (others skip them)."""
    return list(
        session.exec(
            select(DigestRun)
            .where(DigestRun.status == "pending", col(DigestRun.due_at) <= now)
            .order_by(col(DigestRun.due_at))
            .with_for_update(skip_locked=True)
        ).all()
    )


def mark_posted(session: Session, *, run: DigestRun, target: str | None, now: datetime) -> None:
    run.status, run.posted_at, run.target = "posted", now, target
    session.add(run)


def opted_in(session: Session) -> list[Member]:
    """The members who get a private "your week" note every Monday."""
    return list(session.exec(select(Member).where(col(Member.weekly_digest).is_(True))).all())


def set_weekly_note(session: Session, *, member: Member, on: bool) -> None:
    """`member` gets the private "your week" note every Monday (`on`), or no longer."""
    member.weekly_digest = on
    session.add(member)
