"""Aggregates over the SLA clocks."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from storage.models import Clock, ClockStage


def open_by_stage(session: Session) -> dict[str, int]:
    """How many clocks still run, by the stage each reached (running … escalated)."""
    query = (
        select(col(Clock.stage), func.count())
        .where(col(Clock.closed_at).is_(None))
        .group_by(col(Clock.stage))
    )
    return {ClockStage(stage).name: int(n) for stage, n in session.exec(query).all()}
