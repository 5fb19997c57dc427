"""The agreed, versioned lead definition and its criteria."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from storage.models import (
    Criterion,
    LeadDefinition,
)


def current_definition(session: Session) -> tuple[LeadDefinition, list[Criterion]]:
    definition = session.exec(
        select(LeadDefinition).order_by(col(LeadDefinition.version).desc())
    ).first()
    if definition is None:
        raise LookupError("no lead definition: run `liaison db upgrade`")
    return definition, criteria_of(session, definition_id=definition.id or 0)


def definition_in_force(session: Session) -> tuple[int, int]:
    """The id and version of the lead definition in force (its criteria not read)."""
    table = LeadDefinition.__table__  # type: ignore[attr-defined]
    row = (
        session.connection()
        .execute(sa_select(table.c.id, table.c.version).order_by(table.c.version.desc()).limit(1))
        .first()
    )
    if row is None:
        raise LookupError("no lead definition: run `liaison db upgrade`")
    return int(row[0]), int(row[1])


def criteria_of(session: Session, *, definition_id: int) -> list[Criterion]:
    return list(
        session.exec(
            select(Criterion)
            .where(Criterion.definition_id == definition_id)
            .order_by(col(Criterion.position))
        ).all()
    )


def criterion_keys(session: Session) -> set[str]:
    """Every key a criterion has had, in any version of the lead definition."""
    return set(session.exec(select(Criterion.key).distinct()).all())


def create_definition(
    session: Session,
    *,
    criteria: Sequence[tuple[str, str]],
    note: str,
    created_by: str,
    now: datetime,
) -> LeadDefinition:
    """A new version of the lead definition; the newest version is the one in force."""
    latest = session.exec(select(func.max(LeadDefinition.version))).one() or 0
    definition = LeadDefinition(
        version=latest + 1, note=note, created_by=created_by, created_at=now
    )
    session.add(definition)
    session.flush()
    for position, (key, text) in enumerate(criteria):
        session.add(
            Criterion(definition_id=definition.id or 0, key=key, text=text, position=position)
        )
    session.flush()
    return definition
