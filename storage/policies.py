"""The SLA policy in force and its versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from storage.models import (
    SlaPolicy,
)


def current_policy(session: Session) -> SlaPolicy:
    policy = session.exec(select(SlaPolicy).order_by(col(SlaPolicy.version).desc())).first()
    if policy is None:
        raise LookupError("no SLA policy: run `liaison db upgrade`")
    return policy


def create_policy(
    session: Session, *, fields: dict[str, Any], note: str, created_by: str, now: datetime
) -> SlaPolicy:
    """A new SLA version; fields not given keep the values of the version in force."""
    base = current_policy(session).model_dump(
        exclude={"id", "version", "note", "created_by", "created_at"}
    )
    latest = session.exec(select(func.max(SlaPolicy.version))).one() or 0
    policy = SlaPolicy(
        **{**base, **fields}, version=latest + 1, note=note, created_by=created_by, created_at=now
    )
    session.add(policy)
    session.flush()
    return policy
