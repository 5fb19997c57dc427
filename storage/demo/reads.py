"""Reads the demo generator needs: which of its leads exist, which rows it already wrote."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func
from sqlmodel import Session, SQLModel, col, select

from storage.models import (
    Away,
    EventKind,
    Lead,
    LeadDefinition,
    LeadEvent,
    SlaPolicy,
    Win,
)

Model = TypeVar("Model", bound=SQLModel)


def existing_external_ids(
    session: Session, *, source: str, external_ids: Collection[str]
) -> set[str]:
    """Which of these external ids of `source` are already leads, in one query (an index
    range from the smallest to the largest: ids of the same width share it)."""
    if not external_ids:
        return set()
    found = session.exec(
        select(Lead.external_id).where(
            Lead.source == source,
            col(Lead.external_id).between(min(external_ids), max(external_ids)),
        )
    ).all()
    return set(found) & set(external_ids)


def first_where(session: Session, model: type[Model], **equals: Any) -> Model | None:
    """The first row of `model` whose columns equal the values given (oldest id first)."""
    query = select(model)
    for name, value in equals.items():
        query = query.where(getattr(model, name) == value)
    return session.exec(query.order_by(model.id)).first()  # type: ignore[attr-defined]


def definition_noted(session: Session, *, note: str) -> LeadDefinition | None:
    return first_where(session, LeadDefinition, note=note)


def earliest_definition(session: Session) -> LeadDefinition | None:
    return session.exec(select(LeadDefinition).order_by(col(LeadDefinition.version))).first()


def policy_noted(session: Session, *, note: str) -> SlaPolicy | None:
    return first_where(session, SlaPolicy, note=note)


def has_away(session: Session, *, member_id: int, starts_at: datetime) -> bool:
    return first_where(session, Away, member_id=member_id, starts_at=starts_at) is not None


def won_leads(
    session: Session, *, source: str, since: datetime, until: datetime, limit: int
) -> Sequence[Lead]:
    """Won leads of `source` whose verdict fell in [since, until), lowest ids first."""
    return session.exec(
        select(Lead)
        .where(
            Lead.source == source,
            Lead.outcome == "won",
            col(Lead.verdict_at) >= since,
            col(Lead.verdict_at) < until,
        )
        .order_by(col(Lead.id))
        .limit(limit)
    ).all()


def last_attempt_at(session: Session, *, lead_id: int) -> datetime | None:
    return session.exec(
        select(func.max(LeadEvent.at)).where(
            LeadEvent.lead_id == lead_id, LeadEvent.kind == EventKind.attempt_logged.value
        )
    ).one()


def wins_for(session: Session, *, lead_ids: Collection[int]) -> set[int]:
    """Which of these leads already have a win shared."""
    if not lead_ids:
        return set()
    found = session.exec(select(Win.lead_id).where(col(Win.lead_id).in_(sorted(lead_ids)))).all()
    return {lead_id for lead_id in found if lead_id is not None}
